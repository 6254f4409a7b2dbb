"""The allocator requirement under ``expandable_segments:True``, from the caching allocator's source.

With expandable segments (``c10/cuda/CUDACachingAllocator.cpp``, Note [Expandable Segments]) the allocator
keeps one segment per stream and pool and maps physical pages into it as it grows: "we use 2MiB pages for
our small pool and 20MiB pages for our large pool" (``segment_size`` = kSmallBuffer / kLargeBuffer). Under
a cap (``set_per_process_memory_fraction``) ``alloc_block`` refuses a mapping when::

    if (set_fraction &&
        total_allocated_memory + size > allowed_memory_maximum) {   // size = p.alloc_size

and the caller frees its cache (``release_cached_blocks``), which for an expandable segment unmaps every
page that lies wholly inside a free block (``ExpandableSegment::unmap``: "unmaps all the completely empty
segment_size_ segments"), then retries. So what a capped run needs is the peak allocated (requests rounded
to 512 bytes, as the estimator already counts them) plus the pages that free blocks cannot give back: the
partly used 20 MiB pages at the edges of every free gap between live large blocks at the peak, and the
small pool's 2 MiB pages. How many gaps a run leaves depends on the order of its frees, which the estimator
does not follow, so their number is the one FITTED quantity (in whole large pages, on the runs
``--find-min`` measured under expandable segments: ``benchmarks/expandable_fit.py`` writes
``expandable_fit.json`` beside this module, with its held-out errors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from vramfit.units import MiB

LARGE_PAGE = 20 * MiB  # kLargeBuffer: the large pool's segment_size_ for expandable segments
SMALL_PAGE = 2 * MiB  # kSmallBuffer: the small pool's
FIT_PATH = Path(__file__).with_name("expandable_fit.json")


@dataclass(frozen=True)
class ExpandableFit:
    pages: int  # partly used large pages at the peak, fitted
    runs: int
    held_out_mean_abs: float
    held_out_worst: float
    held_out_most_negative: float
    source: str

    def text(self) -> str:
        return (
            f"{self.pages} large pages of {LARGE_PAGE >> 20} MiB, fitted on {self.runs} --find-min runs under "
            f"expandable segments ({self.source}); held out by family: mean |error| "
            f"{100 * self.held_out_mean_abs:.1f} %, worst {100 * self.held_out_worst:+.1f} %, most negative "
            f"{100 * self.held_out_most_negative:+.1f} %"
        )


@lru_cache(maxsize=1)
def load_fit(path: Path = FIT_PATH) -> ExpandableFit:
    with open(path) as f:
        d = json.load(f)
    h = d["held_out"]
    return ExpandableFit(d["pages"], d["runs"], h["mean_abs"], h["worst"], h["most_negative"], d["source"])


def required_bytes(peak_allocated: int, pages: int | None = None) -> int:
    """``allocator_required_bytes`` under expandable segments: the peak plus the large pages free gaps
    keep mapped (``pages``: the fitted figure unless given)."""
    n = load_fit().pages if pages is None else pages
    return peak_allocated + n * LARGE_PAGE
