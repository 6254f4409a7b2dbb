"""From the allocated peak to what the card must have: allocator slack and the cuBLAS workspaces.

    allocated  <=  allocator_required  <=  reserved

``allocator_required`` is the smallest cap on PyTorch's caching allocator with which the steps succeed.
It exceeds the allocated peak by the memory the allocator cannot hand back at that moment: the unused
tails of 2 MiB small-block segments and of large segments rounded to 2 MiB (kSmallBuffer, kLargeBuffer,
kRoundLarge: :mod:`vramfit.allocator.constants`). ``reserved`` is what an
uncapped run keeps cached.

The slack constants are fitted on measured runs (``vramfit/data/allocator_fit.json``, written by
``benchmarks/slack_fit.py``); every estimate says so in its warnings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from vramfit.units import MiB

# Slack of the caching allocator, measured on probe runs (benchmarks/results/probe/; GPUs and versions in
# the data file below). What the probe's segment log shows (every cudaMalloc, the request that needed it,
# the code that asked):
# * requests of 10 MiB and more get a segment of their own size when no cached block fits, 1-10 MiB ones a
#   20 MiB segment, smaller ones 2 MiB (vramfit.allocator.constants); prepare_model_for_kbit_training's
#   fp32 copies leave the bf16 originals cached, which the first forward's activations then split;
# * the loss takes new logits-sized segments in the first forward (the fp32 upcast and log_softmax's
#   output), and backward of step 1 one more (log_softmax's gradient), in nearly every run;
# * in some runs the steady-state step reserves yet another one: best-fit has split the cached one.
#   Uncapped, that segment stays; under a cap (a smaller card) the allocator first frees its unused cached
#   segments and retries, so a run needs less than it reserves uncapped.
# * the memory it cannot hand back at the peak (free tails of segments that still hold a live block) grows
#   with the number and size of the blocks live then, so with the allocated peak itself: the slack above
#   the peak is from under 1 % to over 20 % of it on the measured runs, and a term proportional to the peak
#   removes most of the over-estimate that the logits and dequantized-weight terms alone leave on small
#   models (benchmarks/slack_fit.py compares the two formulas held out).
# Hence three figures, each FITTED by benchmarks/slack_fit.py as a + b x fp32 logits + c x one dequantized
# weight + d x the allocated peak on the slack above the measured peak, and read from
# vramfit/data/allocator_fit.json with their errors in sample and held out by model family (docs/MEMORY.md
# says why no formula does better):
# * REQUIRED_SLACK, allocator_required_bytes: on the runs where --find-min measured the requirement, with
#   no fitted run more than the fit's floor under;
# * LOW_SLACK, the low end of the requirement's range (the large tensors placed well): the greatest slack
#   no measured requirement was lower than; a card between the two ends "may fit";
# * RESERVED_SLACK, peak_reserved_bytes: on the uncapped reserved peak of every run.


@dataclass(frozen=True)
class Slack:
    """``base + per_logits x fp32 logits + per_dequant x one dequantized weight + per_peak x the allocated
    peak`` bytes."""

    base: int
    per_logits: float
    per_dequant: float
    per_peak: float = 0.0

    def bytes(self, fp32_logits_bytes: int, dequant_bytes: int, peak_allocated: int = 0) -> int:
        return (
            self.base
            + int(self.per_logits * fp32_logits_bytes)
            + int(self.per_dequant * dequant_bytes)
            + int(self.per_peak * peak_allocated)
        )

    def text(self) -> str:
        return (
            f"{self.base >> 20} MiB + {self.per_logits:g} x the fp32 logits + {self.per_dequant:g} x one "
            f"dequantized weight + {self.per_peak * 100:g} % of the allocated peak"
        )

    @classmethod
    def from_json(cls, d: dict) -> Slack:
        return cls(
            int(d["base_bytes"]),
            float(d["per_fp32_logits"]),
            float(d["per_dequantized_weight"]),
            float(d.get("per_allocated_peak", 0.0)),
        )


FIT: dict = json.loads(resources.files("vramfit").joinpath("data").joinpath("allocator_fit.json").read_text())
REQUIRED_SLACK = Slack.from_json(FIT["required"])
LOW_SLACK = Slack.from_json(FIT["low"])
RESERVED_SLACK = Slack.from_json(FIT["reserved"])


def _pct_range(lowest: float, highest: float) -> str:
    """-0.042, 0.44 -> '4.2 % low to 44 % high'."""

    def side(e: float, digits: int) -> str:
        return f"{abs(e) * 100:.{digits}f} % {'low' if e < 0 else 'high'}"

    return f"{side(lowest, 1)} to {side(highest, 0)}"


def held_out_text() -> str:
    """The requirement's held-out error, as the estimate's warning states it."""
    h = FIT["required"]["held_out"]
    return (
        f"held out one model family at a time, on the {h['runs']} runs where --find-min measured it, the "
        f"requirement was {_pct_range(h['lowest_error'], h['highest_error'])} (mean |error| "
        f"{h['mean_abs_error'] * 100:.1f} %); `vramfit probe` measures it"
    )


def low_held_out_text() -> str:
    h = FIT["low"]["held_out"]
    return f"held out by family, the range held the measured requirement in {h['range_holds']} of the {h['runs']} runs"


def slack_warning() -> str:
    """The warning every estimate carries about the fitted slack, its errors and its range."""
    gpus = " and ".join(g.removeprefix("NVIDIA ").split()[0] for g in FIT["measurements"]["gpu"])
    return (
        "allocator_required_bytes adds a fitted allowance for the caching allocator's slack "
        f"({REQUIRED_SLACK.text()}; fitted on {gpus} runs); {held_out_text()}. "
        "Where the allocator places the logits moves the requirement by up to a logits-sized block, so it is "
        f"given as a range from allocator_required_low_bytes ({LOW_SLACK.text()}): {low_held_out_text()}"
    )


# cuBLAS and cuBLASLt workspaces, allocated through PyTorch's allocator, one of each per handle/stream
# (aten/src/ATen/cuda/CublasHandlePool.cpp, getChosenWorkspaceSize): ":4096:8" = 32 MiB each on Hopper
# and newer, ":4096:2:16:8" = 8.125 MiB each before. Measured on an H100 (reports/cuda_context/
# h100-80gb.json, torch 2.11): 64 MiB allocated after bf16 and fp32 matmuls, forward and backward.
CUBLAS_WORKSPACE_HOPPER = 2 * 32 * MiB
CUBLAS_WORKSPACE_OLDER = 2 * (4096 * 1024 * 2 + 16 * 1024 * 8)  # same two workspaces; not yet measured


def cublas_workspace_bytes(compute_capability: tuple[int, int] | None) -> int:
    if compute_capability is not None and compute_capability >= (9, 0):
        return CUBLAS_WORKSPACE_HOPPER
    return CUBLAS_WORKSPACE_OLDER


def allocator_required_bytes(peak_allocated: int, fp32_logits_bytes: int, dequant_bytes: int) -> int:
    """``dequant_bytes``: one dequantized weight, 0 without a k-bit base."""
    return peak_allocated + REQUIRED_SLACK.bytes(fp32_logits_bytes, dequant_bytes, peak_allocated)


def allocator_required_low_bytes(peak_allocated: int, fp32_logits_bytes: int, dequant_bytes: int) -> int:
    """The requirement when the caching allocator places the large tensors well (the low end of the range)."""
    return min(
        peak_allocated + LOW_SLACK.bytes(fp32_logits_bytes, dequant_bytes, peak_allocated),
        allocator_required_bytes(peak_allocated, fp32_logits_bytes, dequant_bytes),
    )


def peak_reserved_bytes(
    peak_allocated: int, required: int, fp32_logits_bytes: int, dequant_bytes: int
) -> int:
    """What an uncapped run keeps reserved: at least the requirement (``allocator_required_bytes``)."""
    return max(
        required, peak_allocated + RESERVED_SLACK.bytes(fp32_logits_bytes, dequant_bytes, peak_allocated)
    )


ASSUMPTIONS = {
    "allocator_slack_base_bytes": REQUIRED_SLACK.base,
    "allocator_slack_per_fp32_logits": REQUIRED_SLACK.per_logits,
    "allocator_slack_per_dequantized_weight": REQUIRED_SLACK.per_dequant,
    "allocator_slack_per_allocated_peak": REQUIRED_SLACK.per_peak,
    "allocator_slack_low_base_bytes": LOW_SLACK.base,
    "allocator_slack_low_per_fp32_logits": LOW_SLACK.per_logits,
    "allocator_slack_low_per_dequantized_weight": LOW_SLACK.per_dequant,
    "allocator_slack_low_per_allocated_peak": LOW_SLACK.per_peak,
    "reserved_slack_base_bytes": RESERVED_SLACK.base,
    "reserved_slack_per_fp32_logits": RESERVED_SLACK.per_logits,
    "reserved_slack_per_dequantized_weight": RESERVED_SLACK.per_dequant,
    "reserved_slack_per_allocated_peak": RESERVED_SLACK.per_peak,
}
