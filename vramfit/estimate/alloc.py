"""How PyTorch's CUDA caching allocator counts bytes.

Every block is rounded up to a multiple of 512 bytes (``kMinBlockSize`` in
``c10/cuda/CUDACachingAllocator.cpp``), and ``torch.cuda.memory_allocated`` reports the rounded sizes.
That matters for the thousands of small tensors of a quantized model (norm weights, LoRA matrices,
bitsandbytes absmax vectors): a 64-byte tensor costs 512.
"""

from __future__ import annotations

MIN_BLOCK = 512  # bytes; kMinBlockSize


def block(nbytes: int) -> int:
    """Bytes one tensor of ``nbytes`` occupies in the caching allocator."""
    if nbytes <= 0:
        return 0
    return -(-nbytes // MIN_BLOCK) * MIN_BLOCK
