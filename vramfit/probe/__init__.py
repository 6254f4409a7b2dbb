"""The probe: run a few real training steps of a configuration and measure its memory.

``probe(model, cfg, card)`` runs the reference recipe (docs/ARCHITECTURE.md) in a child process: the model built
with random weights and quantized on the way in (:mod:`.builder`), kbit preparation and LoRA
(:mod:`.recipe`), ``transformers.Trainer`` steps on synthetic full-length batches, peaks per phase
(:mod:`.phases`), a memory snapshot (:mod:`.snapshot`) whose peak is split into the estimator's
components (:mod:`.attribution`), and whose trace is replayed under caps through a model of the allocator
the run used (:mod:`.allocator_replay`: the default caching allocator's, :mod:`.allocsim`, or expandable
segments', :mod:`.allocsim_expandable`; the smallest cap that works, from this one run). With a card it
caps the allocator at what that card leaves free (:mod:`.emulate`); the estimate beside the measurement
counts the measuring GPU's cuBLAS workspaces (:mod:`.measuring`). ``find_min`` measures
``allocator_required_bytes`` with capped runs, starting around the replay's figure.

Importing this package imports no torch: the children do.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from vramfit.catalog import OPTIMIZERS
from vramfit.config import TrainConfig, validate
from vramfit.errors import InputError, MissingDependency
from vramfit.models.spec import ArchSpec
from vramfit.probe.emulate import DEFAULT_RESOLUTION, Trial, cap_for_card, find_min, parallel_trials
from vramfit.probe.result import Measured, Oom, PhaseMeasurement, ProbeResult

__all__ = [
    "probe",
    "ProbeResult",
    "Measured",
    "PhaseMeasurement",
    "Oom",
    "Trial",
    "check_stack",
    "DEFAULT_RESOLUTION",
]

DEFAULT_TIMEOUT = 900  # seconds per round of trials
STACK = ("torch", "transformers", "peft", "accelerate")


def check_stack(cfg: TrainConfig) -> None:
    """One clear line when a library the probe needs is not installed."""
    missing = [m for m in STACK if importlib.util.find_spec(m) is None]
    optimizer = OPTIMIZERS.get(cfg.optimizer)
    needs_bnb = cfg.is_kbit or (optimizer is not None and optimizer.library == "bitsandbytes")
    if needs_bnb and importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes")
    if missing:
        raise MissingDependency(
            f"the probe needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            "pip install 'vramfit[probe]'"
        )


def _check_options(device: str, steps: int, resolution: int, max_parallel: int, find_min_cap: bool,
                   weights: str | None) -> None:  # fmt: skip
    """The probe's own options, each error naming its flag."""
    if device not in ("cuda", "cpu"):
        raise InputError("--device", f"unknown device {device!r}; accepted: cuda, cpu")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError("--steps", f"must be a positive whole number, got {steps!r}")
    if resolution < 1 << 20:
        raise InputError("--resolution", "must be at least 1 MiB")
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise InputError("--parallel", f"must be a positive whole number, got {max_parallel!r}")
    if find_min_cap and device != "cuda":
        raise InputError("--find-min", "needs a CUDA GPU (--device cuda)")
    if weights is not None:
        import os

        if not os.path.isdir(weights):
            raise InputError("--weights", f"no such checkpoint folder: {weights}")


def _find_min(measured: Measured, env: dict, base: dict, cap: int | None, card, resolution: int,
              max_parallel: int, timeout: float, on_event,
              guess: int | None = None) -> tuple[Measured, list[Trial]]:  # fmt: skip
    """``allocator_required_bytes`` searched with capped runs beside each other (see find_min).

    ``guess``: where the search starts (:func:`_search_guess`); None: the top of the interval."""
    from dataclasses import replace

    from vramfit.probe.runner import run_trials

    per_trial = (
        (measured.peak_reserved_bytes or 0)
        + (measured.cuda_context_bytes or 0)
        + (measured.paged_optimizer_bytes or 0)
    )
    k = parallel_trials(env.get("gpu_memory_bytes") or 0, per_trial, max_parallel)
    rounds = 0

    def run_caps(caps: list[int]) -> list[Trial]:
        nonlocal rounds
        rounds += 1
        if on_event:
            on_event({"event": "round", "round": rounds, "caps": caps})
        outs = run_trials([{**base, "cap_bytes": c, "record": False} for c in caps], timeout)
        res = []
        for c, o in zip(caps, outs, strict=True):
            m = o["measured"]
            oom = m.get("oom") or {}
            res.append(Trial(c, m["oom"] is None, oom.get("phase"), oom.get("requested_bytes")))
        return res

    lo = measured.peak_allocated_bytes - 1  # NOTE: below the allocated peak nothing can fit
    hi = measured.peak_reserved_bytes
    if cap is not None and measured.fits:
        hi = min(hi, cap)
    required, trials = find_min(run_caps, lo, hi, resolution, k, guess=guess)
    # NOTE: the first run fitted with reserved memory = peak_reserved, so that cap is known to work;
    # allocator_required never exceeds it.
    required = min(max(required, measured.peak_allocated_bytes), measured.peak_reserved_bytes)
    measured = replace(measured, allocator_required_bytes=required)
    if card is not None:
        measured = replace(measured, fits=required <= cap)
    return measured, trials


def _estimate_beside(
    spec: ArchSpec, cfg: TrainConfig, card, env: dict, on_card, warnings: list[str], expandable: bool | None
) -> dict | None:
    """The estimate's JSON beside the measurement: with the measuring GPU's cuBLAS workspaces, its verdict
    the card's (:func:`vramfit.probe.measuring.estimate_beside`); what differs from the card's own
    estimate is said in ``warnings``."""
    from vramfit.probe.measuring import estimate_beside, workspace_note

    if on_card is None:
        return None
    note = workspace_note(card, env)
    if note:
        warnings.append(note)
    return estimate_beside(spec, cfg, card, env, on_card, expandable_segments=expandable).to_json()


def _search_guess(
    spec: ArchSpec, cfg: TrainConfig, measured: Measured, expandable: bool | None
) -> int | None:
    """Where ``--find-min`` starts: the first run's trace replayed through the model of the allocator it
    used (:mod:`.allocator_replay`), else (no trace) under expandable segments :func:`_expandable_guess`."""
    simulated = ((measured.raw or {}).get("simulated") or {}).get("required_bytes")
    return simulated if simulated is not None else _expandable_guess(spec, cfg, measured, expandable)


def _expandable_guess(
    spec: ArchSpec, cfg: TrainConfig, measured: Measured, expandable: bool | None
) -> int | None:
    """Under expandable segments, where the search starts: the model of :mod:`vramfit.estimate.expandable`
    applied to the first run's measured peak. Only the order of the trials depends on it; a wrong guess
    costs rounds, not accuracy (:func:`vramfit.probe.emulate.find_min`)."""
    if not expandable or measured.peak_allocated_bytes is None:
        return None
    from vramfit.estimate import expandable as es

    return es.required_bytes(measured.peak_allocated_bytes, es.gap_sources(spec, cfg))


def probe(
    model: ArchSpec | str,
    cfg: TrainConfig | None = None,
    card=None,
    *,
    steps: int = 3,
    device: str = "cuda",
    snapshot_path: str | None = None,
    find_min_cap: bool = False,
    resolution: int = DEFAULT_RESOLUTION,
    timeout: float = DEFAULT_TIMEOUT,
    weights: str | None = None,
    record: bool = True,
    max_parallel: int = 8,
    compact_out: str | None = None,
    expandable_segments: bool | None = None,
    on_event: Callable[[dict], None] | None = None,
) -> ProbeResult:
    """Measure ``cfg`` on ``model`` with real training steps (see the module docstring).

    ``card``: a :class:`vramfit.gpus.Card` to emulate (the allocator is capped at what it leaves free).
    ``find_min_cap``: search ``allocator_required_bytes`` to ``resolution`` bytes.
    ``record``: record a memory snapshot for the attribution (``snapshot_path``: save it as a pickle).
    ``device="cpu"`` runs the same pipeline on the CPU without memory numbers (for tests).
    ``expandable_segments``: run the children with ``expandable_segments:True`` / ``False`` in the
    variable their torch reads (:mod:`vramfit.allocator_settings`); None: this process's environment.
    ``on_event``: progress events from the trials ({"event": "phase" | "step" | "round", ...}).
    """
    from vramfit.probe.child import trial_config
    from vramfit.probe.runner import run_trial

    if isinstance(model, str):
        from vramfit.models import resolve_model

        spec = resolve_model(model)
    else:
        spec = model
    cfg = validate(cfg or TrainConfig(), tuple(OPTIMIZERS))
    _check_options(device, steps, resolution, max_parallel, find_min_cap, weights)
    check_stack(cfg)
    if cfg.uses_lora:
        from vramfit.estimate.adapters import resolve_targets

        resolve_targets(spec, cfg.targets)  # unknown names fail here, naming --targets
    on_card = None
    warnings: list[str] = []
    try:
        from vramfit.estimate import estimate

        # before the run: a card the configuration cannot run fails here
        on_card = estimate(spec, cfg, card, expandable_segments=expandable_segments)
    except ImportError:  # pragma: no cover - the estimator ships with vramfit
        warnings.append("no estimate: vramfit.estimate is not importable")
    cap = cap_for_card(card) if card is not None else None
    if cap is not None and cap <= 0:
        raise InputError("--vram", "the card leaves no memory for PyTorch once its CUDA context is taken")

    base = trial_config(spec, cfg, device=device, steps=steps, weights=weights,
                        expandable_segments=expandable_segments)  # fmt: skip
    first = run_trial({**base, "cap_bytes": cap, "record": record, "snapshot_pickle": snapshot_path,
                       "compact_out": compact_out}, timeout, on_event)  # fmt: skip
    measured = Measured.from_json(first["measured"])
    warnings += first.get("warnings", [])
    used = first["environment"].get("allocator_expandable_segments")
    if expandable_segments is not None and used is not None and used != expandable_segments:
        warnings.append(
            f"expandable_segments:{expandable_segments} was requested, but torch "
            f"{first['environment'].get('allocator_torch')} ran with expandable_segments:{used}"
        )
    if on_card is not None and used is not None and used != expandable_segments:  # the allocator the run used
        on_card = estimate(spec, cfg, card, expandable_segments=used)
    est = _estimate_beside(spec, cfg, card, first["environment"], on_card, warnings, used)
    trials: list[Trial] = []

    if find_min_cap and measured.oom is None:
        measured, trials = _find_min(measured, first["environment"], base, cap, card, resolution, max_parallel,
                                     timeout, on_event, _search_guess(spec, cfg, measured, used))  # fmt: skip
    elif find_min_cap:
        warnings.append("no --find-min search: the run did not fit under the card's cap")
    return ProbeResult(
        model=spec.name,
        config=cfg.to_json(),
        measured=measured,
        environment=first["environment"],
        estimate=est,
        trials=tuple(t.to_json() for t in trials),
        warnings=tuple(warnings),
        snapshot_path=snapshot_path,
    )
