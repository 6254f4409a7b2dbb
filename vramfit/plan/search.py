"""The search: for every shape, the longest sequence and then the largest micro-batch that fit.

Memory grows with sequence length and with micro-batch, so one shape's sizes that fit form a staircase::

    micro-batch ^
             16 | x  .  .  .          x fits     . does not fit
              8 | x  x  .  .          the shape's best point is the top of the
              4 | x  x  x  .          rightmost column: the longest sequence,
              1 | x  x  x  x*         then the largest micro-batch at it
                +-------------> seq len

Instead of estimating every cell, the search bisects: the longest sequence that fits at the smallest
micro-batch, then the largest micro-batch at that length. Every other cell is then settled without an
estimate: cells right of it or above it do not fit (monotonicity), cells left of it rank below the best
point (shorter sequence). Memory also grows along a few shape dimensions (``space.MEMORY_ORDER``, rank,
LoRA targets), so a shape's staircase is bounded by the staircase of its cheaper neighbour, which is
searched first: most shapes need two estimates (the bound's corner fits, or not). A shape whose best
possible quality (objective tier 2, at the longest sequence its bound allows) ranks below the head of
the ranking found so far is pruned without an estimate; the head (the pick and the alternatives shown)
is exact, the tail is not.

``SearchStats.configurations`` counts every configuration settled this way; ``estimate_calls`` counts
the estimates made. Monotonicity is tested against the estimator in tests/test_plan.py.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vramfit.config import TrainConfig
from vramfit.estimate.adapters import trainable_tensors
from vramfit.memory import judge_on_card
from vramfit.plan.objective import quality
from vramfit.plan.result import Candidate, SearchStats
from vramfit.plan.space import DOMINATED, MEMORY_ORDER, SHAPE_FIELDS, Margin, Space

if TYPE_CHECKING:
    from vramfit.gpus import Card
    from vramfit.models.spec import ArchSpec


class Evaluator:
    """Estimates configurations for one model and card, once each."""

    def __init__(
        self, arch: ArchSpec, card: Card, margin: Margin, estimate_fn: Callable | None = None
    ) -> None:
        from vramfit.estimate import estimate

        self.arch, self.card, self.margin = arch, card, margin
        self._estimate = estimate_fn or estimate
        self._cache: dict[TrainConfig, Candidate] = {}
        self.calls = 0

    def __call__(self, cfg: TrainConfig) -> Candidate:
        hit = self._cache.get(cfg)
        if hit is None:
            self.calls += 1
            est = self._estimate(self.arch, cfg, self.card)
            low, high = est.memory.required_range()
            hit = Candidate(cfg, est, judge_on_card(low, high, self.card, self.margin.bytes_for(high)))
            self._cache[cfg] = hit
        return hit


@dataclass
class SearchOutcome:
    ranked: list[Candidate]  # each searched shape's best fitting configuration, best first (exact head)
    smallest: Candidate  # the least memory among the shapes' smallest configurations (for the honest no)
    stats: SearchStats
    evaluator: Evaluator = field(repr=False)


def _parents(space: Space, shape: tuple) -> list[tuple]:
    """Shapes that differ in one memory-ordered dimension by the next cheaper value."""
    out = []
    orders = dict(MEMORY_ORDER)
    orders["rank"] = space.shape_values["rank"]  # ascending
    orders["targets"] = space.shape_values["targets"]  # the ladder, smallest first
    for dim, order in orders.items():
        i = SHAPE_FIELDS.index(dim)
        v = shape[i]
        if v in order and order.index(v) > 0:
            prev = order[order.index(v) - 1]
            out.append(shape[:i] + (prev,) + shape[i + 1 :])
    return out


def _dominated(space: Space, shape: tuple) -> bool:
    """Whether a value of ``shape`` is beaten by another value in the space (space.DOMINATED)."""
    for dim, beaten_by in DOMINATED.items():
        i = SHAPE_FIELDS.index(dim)
        better = beaten_by.get(shape[i], shape[i])
        if better != shape[i] and better in space.shape_values[dim]:
            return True
    return False


def _last_true(lo: int, hi: int, ok: Callable[[int], bool], guess: int | None = None) -> int:
    """Largest k in [lo, hi] with ok(k), given ok(lo) is true and ok is monotone (true then false).

    Tries ``guess`` first (the answer of a similar shape; checked, never trusted), else hi (with a tight
    bound the usual answer); then bisects what is left.
    """
    if hi <= lo:
        return lo
    if guess is not None and lo <= guess < hi:
        if guess == lo or ok(guess):
            if not ok(guess + 1):
                return guess
            lo = guess + 1
        else:
            hi = guess - 1
    elif ok(hi):
        return hi
    else:
        hi -= 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def trainable_params(arch, cfg: TrainConfig) -> int:
    """Trainable parameters of ``cfg``, counted by the estimator's own function (no estimate needed)."""
    return sum(r * c * n for r, c, n in trainable_tensors(arch, cfg))


@dataclass
class _Ranking:
    """What the search has found so far: each shape's best configuration, the qualities of the head of
    the ranking, and the smallest configuration seen."""

    n_exact: int  # how many of the best qualities are kept (the exact head of the ranking)
    qualities: list[float] = field(default_factory=list)  # min-heap of the n_exact best qualities so far
    best: list[Candidate] = field(default_factory=list)
    smallest: Candidate | None = None
    trainable: dict[tuple, int] = field(default_factory=dict)  # (method, targets, rank) -> parameters

    def saw(self, corner: Candidate) -> None:
        if self.smallest is None or corner.required_bytes < self.smallest.required_bytes:
            self.smallest = corner

    def add(self, found: Candidate) -> None:
        self.best.append(found)
        q = quality(found.config, found.estimate.trainable_params)
        if len(self.qualities) < self.n_exact:
            heapq.heappush(self.qualities, q)
        elif q > self.qualities[0]:
            heapq.heapreplace(self.qualities, q)

    def cannot_enter(self, space: Space, shape: tuple, longest_seq: int) -> bool:
        """Whether ``shape`` at its longest sequence that may fit ranks below the head found so far."""
        if len(self.qualities) < self.n_exact:
            return False
        # NOTE: the best this shape can reach is its longest sequence that may fit; if that ranks below
        # the n_exact-th best found, it cannot enter the ranking's head (quality is the first tier)
        cfg0 = space.config(shape, space.seqs[0], space.batches[0])
        tkey = (cfg0.method, cfg0.targets, cfg0.rank)
        if tkey not in self.trainable:
            self.trainable[tkey] = trainable_params(space.arch, cfg0)
        return quality(cfg0.with_(seq_len=longest_seq), self.trainable[tkey]) < self.qualities[0]


def _upper_bound(space: Space, bounds: dict[tuple, list[int]], shape: tuple) -> list[int]:
    """Per sequence index, the largest micro-batch index of ``shape`` that may fit: the least of its
    cheaper neighbours' staircases (all of them when none was searched)."""
    ub = [len(space.batches) - 1] * len(space.seqs)
    for p in _parents(space, shape):
        pb = bounds.get(p)
        if pb is not None:
            ub = [min(a, b) for a, b in zip(ub, pb, strict=True)]
    return ub


def _staircase_top(
    at: Callable[[int, int], Candidate], ub: list[int], top: int, n_seq: int, guess: tuple
) -> tuple[int, int]:
    """(sequence index, micro-batch index) of the shape's best point: the longest sequence that fits at
    the smallest micro-batch, then the largest micro-batch at it. ``guess``: a twin shape's answer."""
    gi, gj = guess
    i_best = _last_true(0, top, lambda i: at(i, 0).fits, gi)
    # below the longest sequence of the ladder, the micro-batch that fits is usually the smallest:
    # had twice the tokens per micro-batch fitted, the next sequence length would have too
    gj = gj if gi == i_best else (0 if i_best < n_seq - 1 else None)
    return i_best, _last_true(0, ub[i_best], lambda j: at(i_best, j).fits, gj)


def search(space: Space, evaluator: Evaluator, keep: int = 3) -> SearchOutcome:
    """Each shape's best fitting configuration, ranked; exact for the best ``keep + 1`` (see the module
    docstring: shapes that cannot reach them are pruned by their quality's upper bound)."""
    t0 = time.perf_counter()
    # Two shapes at most share what planner.alternatives tells apart (the optimizer's paging), so the
    # best 2 (keep + 1) shapes hold the pick and ``keep`` distinct alternatives.
    ranking = _Ranking(n_exact=2 * (keep + 1))
    guesses: dict[tuple, tuple[int, int]] = {}  # LoRA shape -> (sequence, micro-batch index) last found
    seqs, batches = space.seqs, space.batches
    n_seq, n_b = len(seqs), len(batches)
    bounds: dict[tuple, list[int]] = {}  # shape -> per sequence index, largest micro-batch index that may fit
    stats = SearchStats()
    calls0 = evaluator.calls

    for shape in space.shapes():
        stats.shapes += 1
        if _dominated(space, shape):
            stats.dominated += 1
            continue
        ub = _upper_bound(space, bounds, shape)

        def at(i: int, j: int, shape: tuple = shape) -> Candidate:
            return evaluator(space.config(shape, seqs[i], batches[j]))

        top = max((i for i in range(n_seq) if ub[i] >= 0), default=-1)
        if top < 0:  # a cheaper shape does not fit at its smallest size: neither does this one
            bounds[shape] = ub
            continue
        if ranking.cannot_enter(space, shape, seqs[top]):
            stats.pruned += 1
            bounds[shape] = ub
            continue
        corner = at(0, 0)
        ranking.saw(corner)
        if not corner.fits:
            bounds[shape] = [-1] * n_seq
            continue
        # the same LoRA shape in another method / optimizer family usually lands on the same size
        twin = shape[3:6] + shape[7:]  # targets, rank, gradient checkpointing, attn
        i_best, j_best = guesses[twin] = _staircase_top(at, ub, top, n_seq, guesses.get(twin, (None, None)))
        bounds[shape] = [ub[i] if i < i_best else (j_best if i == i_best else -1) for i in range(n_seq)]
        ranking.add(at(i_best, j_best))

    stats.configurations = stats.shapes * n_seq * n_b
    stats.estimate_calls = evaluator.calls - calls0
    ranking.best.sort(key=lambda e: e.key, reverse=True)
    stats.seconds = time.perf_counter() - t0
    assert ranking.smallest is not None, "the space has at least one shape"
    return SearchOutcome(ranking.best, ranking.smallest, stats, evaluator)
