"""A model of PyTorch's CUDA caching allocator, to replay a recorded trace under a cap. Pure Python.

One uncapped probe run records every request the training makes (the allocator trace of
:mod:`vramfit.probe.snapshot`). Those requests do not depend on the cap, so replaying them through a
model of the allocator with a cap says whether the run would have fitted under it, and a search over caps
gives ``allocator_required_bytes`` from that single run, where ``--find-min`` needs a round of real
capped runs per step of its search.

The model follows ``c10/cuda/CUDACachingAllocator.cpp`` (native backend, no ``PYTORCH_CUDA_ALLOC_CONF``;
its constants and size rules in :mod:`vramfit.allocator.constants`):

* a request is rounded up to 512 bytes (``round_size``); up to 1 MiB it is served from the small pool,
  above from the large pool;
* from its pool it gets the smallest free block of its own CUDA stream that is large enough, lowest
  address first among equal sizes (``BlockComparatorSize`` orders by stream, size, address); the block
  is split when what remains is at least 512 bytes (small pool) or more than 1 MiB (large pool), else it
  is handed out whole (``shouldSplit``);
* with no such block, a new segment is reserved (``cudaMalloc``) of 2 MiB for small requests, 20 MiB for
  requests under 10 MiB and the request rounded up to 2 MiB above (``get_allocation_size``);
* under a cap (``set_per_process_memory_fraction``) a segment that would take the reserved total past it
  fails; the allocator then frees every cached segment with no block in use (``release_cached_blocks``)
  and tries once more; if that fails too, the run is out of memory;
* among free blocks of one size the lowest address wins, so where segments lie matters: the replay puts
  each segment where the recorded run's driver put it (its ``segment_alloc`` events), and a segment the
  run did not make (a cap changed the course) below the other large ones, or above the other small ones,
  as the driver does in the recorded traces;
* a freed block merges with free neighbours of its segment and goes back to its pool; segments are
  given back only where the trace itself gave one back uncapped (``segment_free``: an ``empty_cache()``
  call, seen once during the kbit preparation), which frees every unused cached segment.

It is checked against the traces it replays: uncapped, it must create the same segments, in the same
order and sizes, as the trace's own ``segment_alloc`` events (:func:`check_against_trace`). On one run of
each of 151 configurations (H200, ``benchmarks/results/replay/``) it did in all 151, and its smallest cap
was within 1 % of ``--find-min`` in 150.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from vramfit.allocator.constants import CAP_GRANULE, pool_of, round_size, segment_size, should_split


class _Block:
    __slots__ = ("addr", "size", "prev", "next", "free", "pool")

    def __init__(self, addr: int, size: int, pool: tuple[bool, int]) -> None:
        self.addr, self.size, self.pool = addr, size, pool  # pool: (small, stream)
        self.prev: _Block | None = None
        self.next: _Block | None = None
        self.free = True


class OutOfMemory(Exception):
    def __init__(self, index: int, requested: int) -> None:
        super().__init__(f"out of memory at event {index} ({requested} bytes)")
        self.index, self.requested = index, requested


@dataclass(frozen=True)
class Replay:
    peak_allocated: int
    peak_reserved: int
    segments: tuple[tuple[int, int], ...]  # (event index, segment bytes) of every cudaMalloc, in order


class CachingAllocator:
    """The allocator's state: pools of free blocks, segments, the reserved total and its cap."""

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap
        self.pools: dict[tuple[bool, int], list[tuple[int, int, _Block]]] = {}  # (small, stream) -> sorted
        self.reserved = self.allocated = 0
        self.peak_reserved = self.peak_allocated = 0
        # Virtual addresses of new segments. They matter where best fit meets two free blocks of one size:
        # the lower address wins. A recorded trace says where the driver put each segment (its
        # segment_alloc events, passed on as hints); elsewhere (a cap made the replay reserve what the run
        # did not) the common case of the recorded traces: a large segment below every earlier one, a
        # small (2 MiB) one above.
        self._next_small = 1 << 40
        self._next_large = 1 << 46
        self.hint: int | None = None  # the address of the segment the next request made, uncapped
        self._live: dict[int, int] = {}  # segment base -> size
        self.segment_log: list[tuple[int, int]] = []

    def _new_segment(self, size: int, pool: tuple[bool, int], index: int) -> _Block | None:
        seg = segment_size(size)
        if self.cap is not None and self.reserved + seg > self.cap:
            self.release_cached()
            if self.reserved + seg > self.cap:
                return None
        addr = self.hint
        if addr is None or any(b < addr + seg and addr < b + n for b, n in self._live.items()):
            if pool[0]:
                addr = self._next_small
                self._next_small += seg + (1 << 21)
            else:
                self._next_large -= seg + (1 << 21)
                addr = self._next_large
        self._live[addr] = seg
        block = _Block(addr, seg, pool)
        self.reserved += seg
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        self.segment_log.append((index, seg))
        return block

    def release_cached(self) -> None:
        """``release_cached_blocks``: give back every segment that is one free block (what a cap does
        before it fails, and what ``empty_cache()`` does)."""
        for pool in self.pools.values():
            keep = []
            for entry in pool:
                b = entry[2]
                if b.prev is None and b.next is None:  # a whole segment, unused
                    self.reserved -= b.size
                    self._live.pop(b.addr, None)
                else:
                    keep.append(entry)
            pool[:] = keep  # in place: a malloc in progress holds this list

    def malloc(self, requested: int, index: int = -1, stream: int = 0) -> _Block:
        size = round_size(requested)
        small = pool_of(size) == "small"
        key = (small, stream)
        pool = self.pools.setdefault(key, [])
        i = bisect.bisect_left(pool, (size, -1))
        if i < len(pool):
            block = pool.pop(i)[2]
        else:
            block = self._new_segment(size, key, index)
            if block is None:
                raise OutOfMemory(index, requested)
        rest = block.size - size
        if should_split(size, rest):
            tail = _Block(block.addr + size, rest, key)
            tail.prev, tail.next = block, block.next
            if block.next is not None:
                block.next.prev = tail
            block.next = tail
            block.size = size
            bisect.insort(pool, (tail.size, tail.addr, tail))
        block.free = False
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        return block

    def _unpool(self, b: _Block) -> None:
        pool = self.pools[b.pool]
        i = bisect.bisect_left(pool, (b.size, b.addr))
        del pool[i]

    @staticmethod
    def _join(left: _Block, right: _Block) -> None:
        """``left`` absorbs ``right``, its neighbour in the segment."""
        left.size += right.size
        left.next = right.next
        if right.next is not None:
            right.next.prev = left

    def free(self, block: _Block) -> None:
        self.allocated -= block.size
        block.free = True
        if block.next is not None and block.next.free:
            self._unpool(block.next)
            self._join(block, block.next)
        if block.prev is not None and block.prev.free:
            self._unpool(block.prev)
            block = block.prev
            self._join(block, block.next)
        bisect.insort(self.pools[block.pool], (block.size, block.addr, block))

    def run(self, reqs: list[Request]) -> dict[int, _Block]:
        """Serve the requests in order; the blocks still allocated at the end, by request id. Raises
        :class:`OutOfMemory` when the cap is too small."""
        blocks: dict[int, _Block] = {}
        for index, size, ident, *stream in reqs:
            if size >= 0:
                blocks[ident] = self.malloc(size, index, stream[0] if stream else 0)
                self.hint = None
            elif size == SEGMENT_AT:
                self.hint = ident
            elif size == EMPTY_CACHE:
                self.release_cached()
            else:
                self.free(blocks.pop(ident))
        return blocks


Request = tuple  # (event index, +requested bytes | -1 for a free | -2 for empty_cache(), id[, stream])
EMPTY_CACHE = -2
SEGMENT_AT = -3  # (event index, SEGMENT_AT, address, 0): the run's next request got a new segment there


def requests(events: Iterable[list]) -> list[Request]:
    """The trace as ``(event index, +requested bytes | -1, id, stream)``: allocations and the frees that
    return their blocks (``free_completed``), each allocation numbered so that reused addresses stay
    apart, and where the run reserved a segment for the next one (``SEGMENT_AT``). Events of compact
    version 1 have no stream column: stream 0."""
    out, live, n = [], {}, 0
    for i, (action, addr, size, *rest) in enumerate(events):
        if action == "segment_alloc":
            out.append((i, SEGMENT_AT, addr, 0))
        elif action == "alloc":
            live[addr] = n
            out.append((i, size, n, rest[2] if len(rest) > 2 else 0))
            n += 1
        elif action == "free_completed" and addr in live:
            out.append((i, -1, live.pop(addr), 0))
        elif action == "segment_free" and not (out and out[-1][1] == EMPTY_CACHE):
            out.append((i, EMPTY_CACHE, -1, 0))  # consecutive segment frees: one empty_cache()
    return out


def replay(reqs: list[Request], cap: int | None = None) -> Replay:
    """Run the requests through the model; raises :class:`OutOfMemory` when ``cap`` is too small."""
    a = CachingAllocator(cap)
    a.run(reqs)
    return Replay(a.peak_allocated, a.peak_reserved, tuple(a.segment_log))


def fits(reqs: list[Request], cap: int, run=None) -> bool:
    """Whether ``run`` (a replay function: this module's :func:`replay` unless given) fits under ``cap``."""
    try:
        (run or replay)(reqs, cap)
    except OutOfMemory:
        return False
    return True


def bisect_cap(fits_at, lo: int, hi: int) -> int:
    """The smallest cap, in CAP_GRANULE units, in (lo, hi] for which ``fits_at(bytes)`` holds, given that
    ``lo`` fails and ``hi`` fits."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits_at(mid * CAP_GRANULE):
            hi = mid
        else:
            lo = mid
    return hi


def required_cap(reqs: list[Request], uncapped: Replay | None = None) -> int:
    """The smallest cap under which the replay does not run out of memory. Segments are multiples of
    2 MiB, so only multiples of 2 MiB matter; searched between the allocated peak (below it nothing fits)
    and the uncapped reserved peak (which fits). ``uncapped``: ``replay(reqs)``, if already run."""
    free = uncapped or replay(reqs)
    lo, hi = free.peak_allocated // CAP_GRANULE - 1, -(-free.peak_reserved // CAP_GRANULE)  # in 2 MiB units
    return bisect_cap(lambda cap: fits(reqs, cap), lo, hi) * CAP_GRANULE


def segments_match(events: list[list], uncapped: Replay) -> bool:
    """Whether the uncapped replay created the trace's own segments, in order and size. The trace must
    start with the allocator empty (the probe records from before the model is built)."""
    recorded = [size for action, _addr, size, *_rest in events if action == "segment_alloc"]
    return [size for _i, size in uncapped.segments] == recorded


def check_against_trace(events: list[list]) -> tuple[bool, Replay]:
    """:func:`segments_match` of the trace's own uncapped replay, and that replay."""
    sim = replay(requests(events))
    return segments_match(events, sim), sim
