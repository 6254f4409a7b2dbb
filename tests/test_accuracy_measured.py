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
PEAK_ALLOCATED_TOLERANCE = 0.01  # |estimate / measured - 1|
REQUIRED_UNDER_LIMIT = -0.02  # an under-estimate of the allocator requirement says "fits" and then OOMs


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
    assert err >= REQUIRED_UNDER_LIMIT, f"allocator requirement under-estimated by {err:+.2%}"


@pytest.mark.parametrize("result", list(measurements()))
def test_components_match_the_attribution(result):
    """Every component the probe attributes from tensor identity is within 1% + 1 MiB of the estimate,
    except temporaries (transients whose moment the probe's peak may not share)."""
    measured = result["measured"]["breakdown"]
    if measured is None:
        pytest.skip("this probe run kept no snapshot to attribute")
    est = _estimate_for(result).breakdown.to_json()
    for comp in ("weights", "quant_state", "adapters", "gradients", "optimizer", "activations", "logits"):
        assert abs(est[comp] - measured[comp]) <= 0.01 * measured[comp] + (1 << 20), comp


def test_there_are_measurements():
    assert list(measurements()), f"no probe results under {RESULTS}"
