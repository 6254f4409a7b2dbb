"""The baseline file: the numbers a check compares with, and the versions that produced them.

Only ``vramfit check --update`` writes it (:func:`write_baseline`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vramfit.errors import InputError
from vramfit.memory import MemoryRecord
from vramfit.units import MAX_SIZE_BYTES
from vramfit.userfiles import read_user_json, write_output

BASELINE_FORMAT = 1
# Sizes in a baseline: a required VRAM beyond any GPU still reads (a budget catches it), 10^15 bytes does not.
MAX_BYTES = 1024 * MAX_SIZE_BYTES


@dataclass(frozen=True)
class BaselineEntry:
    """One configuration as the baseline recorded it: the compared figure and the record behind it."""

    model: str
    config: dict
    card: dict
    measurement: MemoryRecord | None  # None in a file written before records carried non-torch memory
    required_vram_bytes: int  # the high end of the record's range: what a check compares
    usable_bytes: int | None = None  # the card's, when the configuration names one

    @classmethod
    def of(
        cls, model: str, config: dict, card: dict, memory: MemoryRecord, usable: int | None
    ) -> BaselineEntry:
        return cls(model, config, card, memory, memory.required_high_bytes, usable)

    def to_json(self) -> dict:
        mem = self.measurement.to_json() if self.measurement else {}
        return {"model": self.model, "config": self.config, "card": self.card,
                **mem, "required_vram_bytes": self.required_vram_bytes, "usable_bytes": self.usable_bytes}  # fmt: skip

    @classmethod
    def from_json(cls, e: dict) -> BaselineEntry:
        usable = e.get("usable_bytes")
        return cls(str(e.get("model", "")), dict(e.get("config") or {}), dict(e.get("card") or {}),
                   MemoryRecord.from_json(e), e["required_vram_bytes"], usable if isinstance(usable, int) else None)  # fmt: skip


@dataclass(frozen=True)
class Baseline:
    mode: str  # "estimate" or "probe"
    versions: dict
    entries: dict[str, BaselineEntry]

    def to_json(self) -> dict:
        return {
            "kind": "vramfit-baseline",
            "format": BASELINE_FORMAT,
            "mode": self.mode,
            "versions": self.versions,
            "configs": {name: e.to_json() for name, e in sorted(self.entries.items())},
        }

    @classmethod
    def from_json(cls, d: object, source: str = "baseline") -> Baseline:
        if not isinstance(d, dict) or d.get("kind") != "vramfit-baseline":
            raise InputError(
                source, 'not a vramfit baseline (no "kind": "vramfit-baseline"); write one with --update'
            )
        if d.get("format") != BASELINE_FORMAT:
            raise InputError(
                source,
                f"baseline format {d.get('format')!r} is not {BASELINE_FORMAT}; rewrite it with --update",
            )
        if d.get("mode") not in ("estimate", "probe"):
            raise InputError(source, f"mode {d.get('mode')!r}; accepted: estimate, probe")
        configs = d.get("configs")
        if not isinstance(configs, dict):
            raise InputError(source, "'configs' must be an object")
        for key in ("versions",):
            if not isinstance(d.get(key) or {}, dict):
                raise InputError(source, f"'{key}' must be an object, got {_shown(d.get(key))}")
        entries = {}
        for name, e in configs.items():
            if not isinstance(e, dict):
                raise InputError(source, f"configs.{name} must be an object")
            entries[name] = _entry(name, e, source)
        return cls(d["mode"], dict(d.get("versions") or {}), entries)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _entry(name: str, e: dict, source: str) -> BaselineEntry:
    """One configuration of a baseline, every field checked for the type check --update writes."""
    here = f"configs.{name}"
    for key in ("required_vram_bytes", "peak_allocated_bytes"):  # divisors of the check's fractions
        v = e.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_BYTES:
            raise InputError(
                source, f"{here}.{key} must be a positive whole number of bytes, got {_shown(v)}"
            )
    for key in ("peak_reserved_bytes", "allocator_required_bytes", "usable_bytes"):
        v = e.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_BYTES):
            raise InputError(source, f"{here}.{key} must be a whole number of bytes or null, got {_shown(v)}")
    for key, kind, what in (("peak_phase", str, "a string or null"), ("model", str, "a string"),
                            ("config", dict, "an object"), ("card", dict, "an object")):  # fmt: skip
        v = e.get(key)
        if v is not None and not isinstance(v, kind):
            raise InputError(source, f"{here}.{key} must be {what}, got {_shown(v)}")
    return BaselineEntry.from_json(e)


def load_baseline(path: str | Path) -> Baseline:
    p = Path(path)
    d = read_user_json(p, "--baseline", missing_hint="; create it with --update")
    return Baseline.from_json(d, source=f"--baseline {p.name}")


def write_baseline(path: str | Path, baseline: Baseline) -> None:
    """Write the baseline atomically (only ``vramfit check --update`` calls this)."""
    write_output(path, json.dumps(baseline.to_json(), indent=2, sort_keys=False) + "\n", "--baseline")


def versions(mode: str, probe_environment: dict | None = None) -> dict:
    """What produced the numbers: vramfit for estimates; for probes the stack and GPU of the run."""
    from vramfit.environment import ENVIRONMENT_KEYS, environment

    if mode == "estimate":
        return {"vramfit": environment(query_gpu=False)["vramfit"]}
    env = dict(probe_environment) if probe_environment else environment(query_gpu=True)
    return {k: env.get(k) for k in ENVIRONMENT_KEYS}
