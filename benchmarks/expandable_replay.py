"""The expandable-segments allocator model against --find-min: each committed trace replayed under caps.

    python -m benchmarks.expandable_replay [--traces benchmarks/results/traces_expandable]

Each ``*.trace.json.gz`` (one uncapped run under ``expandable_segments:True``, H200, torch 2.11: see
``results/expandable/README.md``) is replayed through :mod:`vramfit.probe.allocsim_expandable`: uncapped,
the share of its blocks placed where the run put them (and the mapped peak, beside the run's reserved
peak); then the smallest cap under which the replay does not run out of memory, beside the ``--find-min``
result of the same configuration (``results/expandable/h200_grid_es_<name>.json``, a separate run,
searched to 8 MiB: the bracket is its highest failing and lowest working cap). Then, replayed under that
cap up to the allocated peak: the large pages the live blocks touch, how many of them are partly used
and their free bytes (what no unmapping gives back), and the request that fails one 2 MiB step lower.
Nothing is measured here.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
from dataclasses import dataclass

from vramfit.allocator.constants import CAP_GRANULE
from vramfit.probe import allocsim_expandable as E
from vramfit.probe.allocsim import OutOfMemory

HERE = os.path.dirname(os.path.abspath(__file__))
TRACES = os.path.join(HERE, "results", "traces_expandable")
FIND_MIN = os.path.join(HERE, "results", "expandable", "h200_grid_es_{}.json")
MiB = 1 << 20


@dataclass(frozen=True)
class Row:
    name: str
    peak: int  # the trace's allocated peak (rounded requests)
    placed: float  # share of blocks the uncapped replay put where the run did
    mapped: int  # the uncapped replay's mapped peak
    required: int  # the replay's smallest cap
    find_min: int | None  # the measured requirement (lowest working cap)
    bracket: tuple[int, int] | None  # (highest failing cap, lowest working cap) of the search
    reserved: int | None  # the find-min run's measured reserved peak


def find_min(name: str) -> tuple[int, tuple[int, int], int] | None:
    path = FIND_MIN.format(name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        r = json.load(f)["result"]
    ok = r["measured"]["allocator_required_bytes"]
    fails = [t["cap_bytes"] for t in r["trials"] if not t["fits"] and t["cap_bytes"] < ok]
    return ok, (max(fails, default=0), ok), r["measured"]["peak_reserved_bytes"]


def load(path: str) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)["snapshot"]


def row(path: str) -> Row:
    name = os.path.basename(path).removesuffix(".trace.json.gz")
    snap = load(path)
    reqs = E.expandable_requests(snap)
    free = E.replay(reqs)
    placed, _first = E.placement_check(snap["events"], free)
    fm = find_min(name)
    return Row(name, free.peak_allocated, placed, free.peak_mapped, E.required_cap(reqs, free),
               fm[0] if fm else None, fm[1] if fm else None, fm[2] if fm else None)  # fmt: skip


def at_peak(path: str, cap: int) -> tuple[int, E.PageUse, E.PageUse]:
    """(mapped bytes, large-pool and small-pool page use) at the allocated peak, replayed under ``cap``."""
    reqs = E.expandable_requests(load(path))
    peak = E.replay(reqs).peak_index
    a = E.ExpandableAllocator(cap)
    live = a.run([r for r in reqs if r[0] <= peak]).values()
    return a.mapped, E.page_use(live, a.bases, small=False), E.page_use(live, a.bases, small=True)


def binding(path: str, cap: int) -> tuple[int, int, int] | None:
    """(event index, requested bytes, mapped bytes then) of the request that fails under ``cap``."""
    a = E.ExpandableAllocator(cap)
    try:
        a.run(E.expandable_requests(load(path)))
    except OutOfMemory as e:
        return e.index, e.requested, a.mapped
    return None


def report(path: str, r: Row) -> list[str]:
    err = f"{r.required / r.find_min - 1:+.2%}" if r.find_min else "(no find-min)"
    br = f"({r.bracket[0] / MiB:.0f}, {r.bracket[1] / MiB:.0f}]" if r.bracket else ""
    lines = [f"{r.name}: peak allocated {r.peak / MiB:.0f} MiB; replay {r.required / MiB:.0f} MiB, find-min "
             f"{br} MiB, error {err}; uncapped: {r.placed:.2%} of blocks placed as in the run, mapped peak "
             f"{r.mapped / MiB:.0f} MiB (run's reserved peak {(r.reserved or 0) / MiB:.0f})"]  # fmt: skip
    mapped, large, small = at_peak(path, r.required)
    lines.append(f"    at the peak under {r.required / MiB:.0f} MiB: mapped {mapped / MiB:.0f} MiB (+{(mapped - r.peak) / MiB:.0f}); "
                 f"large pages {large.pages}, {large.partly_used} partly used, {large.free_in_pages / MiB:.0f} MiB free in them; "
                 f"small pages {small.pages}, {small.partly_used} partly used, {small.free_in_pages / MiB:.0f} MiB free")  # fmt: skip
    b = binding(path, r.required - CAP_GRANULE)
    if b:
        lines.append(f"    under {(r.required - CAP_GRANULE) / MiB:.0f} MiB: event {b[0]} ({b[1] / MiB:.2f} MiB) fails "
                     f"with {b[2] / MiB:.0f} MiB mapped")  # fmt: skip
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", default=TRACES)
    args = ap.parse_args()
    for path in sorted(glob.glob(os.path.join(args.traces, "*.trace.json.gz"))):
        print("\n".join(report(path, row(path))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
