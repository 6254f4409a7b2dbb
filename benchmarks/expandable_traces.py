"""The partly used pages at the allocated peak of each committed trace under expandable segments.

    python -m benchmarks.expandable_traces [--traces benchmarks/results/traces_expandable]

Follows the trace's own addresses (what the allocator chose, uncapped): at the moment of the allocated peak,
every page of the segment (``EXPANDABLE_PAGE``: 20 MiB large pool, 2 MiB small pool) that a live block
touches stays mapped, and the rest could be unmapped (``ExpandableSegment::unmap``). Prints, per trace, the
peak, the mapped pages it needs, the excess, and the free gaps that keep most of it. Nothing is measured;
this is the check of ``vramfit.estimate.expandable``'s mechanism against what the runs did.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os

from vramfit.allocator.constants import EXPANDABLE_PAGE

HERE = os.path.dirname(os.path.abspath(__file__))
TRACES = os.path.join(HERE, "results", "traces_expandable")
MiB = 1 << 20


def live_at_peak(events: list[list]) -> tuple[int, dict[int, int]]:
    live: dict[int, int] = {}
    alloc = best = 0
    snap: dict[int, int] = {}
    for kind, addr, size, *_ in events:
        if kind == "alloc":
            live[addr], alloc = size, alloc + size
        elif kind == "free_completed":
            live.pop(addr, None)
            alloc -= size
        else:
            continue
        if alloc > best:
            best, snap = alloc, dict(live)
    return best, snap


def mapped_pages(snapshot: dict) -> tuple[int, int, list[float]]:
    """(peak allocated, bytes of the pages live blocks touch then, unmappable bytes of each large gap)."""
    segs = sorted(b for b, _ in snapshot["segments_end"])
    peak, live = live_at_peak(snapshot["events"])
    small = min(
        segs,
        key=lambda b: max((s for a, s in live.items() if max(x for x in segs if x <= a) == b), default=0),
    )
    pages: set[tuple[int, int]] = set()
    for a, s in live.items():
        base = max(x for x in segs if x <= a)
        page = EXPANDABLE_PAGE["small" if base == small else "large"]
        pages |= {(base, p) for p in range((a - base) // page, (a + s - 1 - base) // page + 1)}
    mapped = sum(EXPANDABLE_PAGE["small" if b == small else "large"] for b, _ in pages)
    page = EXPANDABLE_PAGE["large"]
    blocks = sorted((a, s) for a, s in live.items() if max(x for x in segs if x <= a) != small)
    gaps = []
    for (a, s), (a2, _) in zip(blocks, blocks[1:], strict=False):
        base = max(x for x in segs if x <= a)
        lo, hi = a + s - base, a2 - base
        if hi > lo and max(x for x in segs if x <= a2) == base:
            full = max(0, hi // page - -(-lo // page))
            gaps.append((hi - lo - full * page) / MiB)
    return peak, mapped, sorted((g for g in gaps if g > 0), reverse=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", default=TRACES)
    args = ap.parse_args()
    for path in sorted(glob.glob(os.path.join(args.traces, "*.trace.json.gz"))):
        with gzip.open(path) as f:
            peak, mapped, gaps = mapped_pages(json.load(f)["snapshot"])
        name = os.path.basename(path)[: -len(".trace.json.gz")]
        print(f"{name:32s} peak {peak / MiB:7.0f} MiB, pages {mapped / MiB:7.0f} MiB, excess "
              f"{(mapped - peak) / MiB:4.0f} MiB; {len(gaps)} gaps keep {sum(gaps):.0f} MiB of large pages")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
