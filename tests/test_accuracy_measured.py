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
# Achieved on the 88 committed runs (median 0.1 %): worst -2.2 % (smollm2-360m, LoRA r=64 on all-linear without
# checkpointing keeps 77 MiB of activations the estimate does not count).
PEAK_ALLOCATED_TOLERANCE = 0.025  # |estimate / measured - 1|
# The allocator requirement is an upper-envelope fit (estimate/allocator.py) on the first 38 runs, where it
# is between -0.2 % and +32.7 %. On the 48 runs of the third grid, measured after it was fixed, it was
# between -3.5 % and +30.3 % (the four under-estimates: 7B models with 32k vocabularies, whose logits, and
# so their slack allowance, are small). An under-estimate says "fits" and then runs out of memory; the
# planner's default margin (3 % + 64 MiB) covers these. The goal remains -2 %.
REQUIRED_UNDER_LIMIT = -0.04
REQUIRED_OVER_LIMIT = 0.35


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
    """The persistent components match the probe's attribution from tensor identity within 1 % + 1 MiB; the
    transient ones (gradients, activations, logits, temporaries) are compared as a sum.

    Why a sum: within a phase two moments can be within 1 % of each other (the end of the loss vs the last
    layer's backward with a dequantized weight), and the estimate and the measurement may pick different
    ones; and for some models the probe files an fp32 (tokens x vocab) gradient under activations that the
    estimate counts as logits. Achieved: persistent within 2 % or 12 MiB (unexplained so far: tinyllama
    fp4 without double quantization holds 19.5 MiB more weights, qwen2.5-7b with all-linear LoRA 11.2 MiB
    more quantization state), the transient sum within 5.7 % (gemma-2-2b, fp4 MLP adapters with Adafactor)."""
    measured = result["measured"]["breakdown"]
    if measured is None:
        pytest.skip("this probe run kept no snapshot to attribute")
    est = _estimate_for(result).breakdown.to_json()
    for comp in ("weights", "adapters", "optimizer"):
        assert abs(est[comp] - measured[comp]) <= max(0.02 * measured[comp], 12 << 20), comp
    # quantization state: 11-23 MiB more than modelled whenever LoRA wraps the MLP's 4-bit layers
    # (qwen2.5-7b, mistral-7b, gemma-2-2b; unexplained so far), exact otherwise
    assert abs(est["quant_state"] - measured["quant_state"]) <= max(0.2 * measured["quant_state"], 12 << 20)
    transient = ("gradients", "activations", "logits", "temporaries")
    est_t, measured_t = sum(est[c] for c in transient), sum(measured[c] for c in transient)
    assert abs(est_t - measured_t) <= 0.06 * measured_t + (1 << 20)


def test_there_are_measurements():
    assert list(measurements()), f"no probe results under {RESULTS}"
