"""A model of PyTorch's caching allocator under ``expandable_segments:True``, to replay a trace under a cap.

The same use as :mod:`vramfit.probe.allocsim` (whose request list, from one uncapped run's trace, it
replays): the smallest cap under which the requests do not run out of memory, from one run. The model
follows ``c10/cuda/CUDACachingAllocator.cpp`` (Note [Expandable Segments]; read at pytorch commit
``001074d25084fdb87a799823e395a50f5ec044d3``, a little older than torch 2.11, whose runs it is checked
against; constants in :mod:`vramfit.allocator.constants`):

* a request is rounded to 512 bytes (``round_size``) and served from the small pool up to 1 MiB, else
  from the large pool; each (stream, pool) has one segment, a reserved virtual range that the allocator
  backs with physical pages of ``EXPANDABLE_PAGE`` (2 MiB small, 20 MiB large) as it grows
  (``ExpandableSegment::map``). A segment is a chain of blocks: allocated, free (mapped) or unmapped;
* ``get_free_block``: the smallest free mapped block of the pool that is large enough, lowest address
  among equal sizes (``BlockComparatorSize``); while the next larger one has a smaller "expandable size"
  (its size plus an unmapped block after it), it moves on to that one, so the free block at the segment's
  growing end is taken only when no other block fits;
* with none, ``alloc_block``: under a cap (``set_per_process_memory_fraction``) it refuses when
  ``total_allocated_memory + get_allocation_size(size)`` would exceed the cap: the check counts the
  request's native segment size (2 MiB small, 20 MiB under 10 MiB, else the size rounded to 2 MiB), not
  the pages it will map. Else ``try_allocate_expandable_block``: ``find_expandable_block`` takes the
  lowest-address unmapped block (with the free block just before it, if any) whose run of free and
  unmapped blocks holds the request, and ``map_block`` maps the pages the request still lacks from its
  start, merging them with the free block before it (``try_merge_blocks``: so a free block at the end
  is extended, and an unmapped gap in the middle is mapped again when the request fits there);
* the block is split whenever at least 512 bytes remain (``should_split`` with expandable segments);
  a freed block merges with free neighbours (``free_block``), never with unmapped ones;
* when ``alloc_block`` refuses, ``release_cached_blocks`` (``release_blocks`` of both pools) unmaps, of
  every free block, the pages that lie wholly inside it (``unmap_block``, ``ExpandableSegment::unmap``)
  and a segment left wholly unmapped is given back (``release_expandable_segment``); then ``alloc_block``
  is tried once more, and fails for good;
* ``total_allocated_memory`` (and ``reserved_bytes``) counts mapped pages: ``map_block`` adds whole pages,
  ``unmap_block`` subtracts them. A mapping may take it past the cap (the check counted fewer bytes).

Not modelled: CUDA events of cross-stream uses (the traces have one stream), the physical memory of the
device running out before the cap (``cuMemCreate`` failing), ``garbage_collection_threshold`` and
``max_split_size_mb``. The probe's compact traces keep no ``segment_map``/``segment_unmap`` events, so an
``empty_cache()`` of the run leaves no mark; the one the runs make is put back from the stacks
(:func:`expandable_requests`): peft's ``prepare_model_for_kbit_training`` (``auto_clear_cache``) calls
``torch.cuda.empty_cache()`` after its fp32 casts. :func:`placement_check` compares where the uncapped
replay put each block with where the run did.

Checked on the committed traces (``python -m benchmarks.expandable_replay``; H200, torch 2.11): uncapped,
every block of five runs lands where the run put it and the mapped peak is the run's reserved peak; the
smallest cap is within 8 MiB (the search's resolution) of ``--find-min`` on the four with a search. A
request stream does not depend on the allocator, so a trace recorded without expandable segments replays
here too.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from vramfit.allocator.constants import (
    CAP_GRANULE,
    EXPANDABLE_PAGE,
    MIN_BLOCK,
    pool_of,
    round_size,
    segment_size,
)
from vramfit.probe import allocsim
from vramfit.probe.allocsim import EMPTY_CACHE, OutOfMemory, Request, requests

USED, FREE, UNMAPPED = "used", "free", "unmapped"
# c10 reserves 1 1/8 of the GPU's memory of address space per segment; any range larger than the memory
# that a cap allows does here (a segment is never full in the replay).
ADDRESS_SPACE = 1 << 44
Key = tuple[bool, int]  # (small pool, stream)


class _Block:
    __slots__ = ("addr", "size", "prev", "next", "state", "key")

    def __init__(self, addr: int, size: int, key: Key, state: str) -> None:
        self.addr, self.size, self.key, self.state = addr, size, key, state
        self.prev: _Block | None = None
        self.next: _Block | None = None

    def splice(self, before: _Block | None, after: _Block | None) -> None:
        """Put this block between ``before`` and ``after`` (``Block::splice``)."""
        self.prev, self.next = before, after
        if before is not None:
            before.next = self
        if after is not None:
            after.prev = self


def _page(key: Key) -> int:
    return EXPANDABLE_PAGE["small" if key[0] else "large"]


@dataclass(frozen=True)
class Replay:
    peak_allocated: int
    peak_mapped: int  # the peak of total_allocated_memory (reserved_bytes): mapped pages
    peak_index: int  # the event index of the (first) allocated peak
    addresses: dict[int, int]  # request id -> offset of its block from its segment's start


class ExpandableAllocator:
    """Segments, their free and unmapped blocks, the mapped total and the cap."""

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap
        self.free_blocks: dict[Key, list[tuple[int, int, _Block]]] = {}  # sorted by (size, address)
        self.unmapped: dict[Key, list[tuple[int, _Block]]] = {}  # sorted by address
        self.bases: dict[Key, int] = {}  # segment start
        self._next_base = ADDRESS_SPACE
        self.mapped = self.allocated = 0
        self.peak_mapped = self.peak_allocated = 0
        self.peak_index = -1
        self.offsets: dict[int, int] = {}  # request id -> offset of its block from its segment's start

    # -- the sorted lists
    def _insert(self, b: _Block) -> None:
        if b.state == FREE:
            bisect.insort(self.free_blocks.setdefault(b.key, []), (b.size, b.addr, b))
        else:
            bisect.insort(self.unmapped.setdefault(b.key, []), (b.addr, b))

    def _remove(self, b: _Block) -> None:
        if b.state == FREE:
            pool = self.free_blocks[b.key]
            del pool[bisect.bisect_left(pool, (b.size, b.addr))]
        else:
            pool = self.unmapped[b.key]
            del pool[bisect.bisect_left(pool, (b.addr,))]

    def _merge(self, dst: _Block, src: _Block | None) -> None:
        """``try_merge_blocks``: ``dst`` (not in a list) absorbs its neighbour ``src`` of the same state."""
        if src is None or src.state != dst.state:
            return
        self._remove(src)
        if dst.prev is src:
            dst.addr, dst.prev = src.addr, src.prev
            if dst.prev is not None:
                dst.prev.next = dst
        else:
            dst.next = src.next
            if dst.next is not None:
                dst.next.prev = dst
        dst.size += src.size

    # -- malloc
    def _get_free_block(self, key: Key, size: int) -> _Block | None:
        """``get_free_block``: best fit, passing over a block whose unmapped neighbour makes it 'larger'."""
        pool = self.free_blocks.get(key, [])
        i = bisect.bisect_left(pool, (size, -1))
        if i == len(pool):
            return None

        def expandable(b: _Block) -> int:
            return b.size + (b.next.size if b.next is not None and b.next.state == UNMAPPED else 0)

        while i + 1 < len(pool) and expandable(pool[i + 1][2]) < expandable(pool[i][2]):
            i += 1
        return pool.pop(i)[2]

    def _new_segment(self, key: Key) -> _Block:
        self.bases[key] = base = self._next_base
        self._next_base += ADDRESS_SPACE
        block = _Block(base, ADDRESS_SPACE, key, UNMAPPED)
        self._insert(block)
        return block

    def _find_expandable_block(self, key: Key, size: int) -> _Block:
        """``find_expandable_block``: the lowest-address run of free and unmapped blocks that holds
        ``size``, starting at an unmapped block or the free block just before it."""

        def room(b: _Block | None) -> bool:
            n = 0
            while n < size and b is not None and b.state != USED:
                n, b = n + b.size, b.next
            return n >= size

        for _addr, u in self.unmapped.get(key, []):
            c = u.prev if u.prev is not None and u.prev.state == FREE else u
            if room(c):
                return c
        return self._new_segment(key)

    def _map(self, u: _Block, size: int) -> _Block:
        """``map_block``: back the first ``size`` bytes of the unmapped ``u`` with whole pages; the mapped
        block merges with free neighbours and goes to the free list."""
        self._remove(u)
        page = _page(u.key)
        n = -(-size // page) * page
        if n < u.size:
            rest = _Block(u.addr + n, u.size - n, u.key, UNMAPPED)
            rest.splice(u, u.next)
            self._insert(rest)
            u.size = n
        u.state = FREE
        self._merge(u, u.prev)
        self._merge(u, u.next)
        self._insert(u)
        self.mapped += n
        self.peak_mapped = max(self.peak_mapped, self.mapped)
        return u

    def _try_allocate_expandable_block(self, key: Key, size: int) -> _Block:
        c = self._find_expandable_block(key, size)
        if c.state == UNMAPPED:
            c = self._map(c, min(c.size, size))
        while c.size < size:  # free -> unmapped -> ...: map what is still lacking
            c = self._map(c.next, min(size - c.size, c.next.size))
        self._remove(c)
        return c

    def _alloc_block(self, key: Key, size: int) -> _Block | None:
        """``alloc_block``: the cap check (on ``get_allocation_size``), then the mapping."""
        if self.cap is not None and self.mapped + segment_size(size) > self.cap:
            return None
        return self._try_allocate_expandable_block(key, size)

    def malloc(self, requested: int, index: int = -1, stream: int = 0) -> _Block:
        size = round_size(requested)
        key = (pool_of(size) == "small", stream)
        block = self._get_free_block(key, size) or self._alloc_block(key, size)
        if block is None:
            self.release_cached()
            block = self._alloc_block(key, size)
            if block is None:
                raise OutOfMemory(index, requested)
        if block.size - size >= MIN_BLOCK:  # should_split
            rest = _Block(block.addr + size, block.size - size, key, FREE)
            rest.splice(block, block.next)
            self._insert(rest)
            block.size = size
        block.state = USED
        self.allocated += size
        if self.allocated > self.peak_allocated:
            self.peak_allocated, self.peak_index = self.allocated, index
        return block

    # -- free and release
    def free(self, block: _Block) -> None:
        """``free_block``: merge with free neighbours, back to the free list."""
        self.allocated -= block.size
        block.state = FREE
        self._merge(block, block.prev)
        self._merge(block, block.next)
        self._insert(block)

    def _unmap(self, b: _Block) -> None:
        """``unmap_block``: unmap the pages wholly inside the free block ``b``; its edges stay free."""
        page, base = _page(b.key), self.bases[b.key]
        lo = base + -(-(b.addr - base) // page) * page
        hi = base + (b.addr + b.size - base) // page * page
        if lo >= hi:
            return
        self._remove(b)
        if lo > b.addr:
            before = _Block(b.addr, lo - b.addr, b.key, FREE)
            before.splice(b.prev, b)
            self._insert(before)
        if b.addr + b.size > hi:
            after = _Block(hi, b.addr + b.size - hi, b.key, FREE)
            after.splice(b, b.next)
            self._insert(after)
        b.addr, b.size, b.state = lo, hi - lo, UNMAPPED
        self._merge(b, b.prev)
        self._merge(b, b.next)
        self._insert(b)
        self.mapped -= hi - lo

    def release_cached(self) -> None:
        """``release_cached_blocks``: unmap the empty pages of every free block, large pool first; a
        segment left wholly unmapped is given back (``release_expandable_segment``)."""
        keys = sorted(self.free_blocks, key=lambda k: k[0])  # large (False) before small
        for key in keys:
            for _size, _addr, b in list(self.free_blocks[key]):
                self._unmap(b)
                if b.state == UNMAPPED and b.prev is None and b.next is None:
                    self._remove(b)
                    del self.bases[key]

    def run(self, reqs: list[Request]) -> dict[int, _Block]:
        """Serve the requests in order; the blocks still allocated at the end, by request id. Raises
        :class:`OutOfMemory` when the cap is too small."""
        blocks: dict[int, _Block] = {}
        for index, size, ident, *stream in reqs:
            if size >= 0:
                b = blocks[ident] = self.malloc(size, index, stream[0] if stream else 0)
                self.offsets[ident] = b.addr - self.bases[b.key]
            elif size == EMPTY_CACHE:
                self.release_cached()
            elif size == -1:
                self.free(blocks.pop(ident))
        return blocks


def replay(reqs: list[Request], cap: int | None = None) -> Replay:
    """Run the requests through the model; raises :class:`OutOfMemory` when ``cap`` is too small."""
    a = ExpandableAllocator(cap)
    a.run(reqs)
    return Replay(a.peak_allocated, a.peak_mapped, a.peak_index, a.offsets)


def fits(reqs: list[Request], cap: int) -> bool:
    return allocsim.fits(reqs, cap, replay)


def required_cap(reqs: list[Request], uncapped: Replay | None = None) -> int:
    """The smallest cap (a multiple of 2 MiB: mapped pages and ``get_allocation_size`` are) under which
    the replay does not run out of memory, by bisection. A mapping may overshoot the cap, so a cap a
    little under the allocated peak can work, and the uncapped mapped peak need not: the search starts
    from a cap known to fail and one known to work."""
    free = uncapped or replay(reqs)
    hi = -(-free.peak_mapped // CAP_GRANULE)
    while not fits(reqs, hi * CAP_GRANULE):
        hi *= 2
    lo = free.peak_allocated // CAP_GRANULE // 2
    while lo > 0 and fits(reqs, lo * CAP_GRANULE):
        lo //= 2
    return allocsim.bisect_cap(lambda cap: fits(reqs, cap), lo, hi) * CAP_GRANULE


KBIT_PREPARATION = "prepare_model_for_kbit_training"  # peft: empty_cache() after its fp32 casts


def kbit_empty_cache(snapshot: dict) -> int | None:
    """The event index of the first allocation after the last one made inside peft's
    ``prepare_model_for_kbit_training``: where its ``empty_cache()`` took effect (None: no such call)."""
    frames, stacks, events = snapshot["frames"], snapshot["stacks"], snapshot["events"]
    inside = {i for i, f in enumerate(frames) if f[2] == KBIT_PREPARATION}
    allocs = [i for i, e in enumerate(events) if e[0] == "alloc"]
    made = [i for i in allocs if events[i][3] >= 0 and inside.intersection(stacks[events[i][3]])]
    return next((i for i in allocs if made and i > made[-1]), None)


def expandable_requests(snapshot: dict) -> list[Request]:
    """:func:`~vramfit.probe.allocsim.requests` of the snapshot's trace, with the kbit preparation's
    ``empty_cache()`` (:func:`kbit_empty_cache`) put back."""
    reqs = requests(snapshot["events"])
    at = kbit_empty_cache(snapshot)
    if at is None:
        return reqs
    k = next(k for k, r in enumerate(reqs) if r[0] >= at)
    return reqs[:k] + [(at, EMPTY_CACHE, -1, 0)] + reqs[k:]


def trace_offsets(events: list[list]) -> dict[int, int]:
    """Request id (as :func:`~vramfit.probe.allocsim.requests` numbers them) -> where the run put the
    block, as an offset from its pool's segment: the first block of each pool is at the segment's start."""
    out, bases, n = {}, {}, 0
    for action, addr, size, *_ in events:
        if action == "alloc":
            small = pool_of(round_size(size)) == "small"
            out[n] = addr - bases.setdefault(small, addr)
            n += 1
    return out


def placement_check(events: list[list], uncapped: Replay) -> tuple[float, int | None]:
    """The share of allocations the uncapped replay put where the run did, and the first request id it
    put elsewhere (None: all where the run did)."""
    run = trace_offsets(events)
    wrong = [i for i, off in run.items() if uncapped.addresses.get(i) != off]
    return 1 - len(wrong) / max(1, len(run)), (wrong[0] if wrong else None)


@dataclass(frozen=True)
class PageUse:
    pages: int  # pages that allocated blocks touch
    partly_used: int  # of them, pages with free bytes too
    free_in_pages: int  # the free bytes of those pages: what no unmapping gives back


def page_use(live: Iterable[_Block], bases: dict[Key, int], small: bool) -> PageUse:
    """How the allocated blocks ``live`` of one pool (``small``) sit on its pages (of every stream)."""
    used: dict[tuple[Key, int], int] = {}  # (key, page index) -> allocated bytes in it
    for b in live:
        if b.key[0] != small:
            continue
        page, base = _page(b.key), bases[b.key]
        for p in range((b.addr - base) // page, (b.addr + b.size - 1 - base) // page + 1):
            lo, hi = max(b.addr, base + p * page), min(b.addr + b.size, base + (p + 1) * page)
            used[(b.key, p)] = used.get((b.key, p), 0) + hi - lo
    page = EXPANDABLE_PAGE["small" if small else "large"]
    partly = [n for n in used.values() if n < page]
    return PageUse(len(used), len(partly), sum(page - n for n in partly))
