"""The probe's replay of its run's allocator trace, through the model of the allocator that run used.

The child records the trace of one uncapped run (:mod:`.snapshot`) and the allocator settings its torch
reported (``allocator_expandable_segments`` in the result's environment, :func:`.child.allocator_used`).
The trace's requests do not depend on the allocator, what they need under a cap does: a run under
``expandable_segments:True`` is replayed through :mod:`.allocsim_expandable`, any other through
:mod:`.allocsim` (PyTorch's default caching allocator). Both search the smallest cap with the one shared
bisection (:func:`.allocsim.bisect_cap`). The figure is the probe's ``raw["simulated"]``, which names
the model it came from (``allocator_model``); importing this module imports no torch (the renders read
it).
"""

from __future__ import annotations

import time

NATIVE = "native"  # PyTorch's default caching allocator (no PYTORCH_ALLOC_CONF)
EXPANDABLE = "expandable_segments"  # expandable_segments:True
MODEL_WORDS = {NATIVE: "default caching allocator", EXPANDABLE: "expandable segments"}
# What an uncapped replay that does not reproduce the run got wrong, by model (each checks its own).
MISMATCH_WORDS = {
    NATIVE: "its uncapped replay differs from the run's segments",
    EXPANDABLE: "its uncapped replay puts some blocks elsewhere than the run did",
}


def allocator_model(environment: dict) -> str:
    """The model for a run whose environment is ``environment``: expandable segments when the run's torch
    reported them on, else the default allocator (also when it did not say: a torch that predates them)."""
    return EXPANDABLE if environment.get("allocator_expandable_segments") else NATIVE


def model_of(simulated: dict) -> str:
    """The model a saved replay used (results written before it was recorded: the default allocator's,
    the only model the probe then had)."""
    return simulated.get("allocator_model") or NATIVE


def _native(snapshot: dict) -> dict:
    from vramfit.probe import allocsim

    events = snapshot["events"]
    reqs = allocsim.requests(events)
    free = allocsim.replay(reqs)
    return {
        "matches_trace": allocsim.segments_match(events, free),
        "segments": len(free.segments),
        "peak_reserved_bytes": free.peak_reserved,
        "required_bytes": allocsim.required_cap(reqs, free),
    }


def _expandable(snapshot: dict) -> dict:
    from vramfit.probe import allocsim_expandable

    reqs = allocsim_expandable.expandable_requests(snapshot)
    free = allocsim_expandable.replay(reqs)
    placed, _first = allocsim_expandable.placement_check(snapshot["events"], free)
    return {
        "matches_trace": placed == 1.0,
        "placed_share": round(placed, 4),
        "peak_reserved_bytes": free.peak_mapped,
        "required_bytes": allocsim_expandable.required_cap(reqs, free),
    }


_REPLAYS = {NATIVE: _native, EXPANDABLE: _expandable}


def simulate_allocator(snapshot: dict | None, environment: dict) -> dict | None:
    """The run's trace (a compact snapshot, :func:`.snapshot.compact`) replayed through the model of the
    allocator ``environment`` says the run used: the model, whether its uncapped replay reproduces the
    run, the uncapped reserved peak and the smallest cap under which it does not run out of memory.
    None without a trace (not recorded, or cut short by the bounded buffer)."""
    if snapshot is None:
        return None
    t = time.perf_counter()
    model = allocator_model(environment)
    out = _REPLAYS[model](snapshot)
    return {"allocator_model": model, **out, "seconds": round(time.perf_counter() - t, 2)}


def model_words(simulated: dict) -> str:
    """The model of a saved replay, in words for a report."""
    return MODEL_WORDS.get(model_of(simulated), model_of(simulated))


def mismatch_words(simulated: dict) -> str:
    """Why a saved replay does not reproduce its run, in words ("" when it does)."""
    if simulated.get("matches_trace", True):
        return ""
    return MISMATCH_WORDS.get(model_of(simulated), "its uncapped replay differs from the run")
