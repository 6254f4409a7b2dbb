"""From the allocated peak to what the card must have: allocator slack and the cuBLAS workspaces.

    allocated  <=  allocator_required  <=  reserved

``allocator_required`` is the smallest cap on PyTorch's caching allocator with which the steps succeed.
It exceeds the allocated peak by the memory the allocator cannot hand back at that moment: the unused
tails of 2 MiB small-block segments and of large segments rounded to 2 MiB
(``c10/cuda/CUDACachingAllocator.cpp``: kSmallBuffer, kLargeBuffer, kRoundLarge). ``reserved`` is what an
uncapped run keeps cached.

The slack constants below are fitted on measured runs; every estimate says so in its warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramfit.units import MiB

# Slack of the caching allocator, measured on an H100 and an H200 (torch 2.11; benchmarks/results/probe/).
# What the probe's segment log shows (every cudaMalloc, the request that needed it, the code that asked):
# * requests of 10 MiB and more get a segment of their own size when no cached block fits, 1-10 MiB ones a
#   20 MiB segment, smaller ones 2 MiB; prepare_model_for_kbit_training's fp32 copies leave the bf16
#   originals cached, which the first forward's activations then split;
# * the loss takes new logits-sized segments in the first forward (the fp32 upcast and log_softmax's
#   output), and backward of step 1 one more (log_softmax's gradient), in nearly every run;
# * in about a fifth of the runs the steady-state step reserves yet another one: best-fit has split the
#   cached one. Uncapped, that segment stays; under a cap (a smaller card) the allocator first frees its
#   unused cached segments and retries, so a run needs up to 1 GiB less than it reserves uncapped.
# Hence two figures. FITTED (benchmarks/slack_fit.py), a + b x fp32 logits + c x one dequantized weight on
# the slack above the measured peak, with no fitted run more than 0.5 % under:
# * allocator_required_bytes: on the runs where --find-min measured the requirement;
# * peak_reserved_bytes: on the uncapped reserved peak of every run.
# Replaying a run's recorded requests through a model of the allocator (vramfit.probe.allocsim) finds the
# requirement within 1 % in 150 of 151 configurations, but only with the run's own requests: made 0.3 %
# larger or smaller, the same trace needs up to 6.5 % more or less, at 1 % up to 8 % (qwen3-8b;
# benchmarks/trace_sensitivity.py), so a synthesized sequence of requests would have to get every large
# tensor and its order right to better than that.


@dataclass(frozen=True)
class Slack:
    """``base + per_logits x fp32 logits + per_dequant x one dequantized weight`` bytes."""

    base: int
    per_logits: float
    per_dequant: float

    def bytes(self, fp32_logits_bytes: int, dequant_bytes: int) -> int:
        return self.base + int(self.per_logits * fp32_logits_bytes) + int(self.per_dequant * dequant_bytes)

    def text(self) -> str:
        return f"{self.base >> 20} MiB + {self.per_logits:g} x the fp32 logits + {self.per_dequant:g} x one dequantized weight"


# On all 157 configurations of the grid, whose requirement --find-min measured (8 families; H100 and H200),
# in sample: mean |error| 13.0 %, 0.5 % low to 36 % high; refitted leaving one family out: mean |error|
# 13.9 %, 4.2 % low to 44 % high (reports/accuracy.md). The slack of similar runs ranges from 0.1 to 15 x the
# fp32 logits, and the requirement of one configuration jumps by up to 10 % between sequence lengths 4
# tokens apart (benchmarks/results/sensitivity/): no smooth formula follows that. The floor on
# under-estimates sets the constants, and runs with large logits and little else get the most over-estimated.
REQUIRED_SLACK = Slack(159 * MiB, 1.4, 7.25)
# The same runs set a floor: LOW_SLACK is the slack with which no measured requirement was lower (fit_low in
# benchmarks/slack_fit.py). The requirement of one configuration moves by up to a logits-sized segment when
# its tensors change by 0.3 % (benchmarks/results/sensitivity/, trace_sensitivity.py): where the allocator
# places the logits decides, and no formula follows that. So vramfit gives the requirement as a range,
# allocator_required_low_bytes (placed well) to allocator_required_bytes (placed badly); the verdict "fits"
# needs the upper end, and a card between the two "may fit".
LOW_SLACK = Slack(24 * MiB, 0.05, 0.5)
LOW_HELD_OUT_TEXT = "held out by family, the range held the measured requirement in 149 of the 157 runs"
# On every run's reserved peak: mean |error| 18 %, 3.9 % low to 53 % high (its big-vocabulary runs that
# took a second logits-sized segment in the steady step set it).
RESERVED_SLACK = Slack(113 * MiB, 2.8, 4.25)
HELD_OUT_TEXT = (
    "held out one model family at a time, on the 157 runs where --find-min measured it, the requirement "
    "was 4.2 % low to 44 % high (mean |error| 13.9 %); `vramfit probe` measures it"
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
    return peak_allocated + REQUIRED_SLACK.bytes(fp32_logits_bytes, dequant_bytes)


def allocator_required_low_bytes(peak_allocated: int, fp32_logits_bytes: int, dequant_bytes: int) -> int:
    """The requirement when the caching allocator places the large tensors well (the low end of the range)."""
    return min(
        peak_allocated + LOW_SLACK.bytes(fp32_logits_bytes, dequant_bytes),
        allocator_required_bytes(peak_allocated, fp32_logits_bytes, dequant_bytes),
    )


def peak_reserved_bytes(
    peak_allocated: int, required: int, fp32_logits_bytes: int, dequant_bytes: int
) -> int:
    """What an uncapped run keeps reserved: at least the requirement (``allocator_required_bytes``)."""
    return max(required, peak_allocated + RESERVED_SLACK.bytes(fp32_logits_bytes, dequant_bytes))


ASSUMPTIONS = {
    "allocator_slack_base_bytes": REQUIRED_SLACK.base,
    "allocator_slack_per_fp32_logits": REQUIRED_SLACK.per_logits,
    "allocator_slack_per_dequantized_weight": REQUIRED_SLACK.per_dequant,
    "allocator_slack_low_base_bytes": LOW_SLACK.base,
    "allocator_slack_low_per_fp32_logits": LOW_SLACK.per_logits,
    "allocator_slack_low_per_dequantized_weight": LOW_SLACK.per_dequant,
    "reserved_slack_base_bytes": RESERVED_SLACK.base,
    "reserved_slack_per_fp32_logits": RESERVED_SLACK.per_logits,
    "reserved_slack_per_dequantized_weight": RESERVED_SLACK.per_dequant,
}
