"""How PyTorch's CUDA caching allocator counts bytes.

Every block is rounded up to a multiple of 512 bytes (``kMinBlockSize``, :mod:`vramfit.allocator.constants`),
and ``torch.cuda.memory_allocated`` reports the rounded sizes. That matters for the thousands of small
tensors of a quantized model (norm weights, LoRA matrices, bitsandbytes absmax vectors): a 64-byte tensor
costs 512.
"""

from __future__ import annotations

from vramfit.allocator.constants import round_size


def block(nbytes: int) -> int:
    """Bytes one tensor of ``nbytes`` occupies in the caching allocator (0 for no tensor)."""
    return round_size(nbytes) if nbytes > 0 else 0
