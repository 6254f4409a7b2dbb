"""The probe's replay of its trace (vramfit.probe.allocator_replay) picks the model of the allocator the run
used, on the committed traces of real runs: benchmarks/results/traces_expandable/ (expandable_segments:True,
H200, torch 2.11) and benchmarks/results/traces/ (the default caching allocator, H200, torch 2.11)."""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from vramfit.probe import allocsim
from vramfit.probe import allocsim_expandable as E
from vramfit.probe.allocator_replay import EXPANDABLE, NATIVE, allocator_model, model_of, simulate_allocator
from vramfit.probe.result import ProbeResult
from vramfit.units import format_bytes

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
# The smaller of the committed traces (their models' own tests replay all of them), qwen2.5-1.5b at 1024
# tokens under each allocator.
ES_TRACES = [ROOT / "traces_expandable" / f"{n}.trace.json.gz"
             for n in ("llama-3.2-1b_recipe_s1024", "qwen2.5-1.5b_recipe_s1024", "tinyllama_full_adamw8")]  # fmt: skip
DEFAULT_TRACES = [ROOT / "traces" / f"{n}.trace.json.gz"
                  for n in ("llama-3.2-1b_eager_s1024_nogc", "qwen2.5-1.5b_recipe_s1024")]  # fmt: skip
# The environment keys the child records (vramfit.probe.child.allocator_used), as torch reported them.
ES_ENV = {"allocator_torch": "2.11.0+cu130", "allocator_expandable_segments": True}
DEFAULT_ENV = {"allocator_torch": "2.11.0+cu130", "allocator_expandable_segments": False}


def _snapshot(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)["snapshot"]


def _name(path: Path) -> str:
    return path.name.removesuffix(".trace.json.gz")


def _es_figure(snap: dict) -> int:
    return E.required_cap(E.expandable_requests(snap))


def _native_figure(snap: dict) -> int:
    return allocsim.required_cap(allocsim.requests(snap["events"]))


@pytest.mark.parametrize("path", ES_TRACES, ids=_name)
def test_a_run_under_expandable_segments_is_replayed_by_the_expandable_model(path):
    snap = _snapshot(path)
    sim = simulate_allocator(snap, ES_ENV)
    assert sim["allocator_model"] == EXPANDABLE
    assert sim["required_bytes"] == _es_figure(snap)
    assert sim["required_bytes"] != _native_figure(snap)  # the pick matters on every committed trace
    assert sim["matches_trace"] and sim["placed_share"] == 1.0  # every block where the run put it


@pytest.mark.parametrize("path", DEFAULT_TRACES, ids=_name)
def test_a_run_under_the_default_allocator_keeps_the_default_model(path):
    snap = _snapshot(path)
    sim = simulate_allocator(snap, DEFAULT_ENV)
    assert sim["allocator_model"] == NATIVE
    assert sim["required_bytes"] == _native_figure(snap)
    assert sim["required_bytes"] != _es_figure(snap)
    assert sim["matches_trace"]  # the run's own segments, in order and size


def test_a_run_whose_torch_did_not_say_is_replayed_by_the_default_model():
    """An environment without the setting (a result of an older probe, the CPU pipeline check)."""
    assert (
        allocator_model({}) == NATIVE and allocator_model({"allocator_expandable_segments": None}) == NATIVE
    )
    assert allocator_model(ES_ENV) == EXPANDABLE and allocator_model(DEFAULT_ENV) == NATIVE


def test_no_trace_no_figure():
    """Not recorded (--no-snapshot) or cut short by the bounded trace buffer: nothing is replayed."""
    assert simulate_allocator(None, ES_ENV) is None
    assert simulate_allocator(None, DEFAULT_ENV) is None


def _es_result(name: str) -> dict:
    """The committed --find-min result of an expandable-segments run (benchmarks/results/expandable/)."""
    return json.loads((ROOT / "expandable" / f"h200_grid_es_{name}.json").read_text())["result"]


def test_the_expandable_figure_is_the_runs_requirement_where_the_default_models_is_not():
    """llama-3.2-1b at 1024 tokens under expandable segments: the trace of one run, replayed by the model
    the probe picks from the environment of another run of it (its --find-min search), lands within the
    search's 8 MiB; the default allocator's model, which the probe used before, does not."""
    name = "llama-3.2-1b_recipe_s1024"
    r = _es_result(name)
    snap = _snapshot(ROOT / "traces_expandable" / f"{name}.trace.json.gz")
    sim = simulate_allocator(snap, r["environment"])
    found = r["measured"]["allocator_required_bytes"]
    assert sim["allocator_model"] == EXPANDABLE
    assert abs(sim["required_bytes"] - found) <= 8 * MiB
    assert abs(_native_figure(snap) - found) > 100 * MiB


def _rendered(d: dict) -> tuple[str, str]:
    """(the CLI's text, the HTML report) of a probe result's JSON."""
    from rich.console import Console

    from vramfit.cli.probe_render import render
    from vramfit.report import render_html

    out = io.StringIO()
    render(ProbeResult.from_json(d), Console(file=out, width=400))
    return out.getvalue(), render_html(d, sweep=False)


def test_the_reports_name_the_allocator_model_of_the_figure():
    """A probe without --find-min shows the replay's figure, and says which allocator model gave it; a
    result saved before the model was recorded was replayed by the default allocator's (the only one)."""
    name = "llama-3.2-1b_recipe_s1024"
    r = _es_result(name)
    sim = simulate_allocator(
        _snapshot(ROOT / "traces_expandable" / f"{name}.trace.json.gz"), r["environment"]
    )
    d = json.loads(json.dumps(r))
    d["measured"].update(allocator_required_bytes=None, raw={**d["measured"]["raw"], "simulated": sim})
    text, html = _rendered(d)
    needs = f"needs {format_bytes(sim['required_bytes'])}"
    assert f"allocator model (expandable segments; the run's trace replayed under caps): {needs}" in text
    assert "differs" not in text and "elsewhere" not in text
    assert "The allocator model (expandable segments;" in html and needs in html
    saved = json.loads(json.dumps(ProbeResult.from_json(d).to_json()))  # the JSON render
    assert saved["measured"]["raw"]["simulated"]["allocator_model"] == EXPANDABLE

    old = {k: v for k, v in sim.items() if k != "allocator_model"}
    assert model_of(old) == NATIVE
    d["measured"]["raw"]["simulated"] = {**old, "matches_trace": False}
    text, html = _rendered(d)
    assert "allocator model (default caching allocator;" in text and "differs from the run's segments" in text
    assert "The allocator model (default caching allocator;" in html

    d["measured"]["raw"] = {k: v for k, v in d["measured"]["raw"].items() if k != "simulated"}
    text, html = _rendered(d)  # no trace: no figure, no model named
    assert "allocator model" not in text and "allocator model" not in html


def test_the_search_starts_at_the_figure_of_the_runs_allocator():
    """--find-min's first round: the replay's figure (now of the run's allocator) wherever there is one;
    without a trace, under expandable segments, the estimate's model of the measured peak."""
    from vramfit.config import TrainConfig
    from vramfit.models import resolve_model
    from vramfit.probe import _expandable_guess, _search_guess
    from vramfit.probe.result import Measured

    spec, cfg = resolve_model("llama-3.2-1b"), TrainConfig()
    m = Measured.from_json({"device": "cuda", "peak_allocated_bytes": 3 * 2**30, "oom": None})
    with_sim = replace(m, raw={"simulated": {"allocator_model": EXPANDABLE, "required_bytes": 3300 * MiB}})
    assert _search_guess(spec, cfg, with_sim, True) == 3300 * MiB
    assert _search_guess(spec, cfg, with_sim, False) == 3300 * MiB
    assert _search_guess(spec, cfg, m, True) == _expandable_guess(spec, cfg, m, True) is not None
    assert _search_guess(spec, cfg, m, False) is None
