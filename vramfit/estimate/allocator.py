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

# Slack of the caching allocator, measured on an H100 (torch 2.11; benchmarks/results/probe/h100_*.json).
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
# * allocator_required_bytes: on the runs where --find-min measured the requirement (the reserved peaks of
#   the others as upper bounds);
# * peak_reserved_bytes: on the uncapped reserved peak of every run.
# A simulation of the allocator's size classes and of the order of requests would do better.


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


# On the 113 configurations whose requirement --find-min measured (8 families; H100 and H200), in sample:
# mean |error| 10.5 %, 0.8 % low to 42 % high; refitted leaving one family out: mean |error| 10.2 %,
# 3.0 % low to 42 % high (reports/accuracy.md). The slack of similar runs ranges from 0.2 to 4 x the fp32
# logits, which no such formula follows: the floor on under-estimates sets the constants, and runs with
# large logits and little else get the most over-estimated. It is above the uncapped reserved peak, so
# certainly too high, in 40 of the 44 other runs (median 5.9 % above).
REQUIRED_SLACK = Slack(97 * MiB, 1.65, 3.0)
# On every run's reserved peak: mean |error| 18 %, 3.9 % low to 53 % high (its big-vocabulary runs that
# took a second logits-sized segment in the steady step set it).
RESERVED_SLACK = Slack(113 * MiB, 2.8, 4.25)
HELD_OUT_TEXT = (
    "held out one model family at a time, on the 113 runs where --find-min measured it, the requirement "
    "was 3.0 % low to 42 % high (mean |error| 10.2 %); `vramfit probe` measures it"
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


def peak_reserved_bytes(
    peak_allocated: int, required: int, fp32_logits_bytes: int, dequant_bytes: int
) -> int:
    """What an uncapped run keeps reserved: at least the requirement (``allocator_required_bytes``)."""
    return max(required, peak_allocated + RESERVED_SLACK.bytes(fp32_logits_bytes, dequant_bytes))


ASSUMPTIONS = {
    "allocator_slack_base_bytes": REQUIRED_SLACK.base,
    "allocator_slack_per_fp32_logits": REQUIRED_SLACK.per_logits,
    "allocator_slack_per_dequantized_weight": REQUIRED_SLACK.per_dequant,
    "reserved_slack_base_bytes": RESERVED_SLACK.base,
    "reserved_slack_per_fp32_logits": RESERVED_SLACK.per_logits,
    "reserved_slack_per_dequantized_weight": RESERVED_SLACK.per_dequant,
}
