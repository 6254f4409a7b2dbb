"""One configuration's memory record: from the estimator, or from real steps with the probe."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramfit.check.configfile import CheckConfig, flag_to_key
from vramfit.errors import InputError, VramfitError
from vramfit.memory import MemoryRecord

if TYPE_CHECKING:
    from vramfit.allocator_settings import AllocatorSetting
    from vramfit.gpus import Card
    from vramfit.probe.result import Measured

# What a measurement of one configuration gives the check: (record, the card's usable memory or None,
# the resolved configuration JSON, the environment).
Measurement = tuple[MemoryRecord, "int | None", dict, dict]


def _card(c: CheckConfig) -> Card | None:
    if not c.card:
        return None
    from vramfit.gpus import resolve_card

    try:
        return resolve_card(**c.card)
    except InputError as e:
        raise InputError(f"{c.where} {flag_to_key(e.flag)}", e.message) from None


def _located(c: CheckConfig, e: InputError) -> InputError:
    flag = flag_to_key(e.flag) if e.flag.startswith("--") else e.flag
    return InputError(f"{c.where} {flag}", e.message)


def allocator_of(c: CheckConfig) -> AllocatorSetting:
    """The allocator ``c`` runs under: its ``expandable_segments`` entry, else the environment as the
    installed torch reads it (as ``vramfit estimate`` does)."""
    from vramfit.allocator_settings import resolve

    return resolve(c.expandable_segments, source_of_flag="config")


def measure_estimate(c: CheckConfig) -> Measurement:
    """The estimator's record of ``c``, its card's usable memory, its config JSON (with the allocator it
    assumed, so that the baseline records it) and no environment."""
    from vramfit.estimate import estimate

    card = _card(c)  # its errors already name the configuration
    expandable = allocator_of(c).expandable_segments
    try:
        est = estimate(c.model, c.config, card, expandable_segments=expandable)
    except InputError as e:
        raise _located(c, e) from None
    config = {**est.config, "expandable_segments": expandable}
    return est.memory, est.verdict.usable_bytes if est.verdict else None, config, {}


def measure_probe(c: CheckConfig) -> Measurement:
    """The record of real training steps (needs a CUDA GPU), the card's usable memory, config, environment.

    The probe runs uncapped on the runner's GPU: a card named in vramfit.toml sets the budget (its
    usable memory) instead of capping the run, so that a run that grew is a number over a budget,
    not an out-of-memory error.
    """
    from vramfit.probe import probe

    card = _card(c)
    try:
        result = probe(c.model, c.config, None, expandable_segments=c.expandable_segments)
    except InputError as e:
        if not e.flag:  # no GPU: the --probe of `check` asked for one
            raise InputError("--probe", e.message) from None
        raise _located(c, e) from None
    record = measured_record(result.measured, c.where)
    env = dict(result.environment)
    config = {**result.config, "expandable_segments": env.get("allocator_expandable_segments")}
    return record, card.usable_bytes if card else None, config, env


def measured_record(m: Measured, where: str = "probe") -> MemoryRecord:
    """The record of a probe's measurement; an out-of-memory run or a run without numbers is an error.

    Without ``--find-min`` the probe does not search the allocator requirement; the check then compares
    the high end of the record's range, peak reserved + non-PyTorch memory (as deterministic as the
    allocator for a given stack and GPU, which is what a regression check needs).
    """
    if m.oom is not None:
        raise VramfitError(
            f"{where}: the probe ran out of memory on this GPU in {m.oom.phase}: {m.oom.message}"
        )
    record = m.memory
    if record is None or m.peak_reserved_bytes is None:
        raise InputError("--probe", f"{where}: the probe measured no memory (device {m.device!r})")
    return record


def measurement_from_probe(d: dict, where: str = "probe") -> MemoryRecord:
    """The record of a saved probe result's JSON (``vramfit probe --json``)."""
    from vramfit.probe.result import Measured

    return measured_record(Measured.from_json(d.get("measured") or {"device": None}), where)
