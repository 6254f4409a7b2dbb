"""The estimate a single-GPU probe puts beside its measurement (vramfit.probe.measuring): the measuring GPU's
cuBLAS workspaces, the emulated card's verdict. On committed Hopper measurements (benchmarks/results/probe/)
with an Ampere card emulated."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from vramfit.config import TrainConfig
from vramfit.estimate import estimate
from vramfit.estimate.allocator import CUBLAS_WORKSPACE_HOPPER, CUBLAS_WORKSPACE_OLDER, cublas_workspace_bytes
from vramfit.gpus import resolve_card
from vramfit.models import resolve_model
from vramfit.probe.measuring import as_measured, estimate_beside, measured_card, workspace_note

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "probe"
RESULT = RESULTS / "h200_grid_fm_llama-3.2-1b_recipe_s1024.json"
# A run measured alone on its GPU (its CUDA context read too, so the measurement has a verdict on a card).
ALONE = RESULTS / "h100_calib_llama-3.2-1b_seq512_gc.json"
EMULATED = "rtx-3060"  # Ampere (8.6): the older, smaller workspaces


def _load(path: Path):
    r = json.loads(path.read_text())["result"]
    return r, resolve_model(r["model"]), TrainConfig.from_json(r["config"])


@pytest.fixture(scope="module")
def run():
    return _load(RESULT)


def test_the_measuring_card_is_read_from_the_environment(run):
    r, _, _ = run
    measuring = measured_card(r["environment"])
    assert r["environment"]["gpu"] == "NVIDIA H200" and measuring.name == "h200"
    assert cublas_workspace_bytes(measuring.compute_capability) == CUBLAS_WORKSPACE_HOPPER
    card = resolve_card(gpu=EMULATED)
    assert cublas_workspace_bytes(card.compute_capability) == CUBLAS_WORKSPACE_OLDER


def test_the_estimate_beside_counts_the_measuring_gpus_workspaces_and_keeps_the_cards_verdict(run):
    r, spec, cfg = run
    card = resolve_card(gpu=EMULATED)
    on_card = estimate(spec, cfg, card)
    beside = estimate_beside(spec, cfg, card, r["environment"], on_card)
    delta = CUBLAS_WORKSPACE_HOPPER - CUBLAS_WORKSPACE_OLDER  # 48 MiB
    extra = {p.name: p.breakdown.temporaries - q.breakdown.temporaries
             for p, q in zip(beside.phases, on_card.phases, strict=True)}  # fmt: skip
    # the workspaces come with the first matmul: in every phase of the steps, none before
    assert extra.pop("load") == extra.pop("prepare") == 0
    assert extra and set(extra.values()) == {delta}
    assert beside.peak_allocated_bytes - on_card.peak_allocated_bytes == delta
    # the estimate column is the measuring card's (what the accuracy benchmark compares), its context and
    # verdict the emulated card's
    assert beside.breakdown == estimate(spec, cfg, measured_card(r["environment"])).breakdown
    assert beside.non_torch == on_card.non_torch and beside.verdict == on_card.verdict
    assert beside.verdict.gpu == EMULATED
    # measured on a card of the same compute capability as the emulated one: nothing to change
    same = resolve_card(gpu="h100-80gb")
    on_h100 = estimate(spec, cfg, same)
    assert estimate_beside(spec, cfg, same, r["environment"], on_h100) is on_h100
    assert workspace_note(same, r["environment"]) is None


@pytest.mark.parametrize(
    "env",
    [{}, {"gpu": "Some Unknown GPU", "gpu_memory_bytes": 1 << 34}],
    ids=["cpu-pipeline-check", "gpu-not-in-the-catalog"],
)
def test_without_a_known_measuring_gpu_the_estimate_is_the_cards(run, env):
    _, spec, cfg = run
    card = resolve_card(gpu=EMULATED)
    on_card = estimate(spec, cfg, card)
    assert estimate_beside(spec, cfg, card, env, on_card) is on_card
    assert workspace_note(card, env) is None


def test_as_measured_changes_only_the_compute_capability():
    card = resolve_card(gpu=EMULATED)
    hopper = as_measured(card, (9, 0))
    assert hopper.compute_capability == (9, 0) and card.compute_capability == (8, 6)
    assert (hopper.capacity_bytes, hopper.usable_bytes, hopper.cuda_context_bytes, hopper.name) == (
        card.capacity_bytes,
        card.usable_bytes,
        card.cuda_context_bytes,
        card.name,
    )
    assert as_measured(card, None) is card and as_measured(None, (9, 0)) is None


def test_probe_puts_the_measuring_gpus_estimate_beside_the_measurement(monkeypatch):
    """probe() with the committed measurement standing in for the child's (no GPU here): the estimate
    column counts the H200's workspaces, the verdict is the emulated card's, the report says why the
    estimate differs from the card's own."""
    from rich.console import Console

    import vramfit.probe.runner as runner
    from vramfit.cli.probe_render import comparison_table
    from vramfit.probe import probe
    from vramfit.units import format_bytes

    r, spec, cfg = _load(ALONE)
    child = {"measured": r["measured"], "environment": r["environment"], "warnings": []}
    monkeypatch.setattr(runner, "run_trial", lambda *a, **k: child)
    card = resolve_card(gpu=EMULATED)
    result = probe(spec, cfg, card, record=False)
    on_card = estimate(spec, cfg, card)
    shown = result.estimated
    assert (
        shown.breakdown.temporaries
        == on_card.breakdown.temporaries + CUBLAS_WORKSPACE_HOPPER - CUBLAS_WORKSPACE_OLDER
    )
    assert shown.breakdown == estimate(spec, cfg, measured_card(r["environment"])).breakdown
    assert result.to_json()["verdict"] == on_card.verdict.to_json()  # the estimate's verdict: the card's own
    assert result.verdict.gpu == EMULATED and result.verdict.usable_bytes == card.usable_bytes
    assert any(
        "cuBLAS workspaces of the measuring GPU (NVIDIA H100 80GB HBM3: 64.0 MiB)" in w
        for w in result.warnings
    )
    out = io.StringIO()
    Console(file=out, width=300).print(comparison_table(result))
    row = next(line for line in out.getvalue().splitlines() if "temporaries" in line)
    assert format_bytes(shown.breakdown.temporaries) in row
    assert format_bytes(on_card.breakdown.temporaries) not in row


def test_the_estimate_beside_is_for_the_allocator_the_run_used(monkeypatch):
    """A run whose torch reported expandable segments is compared with the expandable-segments estimate,
    whatever this process's environment says (here: nothing, which reads as the default allocator)."""
    import vramfit.probe.runner as runner
    from vramfit.probe import probe

    es = RESULTS.parent / "expandable" / "h200_grid_es_llama-3.2-1b_recipe_s1024.json"
    r, spec, cfg = _load(es)
    assert r["environment"]["allocator_expandable_segments"] is True
    for var in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"):
        monkeypatch.delenv(var, raising=False)
    child = {"measured": r["measured"], "environment": r["environment"], "warnings": []}
    monkeypatch.setattr(runner, "run_trial", lambda *a, **k: child)
    result = probe(spec, cfg, None, record=False)
    shown, h200 = result.estimated, measured_card(r["environment"])
    expandable = estimate(spec, cfg, h200, expandable_segments=True)
    default = estimate(spec, cfg, h200, expandable_segments=False)
    assert expandable.allocator_required_bytes != default.allocator_required_bytes
    assert shown.allocator_required_bytes == expandable.allocator_required_bytes
    # nothing emulated: the estimate is the measuring GPU's own (its workspaces and context), and says so
    assert shown.breakdown == expandable.breakdown and shown.verdict == estimate(spec, cfg, None).verdict
    card_less = estimate(spec, cfg, None, expandable_segments=True)
    assert shown.breakdown.temporaries == card_less.breakdown.temporaries + (
        CUBLAS_WORKSPACE_HOPPER - CUBLAS_WORKSPACE_OLDER
    )
    assert any(w.startswith("no card emulated: the estimate beside the measurement is for the measuring GPU (NVIDIA H200")
               for w in result.warnings)  # fmt: skip
