"""One configuration's memory numbers: from the estimator, or from real steps with the probe."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from vramfit.check.configfile import CheckConfig, flag_to_key
from vramfit.errors import InputError, VramfitError


@dataclass(frozen=True)
class Measurement:
    """The memory numbers of one configuration, from the estimator or the probe."""

    required_vram_bytes: int
    peak_allocated_bytes: int
    peak_reserved_bytes: int | None
    allocator_required_bytes: int | None
    peak_phase: str | None
    usable_bytes: int | None = None  # the card's, when the configuration names one

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _card(c: CheckConfig):
    if not c.card:
        return None
    from vramfit.gpus import resolve_card

    try:
        return resolve_card(**c.card)
    except InputError as e:
        raise InputError(f"{c.where} {flag_to_key(e.flag)}", e.message) from None


def measure_estimate(c: CheckConfig) -> tuple[Measurement, dict, dict]:
    """(measurement, resolved config JSON, environment) from the estimator."""
    from vramfit.estimate import estimate

    card = _card(c)  # its errors already name the configuration
    try:
        est = estimate(c.model, c.config, card)
    except InputError as e:
        flag = flag_to_key(e.flag) if e.flag.startswith("--") else e.flag
        raise InputError(f"{c.where} {flag}", e.message) from None
    m = Measurement(
        required_vram_bytes=est.required_vram_bytes,
        peak_allocated_bytes=est.peak_allocated_bytes,
        peak_reserved_bytes=est.peak_reserved_bytes,
        allocator_required_bytes=est.allocator_required_bytes,
        peak_phase=est.peak_phase,
        usable_bytes=est.verdict.usable_bytes if est.verdict else None,
    )
    return m, est.config, {}


def measure_probe(c: CheckConfig) -> tuple[Measurement, dict, dict]:
    """(measurement, config JSON, environment) from real training steps (needs a CUDA GPU).

    The probe runs uncapped on the runner's GPU: a card named in vramfit.toml sets the budget (its
    usable memory) instead of capping the run, so that a run that grew is a number over a budget,
    not an out-of-memory error.
    """
    from vramfit.probe import probe

    card = _card(c)
    try:
        result = probe(c.model, c.config, None)
    except InputError as e:
        if not e.flag:  # no GPU: the --probe of `check` asked for one
            raise InputError("--probe", e.message) from None
        flag = flag_to_key(e.flag) if e.flag.startswith("--") else e.flag
        raise InputError(f"{c.where} {flag}", e.message) from None
    d = result.to_json()
    m = measurement_from_probe(d, c.where)
    if card is not None:
        m = replace(m, usable_bytes=card.usable_bytes)
    return m, d.get("config") or c.config.to_json(), dict(d.get("environment") or {})


def measurement_from_probe(d: dict, where: str = "probe") -> Measurement:
    """The numbers of a probe result's JSON.

    Without ``--find-min`` the probe does not search the allocator requirement; the required VRAM is
    then its upper bound, peak reserved + non-PyTorch memory (as deterministic as the allocator for a
    given stack and GPU, which is what a regression check needs).
    """
    meas = d.get("measured") or {}
    oom = meas.get("oom")
    if oom:
        raise VramfitError(
            f"{where}: the probe ran out of memory on this GPU in {oom.get('phase')}: {oom.get('message')}"
        )
    nt = meas.get("non_torch_bytes") or {}
    if not isinstance(meas.get("peak_reserved_bytes"), int) or not isinstance(nt.get("total"), int):
        raise InputError("--probe", f"{where}: the probe measured no memory (device {meas.get('device')!r})")
    required = meas.get("required_vram_bytes")
    if not isinstance(required, int):
        required = meas["peak_reserved_bytes"] + nt["total"]
    return Measurement(
        required_vram_bytes=required,
        peak_allocated_bytes=int(meas.get("peak_allocated_bytes") or 0),
        peak_reserved_bytes=meas.get("peak_reserved_bytes"),
        allocator_required_bytes=meas.get("allocator_required_bytes"),
        peak_phase=meas.get("peak_phase"),
    )
