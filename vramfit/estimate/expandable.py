"""The allocator requirement under ``expandable_segments:True``, from the caching allocator's source.

With expandable segments (``c10/cuda/CUDACachingAllocator.cpp``, Note [Expandable Segments]) the allocator
keeps one segment per stream and pool and maps physical pages into it as it grows: "we use 2MiB pages for
our small pool and 20MiB pages for our large pool" (``EXPANDABLE_PAGE`` in
:mod:`vramfit.allocator.constants`). Blocks split and merge freely inside the segment (``should_split``:
any remainder of ``kMinBlockSize`` or more). Under a cap (``set_per_process_memory_fraction``)
``alloc_block`` refuses a mapping when ``total_allocated_memory + size > allowed_memory_maximum``, and the
caller frees its cache (``release_cached_blocks``), which for an expandable segment unmaps only the pages
that lie wholly inside a free block (``ExpandableSegment::unmap``: "unmaps all the completely empty
segment_size_ segments"), then retries. So what a capped run needs is the peak allocated (requests rounded
to 512 bytes, as the estimator already counts them) plus the mapped bytes of the pages that a free gap
between two live blocks only partly covers: every gap narrower than a page, and the edges of wider ones.

Where the gaps come from: bitsandbytes dequantizes a whole k-bit weight in the forward and again in the
backward (``dequantized_weight_bytes``) and frees it after the matmul; the hole it leaves is refilled by
smaller tensors (saved activations, checkpoints, gradients) that cannot use all of it, so the gaps live at
the peak grow with the largest dequantized weight. The uncapped traces of ``benchmarks/results/
traces_expandable/`` show it (``python -m benchmarks.expandable_traces``): at the allocated peak of the
Phi-3-mini run (96 MiB weights) 35 gaps keep 248 MiB in partly used pages. How many gaps, and how much of
each, depends on the order of allocations, which the estimator does not follow, so two coefficients are
FITTED on the runs ``--find-min`` measured under expandable segments (``benchmarks/expandable_fit.py``
writes ``vramfit/data/expandable_fit.json``, with its held-out errors)::

    required = peak allocated + pages x 20 MiB + per_dequantized_weight x largest dequantized weight
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from vramfit.allocator.constants import EXPANDABLE_PAGE

LARGE_PAGE = EXPANDABLE_PAGE["large"]
FIT_NAME = "expandable_fit.json"


@dataclass(frozen=True)
class ExpandableFit:
    pages: int  # large pages partly used at the peak whatever the weights, fitted
    per_dequantized_weight: float  # partly used bytes per byte of the largest dequantized weight, fitted
    runs: int
    held_out_mean_abs: float
    held_out_worst: float
    held_out_most_negative: float
    source: str

    def text(self) -> str:
        return (
            f"{self.pages} large pages of {LARGE_PAGE >> 20} MiB + {self.per_dequantized_weight:g} x the largest "
            f"dequantized weight, fitted on {self.runs} --find-min runs under expandable segments "
            f"({self.source}); held out by family: mean |error| {100 * self.held_out_mean_abs:.1f} %, worst "
            f"{100 * self.held_out_worst:+.1f} %, most negative {100 * self.held_out_most_negative:+.1f} %"
        )


def fit_text() -> str:
    return resources.files("vramfit").joinpath("data").joinpath(FIT_NAME).read_text()


@lru_cache(maxsize=1)
def load_fit() -> ExpandableFit:
    d = json.loads(fit_text())
    h = d["held_out"]
    return ExpandableFit(d["pages"], d["per_dequantized_weight"], d["runs"], h["mean_abs"], h["worst"],
                         h["most_negative"], d["source"])  # fmt: skip


def required_bytes(
    peak_allocated: int, dequantized_weight: int, pages: int | None = None, per_dequant: float | None = None
) -> int:
    """``allocator_required_bytes`` under expandable segments: the peak plus the partly used pages of the
    free gaps (``pages``, ``per_dequant``: the fitted figures unless given)."""
    fit = load_fit() if pages is None or per_dequant is None else None
    n = fit.pages if pages is None else pages
    b = fit.per_dequantized_weight if per_dequant is None else per_dequant
    return peak_allocated + n * LARGE_PAGE + int(b * dequantized_weight)
