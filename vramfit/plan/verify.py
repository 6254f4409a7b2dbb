"""``--verify``: run the probe on the pick, emulating the card; on a miss, the next candidate.

The probe (``vramfit.probe``) runs real training steps of the configuration with PyTorch's allocator
capped at what the card leaves free (``vramfit.probe.emulate``). A candidate the estimate says fits but
that runs out of memory for real is a *miss*: it is recorded (predicted vs measured) and the next
candidate in the ranking is tried, up to ``tries`` candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vramfit.errors import InputError, VramfitError
from vramfit.plan.result import Candidate, VerifyTrial

if TYPE_CHECKING:
    from vramfit.gpus import Card
    from vramfit.models.spec import ArchSpec
    from vramfit.probe.result import ProbeResult

DEFAULT_TRIES = 3
PROBE_STEPS = 3  # the first optimizer step creates the optimizer state; later steps show the steady peak


def _probe():
    try:
        from vramfit.probe import probe
    except ImportError as e:  # the probe is an optional part of vramfit
        raise VramfitError(f"--verify needs the probe (vramfit.probe): {e}") from None
    return probe


def trial(rank: int, cand: Candidate, probe_result: ProbeResult) -> VerifyTrial:
    m = probe_result.measured
    return VerifyTrial(
        rank=rank,
        config=cand.estimate.config,
        predicted_required_bytes=cand.required_bytes,
        predicted_peak_allocated_bytes=cand.estimate.peak_allocated_bytes,
        measured_peak_allocated_bytes=m.peak_allocated_bytes,
        measured_required_bytes=m.required_vram_bytes,
        fits=m.fits,
        oom=m.oom.to_json() if m.oom else None,
        gpu=probe_result.environment.get("gpu"),
    )


def verify_ranked(
    arch: ArchSpec,
    card: Card,
    ranked: list[Candidate],
    tries: int = DEFAULT_TRIES,
    probe_fn: Callable | None = None,
) -> tuple[int | None, list[VerifyTrial]]:
    """Probe the best candidates in order until one fits for real: (its index or None, the trials)."""
    probe_fn = probe_fn or _probe()
    trials = []
    for i, cand in enumerate(ranked[:tries]):
        try:
            res = probe_fn(arch, cand.config, card, steps=PROBE_STEPS, record=False)
        except InputError as e:  # no GPU, no probe stack: the probe's own flag means nothing to plan
            raise InputError("--verify", f"the probe cannot run here: {e.message}") from None
        t = trial(i, cand, res)
        trials.append(t)
        if t.fits is None:
            raise VramfitError("--verify: the probe could not tell whether the run fits (no card emulated)")
        if t.fits:
            return i, trials
    return None, trials
