"""What the default allocator's slack is made of, on recorded traces.

    python -m benchmarks.trace_holes [TRACE.json.gz ...]   (default: benchmarks/results/traces/)

Each trace (every allocator event of an uncapped probe run, ``collect_traces.py``) is replayed through the
allocator model (``vramfit.probe.allocsim``) under the smallest cap it survives less 2 MiB, so that it runs
out of memory where the real run would on a card that much smaller. At that moment the cap has freed every
cached segment with no block in use (``release_cached_blocks``), so what is reserved but not allocated is
the slack the requirement pays for: free blocks ("holes") in segments that still hold a live block. Every
hole in the pool of the failing request is smaller than it, or best fit would have used it. Prints, per
trace, the failing request, the holes by kind of segment (2 MiB small-pool segments, 20 MiB segments of
1-10 MiB requests, and larger ones sized to their request) and the largest segments with holes.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass

from benchmarks.trace_sensitivity import TRACES, load_requests
from vramfit.allocator.constants import CAP_GRANULE
from vramfit.probe import allocsim
from vramfit.units import MiB


@dataclass(frozen=True)
class Segment:
    size: int
    used: int
    free: int
    largest_free: int
    small: bool  # a small-pool segment


@dataclass(frozen=True)
class Holes:
    peak: int  # the replay's peak allocated, uncapped
    required: int  # the smallest cap the replay survives
    request: int  # the request that fails under required - 2 MiB
    allocated: int  # allocated and reserved when it fails
    reserved: int
    segments: tuple[Segment, ...]  # the segments with a hole at that moment


def _segments_with_holes(a: allocsim.CachingAllocator) -> tuple[Segment, ...]:
    """Every segment holding a free block, walked from the pools' free blocks to their segment."""
    seen, out = set(), []
    for (small, _stream), pool in a.pools.items():
        for _size, _addr, b in pool:
            while b.prev is not None:
                b = b.prev
            if id(b) in seen:
                continue
            seen.add(id(b))
            used = free = largest = 0
            while b is not None:
                if b.free:
                    free, largest = free + b.size, max(largest, b.size)
                else:
                    used += b.size
                b = b.next
            out.append(Segment(used + free, used, free, largest, small))
    return tuple(sorted(out, key=lambda s: -s.free))


def holes(reqs: list) -> Holes:
    uncapped = allocsim.replay(reqs)
    required = allocsim.required_cap(reqs, uncapped)
    a = allocsim.CachingAllocator(required - CAP_GRANULE)
    try:
        a.run(reqs)
    except allocsim.OutOfMemory as oom:
        return Holes(uncapped.peak_allocated, required, oom.requested, a.allocated, a.reserved,
                     _segments_with_holes(a))  # fmt: skip
    raise AssertionError("the replay fitted under a cap below its required cap")


def kind(s: Segment) -> str:
    if s.small:
        return "2 MiB"
    return "20 MiB" if s.size == 20 * MiB else "sized to the request"


def text(name: str, h: Holes) -> list[str]:
    lines = [
        f"{name}: peak {h.peak / MiB:.0f} MiB, requirement {h.required / MiB:.0f} MiB (slack "
        f"{(h.required - h.peak) / MiB:.0f}); under 2 MiB less a {h.request / MiB:.1f} MiB request fails with "
        f"{(h.reserved - h.allocated) / MiB:.0f} MiB reserved and free"
    ]
    for k in ("2 MiB", "20 MiB", "sized to the request"):
        segs = [s for s in h.segments if kind(s) == k]
        if segs:
            free = sum(s.free for s in segs)
            lines.append(f"   {k:21s} segments with a hole: {len(segs):4d}, free {free / MiB:8.1f} MiB")
    for s in [s for s in h.segments if not s.small][:4]:
        lines.append(
            f"   segment {s.size / MiB:7.1f} MiB: {s.used / MiB:7.1f} used, {s.free / MiB:7.1f} free, largest hole "
            f"{s.largest_free / MiB:7.1f} MiB ({s.largest_free / h.request:.2f} x the failing request)"
        )
    return lines


def main(argv: list[str]) -> int:
    paths = argv or sorted(glob.glob(os.path.join(TRACES, "*.trace.json.gz")))
    if not paths:
        print(f"no traces given and none in {TRACES}", file=sys.stderr)
        return 2
    for path in paths:
        reqs, _ok = load_requests(path)
        print("\n".join(text(os.path.basename(path).removesuffix(".trace.json.gz"), holes(reqs))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
