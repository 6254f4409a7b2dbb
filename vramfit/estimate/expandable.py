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

Where the gaps come from: bitsandbytes dequantizes every k-bit weight in the forward and again in the
backward and frees it after the matmul; the hole it leaves is refilled by smaller tensors (saved activations,
checkpoints, gradients) that cannot use all of it. The uncapped traces of ``benchmarks/results/
traces_expandable/`` show it (``python -m benchmarks.expandable_traces``): at the allocated peak of the
Phi-3-mini run 35 gaps keep 248 MiB in partly used pages. Which weight's holes stay open at the peak is not
derived: on the measured runs the largest attention projection (``dequantized_attention_bytes``: the fused
``qkv_proj``, or q/k/v/o) predicts the gaps better than the largest weight overall, which is an MLP
projection whose holes the MLP's own intermediates refill (both forms' held-out errors are in the fit file;
the first is used). Models with full multi-head attention (Llama-2, Phi-3) keep the most. Gaps also open
between the layer's activations: with checkpointing the backward recomputes a layer and frees its tensors
(hidden states, attention and MLP outputs, their gradients) in an order the allocator cannot pack, so the
partly used pages grow with the size of one hidden state (tokens x hidden size in the compute dtype). How
many gaps, and how much of each, depends on the order of allocations, which the estimator does not follow,
so three coefficients are FITTED on the runs ``--find-min`` measured under expandable segments
(``benchmarks/expandable_fit.py`` writes ``vramfit/data/expandable_fit.json``, with its held-out errors)::

    required = peak allocated + pages x 20 MiB + per_attention_weight x largest dequantized attention weight
               + per_hidden_state x one hidden state
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from vramfit.allocator.constants import EXPANDABLE_PAGE
from vramfit.catalog import DTYPES
from vramfit.config import TrainConfig
from vramfit.estimate.losses import batch_shape
from vramfit.estimate.weights import dequantized_attention_bytes
from vramfit.models.spec import ArchSpec

LARGE_PAGE = EXPANDABLE_PAGE["large"]
FIT_NAME = "expandable_fit.json"


@dataclass(frozen=True)
class GapSources:
    """The sizes the partly used pages at the peak grow with."""

    attention_weight: (
        int  # the largest dequantized attention weight (``dequantized_attention_bytes``), 0 without k-bit
    )
    hidden_state: int  # one (tokens, hidden size) tensor in the compute dtype


@dataclass(frozen=True)
class Coefficients:
    pages: int  # large pages partly used at the peak whatever the run, fitted
    per_attention_weight: (
        float  # partly used bytes per byte of the largest dequantized attention weight, fitted
    )
    per_hidden_state: float  # partly used bytes per byte of one hidden state, fitted

    def gap_bytes(self, gaps: GapSources) -> int:
        return (self.pages * LARGE_PAGE + int(self.per_attention_weight * gaps.attention_weight)
                + int(self.per_hidden_state * gaps.hidden_state))  # fmt: skip


@dataclass(frozen=True)
class ExpandableFit:
    coefficients: Coefficients
    runs: int
    held_out_mean_abs: float
    held_out_worst: float
    held_out_most_negative: float
    source: str

    def text(self) -> str:
        c = self.coefficients
        return (
            f"{c.pages} large pages of {LARGE_PAGE >> 20} MiB + {c.per_attention_weight:g} x the largest "
            f"dequantized attention weight + {c.per_hidden_state:g} x one hidden state, fitted on {self.runs} --find-min "
            f"runs under expandable segments ({self.source}); held out by family: mean |error| "
            f"{100 * self.held_out_mean_abs:.1f} %, worst {100 * self.held_out_worst:+.1f} %, most negative "
            f"{100 * self.held_out_most_negative:+.1f} %"
        )


def fit_text() -> str:
    return resources.files("vramfit").joinpath("data").joinpath(FIT_NAME).read_text()


@lru_cache(maxsize=1)
def load_fit() -> ExpandableFit:
    d = json.loads(fit_text())
    h = d["held_out"]
    c = Coefficients(d["pages"], d["per_attention_weight"], d["per_hidden_state"])
    return ExpandableFit(c, d["runs"], h["mean_abs"], h["worst"], h["most_negative"], d["source"])


def gap_sources(arch: ArchSpec, cfg: TrainConfig) -> GapSources:
    shape = batch_shape(cfg)
    hidden = shape.batch_size * shape.seq_len * arch.hidden_size * DTYPES[cfg.compute_dtype].bytes
    return GapSources(dequantized_attention_bytes(arch, cfg), hidden)


def required_bytes(peak_allocated: int, gaps: GapSources, coefficients: Coefficients | None = None) -> int:
    """``allocator_required_bytes`` under expandable segments: the peak plus the partly used pages of the
    free gaps (``coefficients``: the fitted ones unless given)."""
    c = coefficients or load_fit().coefficients
    return peak_allocated + c.gap_bytes(gaps)
