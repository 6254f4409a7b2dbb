"""Hold the estimator to every probe measurement committed under benchmarks/results/probe/.

Each file carries the GPU, the library versions and the command that produced it. The tolerances are what
the estimator achieves on them today; a change that makes it worse fails here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from vramfit.config import TrainConfig
from vramfit.estimate import estimate
from vramfit.gpus import match_device, resolve_card
from vramfit.units import MiB

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "probe"
# Achieved on the committed runs (median 0.1 %): within 2.1 % on all but the known gaps below. The worst
# inside: -2.0 % (tinyllama full fine-tuning with AdamW8bit, below) and +1.9 % (smollm2-135m full fine-tuning
# with Adafactor, batch 8, no checkpointing).
PEAK_ALLOCATED_TOLERANCE = 0.021  # |estimate / measured - 1|
# The allocator slack is fitted (estimate/allocator.py, benchmarks/slack_fit.py) on the runs where --find-min
# measured the requirement, none of them more than 0.5 % under on their measured peak: in sample, on the
# estimated peak, -0.9 % to +25 % (goal: -2 %).
REQUIRED_UNDER_LIMIT = -0.02
REQUIRED_OVER_LIMIT = 0.26
# Elsewhere only the uncapped reserved peak is known, an upper bound of the requirement (up to 1 GiB above
# it where both were measured): the estimate is between 13 % under and 12 % over it outside the known gaps.
# The low end of the range (allocator_required_low_bytes: large tensors placed well) is fitted as a floor
# under the same find-min runs: never above their requirement by more than the estimated peak's own error.
LOW_OVER_LIMIT = 0.01
RESERVED_UNDER_LIMIT = -0.14
RESERVED_OVER_LIMIT = 0.13
PINNED = 0.01  # a known gap is held to its recorded error within this (fixing it means updating the entry)


@dataclass(frozen=True)
class Gap:
    """A run the estimator is known to miss, with its error pinned: what is missing and the errors as
    recorded (``peak``, ``required`` relative; ``transient`` the relative error of the transient sum;
    ``mib``: component -> estimate - measured in MiB)."""

    why: str
    peak: float | None = None
    required: float | None = None
    transient: float | None = None
    mib: dict = field(default_factory=dict)


KNOWN_GAPS = {
    "h100_grid_qwen3-0.6b_full_adamw_s1024": Gap(
        "full fine-tuning with torch AdamW: its foreach temporaries (1-10 MiB requests, a 20 MiB segment "
        "each) reserve 1.8 GiB beyond the allocated peak; the estimate is 10 % under that reserved peak "
        "(peak allocated exact; the requirement itself, searched on the H200, is 16 % lower)",
        required=-0.104),
    "h100_grid_phi-3.5-mini_nf4_nodq_mlp_r128_s1024": Gap(
        "LoRA r=128 on Phi-3's fused gate_up_proj: adapters 17 MiB more than modelled (the 250 MiB of "
        "forward activations once missing here were autocast's copies of the adapters, now modelled)",
        mib={"adapters": -17.1}),
    "h100_grid_llama-2-7b_attention_r128_b4": Gap(
        "LoRA r=128 on attention, batch 4: adapters 23 MiB more than modelled", mib={"adapters": -22.7}),
    "h100_grid_tinyllama_full_adamw8": Gap(
        "full fine-tuning with bitsandbytes AdamW8bit on untied embeddings: the probe's attribution files "
        "132 MiB more under optimizer than modelled, though a GPU trace shows the state tensors alive at the "
        "peak as modelled (fp32 for the embedding, 8-bit with absmax for the rest); not settled",
        mib={"optimizer": -132.5}),
}  # fmt: skip


def _configuration(stem: str) -> str:
    """The configuration a result file measured, whatever GPU measured it and whether find-min searched it."""
    return re.sub(r"^h\d+_grid_(fm_)?", "", stem)


# Other measurements of a known gap's configuration share it, all but the requirement, which depends on what
# was measured (the requirement itself, or the reserved peak that bounds it).
_GAPS_BY_CONFIGURATION = {_configuration(k): replace(g, required=None) for k, g in KNOWN_GAPS.items()}


def _gap(stem: str) -> Gap | None:
    return KNOWN_GAPS.get(stem) or _GAPS_BY_CONFIGURATION.get(_configuration(stem))


def measurements():
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        result = data.get("result", data)
        if result.get("kind") == "probe" and result.get("measured", {}).get("device") == "cuda":
            yield pytest.param({**result, "_stem": path.stem}, id=path.stem)


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
    gap = _gap(result["_stem"])
    if gap is not None and gap.peak is not None:
        assert abs(err - gap.peak) <= PINNED, f"known gap changed: {err:+.3f} (recorded {gap.peak:+.3f})"
    else:
        assert abs(err) <= PEAK_ALLOCATED_TOLERANCE, f"peak allocated off by {err:+.2%}"


@pytest.mark.parametrize("result", list(measurements()))
def test_allocator_requirement_is_not_underestimated(result):
    est = _estimate_for(result)
    m = result["measured"]
    gap = _gap(result["_stem"])
    if m.get("allocator_required_bytes"):  # found by --find-min: the requirement itself
        err = est.allocator_required_bytes / m["allocator_required_bytes"] - 1
        lo, hi = REQUIRED_UNDER_LIMIT, REQUIRED_OVER_LIMIT
    else:  # only the uncapped reserved peak: an upper bound of the requirement
        err = est.allocator_required_bytes / m["peak_reserved_bytes"] - 1
        lo, hi = RESERVED_UNDER_LIMIT, RESERVED_OVER_LIMIT
    if gap is not None and gap.required is not None:
        assert abs(err - gap.required) <= PINNED, (
            f"known gap changed: {err:+.3f} (recorded {gap.required:+.3f})"
        )
    else:
        assert lo <= err <= hi, f"allocator requirement off by {err:+.2%}"


@pytest.mark.parametrize(
    "result", [p for p in measurements() if p.values[0]["measured"].get("allocator_required_bytes")]
)
def test_low_end_of_the_requirement_is_not_above_the_measured_one(result):
    est = _estimate_for(result)
    err = est.allocator_required_low / result["measured"]["allocator_required_bytes"] - 1
    gap = _gap(result["_stem"])
    limit = LOW_OVER_LIMIT + max(0.0, gap.peak or 0.0) if gap is not None else LOW_OVER_LIMIT
    assert err <= limit, f"the best-placement requirement is {err:+.2%} above the measured one"


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
    gap = _gap(result["_stem"]) or Gap("")
    for comp in ("weights", "adapters", "optimizer"):
        if comp in gap.mib:
            assert abs((est[comp] - measured[comp]) / MiB - gap.mib[comp]) <= 2, comp
            continue
        assert abs(est[comp] - measured[comp]) <= max(0.02 * measured[comp], 12 << 20), comp
    # quantization state: 11-23 MiB more than modelled whenever LoRA wraps the MLP's 4-bit layers
    # (qwen2.5-7b, mistral-7b, gemma-2-2b; unexplained so far), exact otherwise
    assert abs(est["quant_state"] - measured["quant_state"]) <= max(0.2 * measured["quant_state"], 12 << 20)
    transient = ("gradients", "activations", "logits", "temporaries")
    est_t, measured_t = sum(est[c] for c in transient), sum(measured[c] for c in transient)
    if gap.transient is not None:
        assert abs(est_t / measured_t - 1 - gap.transient) <= PINNED
    else:
        assert abs(est_t - measured_t) <= 0.06 * measured_t + (1 << 20)


def test_every_known_gap_names_a_committed_run():
    stems = {r["_stem"] for r in (p.values[0] for p in measurements())}
    assert set(KNOWN_GAPS) <= stems
    assert all(g.why for g in KNOWN_GAPS.values())


def test_there_are_measurements():
    assert list(measurements()), f"no probe results under {RESULTS}"
