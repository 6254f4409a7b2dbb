"""From the allocated peak to what the card must have: allocator slack and the cuBLAS workspaces.

    allocated  <=  allocator_required  <=  reserved

``allocator_required`` is the smallest cap on PyTorch's caching allocator with which the steps succeed.
It exceeds the allocated peak by the memory the allocator cannot hand back at that moment: the unused
tails of 2 MiB small-block segments and of large segments rounded to 2 MiB
(``c10/cuda/CUDACachingAllocator.cpp``: kSmallBuffer, kLargeBuffer, kRoundLarge). ``reserved`` is what an
uncapped run keeps cached.

The slack constants below are fitted on six runs; every estimate says so in its warnings.
"""

from __future__ import annotations

from vramfit.units import MiB

# Slack of the caching allocator, from the first six measurements (H100, torch 2.11; mistral-7b,
# llama-3.2-1b, qwen2.5-0.5b, QLoRA recipe at seq 512, with and without gradient checkpointing:
# benchmarks/results/probe/h100_calib_*.json):
# * the smallest cap that succeeded (--find-min) was the uncapped reserved peak in every case, so the
#   estimate gives the two the same value;
# * reserved grew beyond allocated mostly in the first backward, by 150-225 MiB in all six runs
#   (freed logits / activation blocks that later requests of other sizes cannot reuse);
# * one outlier: qwen2.5-0.5b without checkpointing grew by another 300 MiB in the second forward. Its
#   MLP tensors (512 x 4864 x 4 B = 9.96 MB) fall in the allocator's 1-10 MiB class, which packs blocks
#   into shared 20 MiB segments; this constant does not model that: the estimate is 7.4 % low there.
# FITTED on those six runs (no held-out data yet): treat as provisional.
REQUIRED_SLACK_FRACTION = 0.02
REQUIRED_SLACK_BYTES = 192 * MiB
RESERVED_SLACK_FRACTION = REQUIRED_SLACK_FRACTION
RESERVED_SLACK_BYTES = REQUIRED_SLACK_BYTES

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


def allocator_required_bytes(peak_allocated: int) -> int:
    return peak_allocated + int(peak_allocated * REQUIRED_SLACK_FRACTION) + REQUIRED_SLACK_BYTES


def peak_reserved_bytes(peak_allocated: int) -> int:
    reserved = peak_allocated + int(peak_allocated * RESERVED_SLACK_FRACTION) + RESERVED_SLACK_BYTES
    return max(reserved, allocator_required_bytes(peak_allocated))


ASSUMPTIONS = {
    "required_slack_fraction": REQUIRED_SLACK_FRACTION,
    "required_slack_bytes": REQUIRED_SLACK_BYTES,
    "reserved_slack_fraction": RESERVED_SLACK_FRACTION,
    "reserved_slack_bytes": RESERVED_SLACK_BYTES,
}
