"""A smaller card on a bigger GPU: cap PyTorch's allocator, and search the smallest cap that works.

``torch.cuda.set_per_process_memory_fraction(cap / total)`` makes the caching allocator fail any
cudaMalloc that would take its reserved memory past ``cap``; it then frees its cache and retries, as
it would on a card with only that much free. What a card leaves free for the allocator::

    cap = usable - cuda_context          (usable = capacity - display / other processes)

The paged optimizer's managed memory is outside the cap: under pressure the driver pages it out to
the host, which is what it is for (bitsandbytes ``functional.get_paged``).

``allocator_required_bytes`` (docs/ARCHITECTURE.md) is the smallest cap with which the steps succeed. It lies
between the uncapped run's peak allocated (below it nothing fits) and peak reserved (the run never
needed more), and :func:`find_min` narrows that interval with rounds of parallel trials. Measured runs
mostly need their whole peak reserved (the segments left half-used by loading cannot be given back), so
the first round probes just below the top, at ``hi - resolution x 2^j``: when ``hi - resolution``
fails, one round settles it. Later rounds split the interval left into ``k + 1`` equal parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vramfit.allocator.constants import CAP_GRANULE  # caps are rounded up to it
from vramfit.units import MiB

DEFAULT_RESOLUTION = 32 * MiB


def cap_for_card(card) -> int:
    """What ``card`` leaves free for PyTorch's allocator: usable memory minus its CUDA context."""
    return card.usable_bytes - card.cuda_context_bytes


def _round_up(n: int, granule: int = CAP_GRANULE) -> int:
    return -(-n // granule) * granule


@dataclass(frozen=True)
class Trial:
    cap_bytes: int
    fits: bool
    phase: str | None  # where it ran out
    requested_bytes: int | None

    def to_json(self) -> dict:
        return {"cap_bytes": self.cap_bytes, "fits": self.fits, "phase": self.phase,
                "requested_bytes": self.requested_bytes}  # fmt: skip


def parallel_trials(gpu_memory: int, per_trial: int, max_parallel: int) -> int:
    """How many capped trials fit on the GPU side by side (each: its cap + context + paged state)."""
    # NOTE: keep 10% of the GPU free for what the per-trial figure leaves out (kernel loading, fragmentation)
    return max(1, min(max_parallel, int(gpu_memory * 0.9) // max(1, per_trial)))


def find_min(
    run_caps: Callable[[list[int]], list[Trial]],
    lo_fail: int,
    hi_ok: int,
    resolution: int = DEFAULT_RESOLUTION,
    parallel: int = 1,
    guess: int | None = None,
) -> tuple[int, list[Trial]]:
    """The smallest cap in (lo_fail, hi_ok] that works, to ``resolution``; and every trial run.

    ``run_caps(caps)`` runs one trial per cap (simultaneously) and returns their outcomes.
    ``lo_fail`` is a cap known to fail, ``hi_ok`` one known to work. ``guess``: where the answer probably
    is (the allocator model's replay of the first run, :mod:`vramfit.probe.allocator_replay`): the first round
    probes ``guess`` and its neighbours ``resolution`` apart, so a right guess is confirmed in one round.
    """
    trials: list[Trial] = []
    hi_ok = _round_up(hi_ok)
    k = max(1, parallel)
    first = True
    while hi_ok - lo_fail > resolution:
        if first and k > 1 and guess is not None and lo_fail < guess < hi_ok:
            # around the guess: guess - resolution fails and guess works, if it is right
            g = _round_up(guess)
            wanted = [g + resolution * j for j in range(-(k // 2), k - k // 2)]
        elif first and k > 1:
            # top first: hi - resolution, hi - 2 x resolution, hi - 4 x resolution, ...
            wanted = [hi_ok - resolution * 2**j for j in range(k)]
        else:
            step = (hi_ok - lo_fail) / (k + 1)
            wanted = [int(lo_fail + step * (j + 1)) for j in range(k)]
        first = False
        caps = sorted({_round_up(c) for c in wanted} - {hi_ok})
        caps = [c for c in caps if lo_fail < c < hi_ok]
        if not caps:
            break
        outcome = run_caps(caps)
        trials += outcome
        ok = [t.cap_bytes for t in outcome if t.fits]
        if ok:
            hi_ok = min(ok)
        failed = [t.cap_bytes for t in outcome if not t.fits and t.cap_bytes < hi_ok]
        if failed:
            lo_fail = max(failed)
    return hi_ok, trials
