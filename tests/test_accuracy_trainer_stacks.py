"""Hold the estimator to every committed GPU run of TRL's SFTTrainer and Liger's fused linear cross-entropy.

The runs are benchmarks/results/probe/trl/*.json (scripts/probe_trainer_stacks.sh; GPU, versions and
command in the README there). The tolerance is what the estimator achieves on them today; a change that
makes it worse fails here, like tests/test_accuracy_measured.py for the Trainer runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramfit.config import TrainConfig
from vramfit.estimate import estimate
from vramfit.gpus import match_device, resolve_card
from vramfit.trainers import LOSSES, loss_warnings

RUNS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "probe" / "trl"
# Achieved: within 0.9 % on all but the known gap below (mean |error| 0.6 % on those ten).
PEAK_ALLOCATED_TOLERANCE = 0.01
PINNED = 0.01  # a known gap is held to its recorded error within this
# Every forward and backward phase: within 1.3 % under and 2.2 % over; the worst is the first step's forward,
# 15-50 MiB over in every run (+2.1 %, qwen2.5-0.5b TRL), unexplained so far (the steady step's is within 1.3 %).
PHASE_UNDER, PHASE_OVER = -0.013, 0.022

KNOWN_GAPS = {
    "h200_qwen2.5-0.5b_trl_lora_all-linear_s2048_b2": (
        -0.0545,
        "plain LoRA (bf16 base) on all linears with dropout, s=2048 x 2: the last layer's backward holds "
        "97 MiB more activations than modelled (the forward is within 0.6 %); not settled",
    ),
}


def runs():
    for path in sorted(RUNS.glob("*.json")):
        yield pytest.param(json.loads(path.read_text()) | {"_stem": path.stem}, id=path.stem)


def _estimate_for(run):
    env = run["environment"]
    card = resolve_card(gpu=match_device(env["gpu"], env["gpu_memory_bytes"]).name)
    cfg = TrainConfig.from_json({k: v for k, v in run["config"].items() if k != "alpha" or v is not None})
    return estimate(run["model"], cfg, card)


@pytest.mark.parametrize("run", list(runs()))
def test_peak_allocated_within_tolerance(run):
    err = _estimate_for(run).peak_allocated_bytes / run["measured"]["peak_allocated_bytes"] - 1
    gap = KNOWN_GAPS.get(run["_stem"])
    if gap is not None:
        assert abs(err - gap[0]) <= PINNED, f"known gap changed: {err:+.3f} (recorded {gap[0]:+.3f})"
    else:
        assert abs(err) <= PEAK_ALLOCATED_TOLERANCE, f"peak allocated off by {err:+.2%}"


@pytest.mark.parametrize("run", list(runs()))
def test_every_phase_within_tolerance(run):
    """Forward and backward of both steps, not only the peak: the fused losses move the peak between
    them (TRL: the last layer's backward; Liger: the loss' forward)."""
    if run["_stem"] in KNOWN_GAPS:
        pytest.skip(KNOWN_GAPS[run["_stem"]][1])
    est = {p.name: p.allocated_bytes for p in _estimate_for(run).phases}
    for phase in run["measured"]["phases"]:
        if phase["name"].startswith(("forward", "backward")):
            err = est[phase["name"]] / phase["peak_allocated_bytes"] - 1
            assert PHASE_UNDER <= err <= PHASE_OVER, f"{phase['name']} off by {err:+.2%}"


def test_the_runs_cover_both_fused_losses_and_three_families():
    stems = [p.values[0]["_stem"] for p in runs()]
    losses = {p.values[0]["config"]["loss"] for p in runs()}
    assert {"fused", "liger"} <= losses
    assert len({s.split("_")[1].split("-")[0] for s in stems}) >= 3
    assert set(KNOWN_GAPS) <= set(stems)


def test_measured_losses_carry_no_unmeasured_warning():
    for name in ("fused", "liger"):
        assert LOSSES[name].measured
    assert loss_warnings("trl", None) == [] and loss_warnings("hf", "liger") == []
