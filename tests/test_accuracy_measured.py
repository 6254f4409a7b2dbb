"""Hold the estimator to every probe measurement committed under benchmarks/results/probe/.

Each file carries the GPU, the library versions and the command that produced it. The tolerances are what
the estimator achieves on them today; a change that makes it worse fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramfit.config import TrainConfig
from vramfit.estimate import estimate
from vramfit.gpus import match_device, resolve_card

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "probe"
PEAK_ALLOCATED_TOLERANCE = 0.01  # |estimate / measured - 1|; achieved: worst -0.9 %
# An under-estimate of the allocator requirement says "fits" and then runs out of memory. The goal is
# -2 %; achieved today: worst -7.4 % (qwen2.5-0.5b without checkpointing, see estimate/allocator.py).
REQUIRED_UNDER_LIMIT = -0.08
REQUIRED_OVER_LIMIT = 0.05  # and not so high that it wastes the card: achieved worst +2.8 %


def measurements():
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        result = data.get("result", data)
        if result.get("kind") == "probe" and result.get("measured", {}).get("device") == "cuda":
            yield pytest.param(result, id=path.stem)


def _estimate_for(result):
    env = result["environment"]
    gpu = match_device(env["gpu"], env["gpu_memory_bytes"])
    card = resolve_card(gpu=gpu.name)
    cfg = TrainConfig.from_json({k: v for k, v in result["config"].items()})
    return estimate(result["model"], cfg, card)


@pytest.mark.parametrize("result", list(measurements()))
def test_peak_allocated_within_tolerance(result):
    est = _estimate_for(result)
    measured = result["measured"]["peak_allocated_bytes"]
    err = est.peak_allocated_bytes / measured - 1
    assert abs(err) <= PEAK_ALLOCATED_TOLERANCE, f"peak allocated off by {err:+.2%}"


@pytest.mark.parametrize("result", list(measurements()))
def test_allocator_requirement_is_not_underestimated(result):
    est = _estimate_for(result)
    m = result["measured"]
    # without a --find-min search the uncapped reserved bounds the requirement from above
    measured = m.get("allocator_required_bytes") or m["peak_reserved_bytes"]
    err = est.allocator_required_bytes / measured - 1
    assert REQUIRED_UNDER_LIMIT <= err <= REQUIRED_OVER_LIMIT, f"allocator requirement off by {err:+.2%}"


@pytest.mark.parametrize("result", list(measurements()))
def test_components_match_the_attribution(result):
    """Every component the probe attributes from tensor identity is within 1% + 1 MiB of the estimate.

    Activations and logits are compared as a sum: for llama-3.2-1b the probe files one fp32 (tokens x
    vocab) gradient under activations that the estimate counts as logits (an open question of
    attribution, not of size)."""
    measured = result["measured"]["breakdown"]
    if measured is None:
        pytest.skip("this probe run kept no snapshot to attribute")
    est = _estimate_for(result).breakdown.to_json()
    for comp in ("weights", "quant_state", "adapters", "gradients", "optimizer"):
        assert abs(est[comp] - measured[comp]) <= 0.01 * measured[comp] + (1 << 20), comp
    # temporaries at the peak: the two cuBLAS workspaces plus small transients (achieved: within 2.1 MiB)
    assert abs(est["temporaries"] - measured["temporaries"]) <= 4 << 20
    # achieved: within 1.2 % (qwen2.5-0.5b without checkpointing keeps 24 MiB more than modelled)
    est_act, measured_act = est["activations"] + est["logits"], measured["activations"] + measured["logits"]
    assert abs(est_act - measured_act) <= 0.015 * measured_act + (1 << 20)


def test_there_are_measurements():
    assert list(measurements()), f"no probe results under {RESULTS}"
