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

from vramfit.units import MiB

# Slack of the caching allocator: what the smallest workable cap needs beyond the allocated peak.
# Measured on an H100 (torch 2.11; 38 probe runs over 8 families, benchmarks/results/probe/h100_*.json):
# * with --find-min, the smallest cap that succeeded was the uncapped reserved peak (all six runs), so the
#   estimate gives allocator_required and peak_reserved the same value;
# * reserved - allocated ranged from 62 MiB to 2.4 GiB and grew with the fp32 logits (tokens x vocab x 4
#   bytes): the loss frees and re-requests blocks of logits size that other requests split and pin.
# FITTED: the tightest upper envelope a + b x fp32 logits over the first 38 runs (minimising the relative
# over-estimate). On the 48 runs of the third grid, measured after it was fixed, allocator_required was
# between 3.5 % low (7B models with 32k vocabularies: small logits, small allowance) and 30 % high; refitted
# leaving one family out at a time over all 85 runs, between 1.8 % low and 70 % high (reports/accuracy.md).
# This is a stated bound, not a model of the allocator: modelling its size classes would do better.
SLACK_BASE_BYTES = 180 * MiB
SLACK_PER_FP32_LOGITS = 2.0

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


def allocator_required_bytes(peak_allocated: int, fp32_logits_bytes: int) -> int:
    return peak_allocated + SLACK_BASE_BYTES + int(SLACK_PER_FP32_LOGITS * fp32_logits_bytes)


def peak_reserved_bytes(peak_allocated: int, fp32_logits_bytes: int) -> int:
    """Measured equal to the allocator requirement (see above)."""
    return allocator_required_bytes(peak_allocated, fp32_logits_bytes)


ASSUMPTIONS = {
    "allocator_slack_base_bytes": SLACK_BASE_BYTES,
    "allocator_slack_per_fp32_logits": SLACK_PER_FP32_LOGITS,
}
