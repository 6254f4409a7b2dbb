"""The constants of PyTorch's CUDA caching allocator, each quoted once from the c10 source. Pure Python.

Source: torch 2.11.0 (git ``70d99e998b4955e0049d13a98d77ae1b14db1f45``, the release the committed
measurements ran on), ``c10/core/AllocatorConfig.h``, namespace ``c10::CachingAllocator``::

    // "small" allocations are packed in 2 MiB blocks
    constexpr size_t kSmallBuffer = 2097152;
    // all sizes are rounded to at least 512 bytes
    constexpr size_t kMinBlockSize = 512;
    // largest "small" allocation is 1 MiB
    constexpr size_t kSmallSize = 1048576;
    // allocations between 1 and 10 MiB may use kLargeBuffer
    constexpr size_t kMinLargeAlloc = 10485760;
    // round up large allocations to 2 MiB
    constexpr size_t kRoundLarge = 2097152;
    ...
    // "large" allocations may be packed in blocks of this size
    std::atomic<size_t> large_segment_size_{20971520}; // 20 MB by default

(older releases define the same values in ``c10/cuda/CUDACachingAllocator.cpp``, the 20 MiB one as
``kLargeBuffer = 20971520``; torch 2.11 makes it the default of the ``large_segment_size_mb`` setting of
``PYTORCH_ALLOC_CONF``). How ``c10/cuda/CUDACachingAllocator.cpp`` uses them (native backend, no
``PYTORCH_ALLOC_CONF``; abridged)::

    static size_t round_size(size_t size)       // < kMinBlockSize: kMinBlockSize; else a multiple of it
    static size_t get_allocation_size(size_t size) {
      if (size <= kSmallSize) return kSmallBuffer;
      else if (size < kMinLargeAlloc) return <large segment size>;
      else return kRoundLarge * ((size + kRoundLarge - 1) / kRoundLarge);
    }
    bool should_split(const Block* block, size_t size) {
      size_t remaining = block->size - size;
      if (block->pool->is_small || CUDAAllocatorConfig::expandable_segments())
        return remaining >= kMinBlockSize;
      return (size < max_split_size()) && (remaining > kSmallSize);
    }

Expandable segments (``expandable_segments:True``, Note [Expandable Segments] in the same file): one
segment per stream and pool grows by mapping physical pages, "we use 2MiB pages for our small pool and
20MiB pages for our large pool" (``segment_size = pool->is_small ? kSmallBuffer : <large segment size>``):
:data:`EXPANDABLE_PAGE` below. vramfit's allocator models: :mod:`vramfit.probe.allocsim` (native backend)
and :mod:`vramfit.probe.allocsim_expandable` (expandable segments).
"""

from __future__ import annotations

from typing import Literal

MIN_BLOCK = 512  # kMinBlockSize: every block is a multiple of it, and at least it
SMALL_SIZE = 1 << 20  # kSmallSize: the largest request of the small pool; a large block splits above it
SMALL_BUFFER = 2 << 20  # kSmallBuffer: the segment size of the small pool
MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc: requests from here on get a segment of their own size
LARGE_BUFFER = 20 << 20  # large_segment_size_ (kLargeBuffer): the segment for requests under kMinLargeAlloc
ROUND_LARGE = 2 << 20  # kRoundLarge: segments of kMinLargeAlloc and more are multiples of it

# A cap finer than this changes nothing: every segment, small (kSmallBuffer), mid-sized (20 MiB) or large
# (kRoundLarge multiples), is a multiple of 2 MiB, so the reserved total is too.
CAP_GRANULE = ROUND_LARGE

Pool = Literal["small", "large"]
# Expandable segments: the page by which a pool's segment grows (see the module docstring).
EXPANDABLE_PAGE: dict[Pool, int] = {"small": SMALL_BUFFER, "large": LARGE_BUFFER}


def round_size(nbytes: int) -> int:
    """``round_size``: the bytes a request occupies (and the allocator's counters count)."""
    return MIN_BLOCK if nbytes < MIN_BLOCK else -(-nbytes // MIN_BLOCK) * MIN_BLOCK


def pool_of(rounded: int) -> Pool:
    """The pool a rounded request is served from (``get_pool``: ``size <= kSmallSize`` is small)."""
    return "small" if rounded <= SMALL_SIZE else "large"


def segment_size(rounded: int) -> int:
    """``get_allocation_size``: the cudaMalloc made for a rounded request no cached block can serve."""
    if rounded <= SMALL_SIZE:
        return SMALL_BUFFER
    if rounded < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-rounded // ROUND_LARGE) * ROUND_LARGE


def should_split(rounded: int, remaining: int) -> bool:
    """``should_split`` of the native backend without ``max_split_size_mb``: whether a free block handed
    out for a rounded request keeps its ``remaining`` bytes as a free block of their own."""
    if pool_of(rounded) == "small":
        return remaining >= MIN_BLOCK
    return remaining > SMALL_SIZE
