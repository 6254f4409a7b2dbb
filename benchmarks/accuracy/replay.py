"""The allocator model (``vramfit.probe.allocsim``) against --find-min on every configuration of the grid:
one uncapped run each, its trace replayed (``benchmarks/replay_check.py``, ``benchmarks/results/replay/``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vramfit.units import GiB

from .runs import Run

REPLAY = Path(__file__).resolve().parent.parent / "results" / "replay" / "h200_replay.json"


@dataclass(frozen=True)
class Replayed:
    name: str
    peak: int
    reserved: int
    matches: bool  # the uncapped replay created the run's own segments
    required: int  # the smallest cap under which the replay does not run out of memory
    find_min: int | None  # the committed find-min result of the configuration
    seconds: float

    @property
    def error(self) -> float | None:
        return self.required / self.find_min - 1 if self.find_min else None


def load_replayed(runs: list[Run], path: Path = REPLAY) -> list[Replayed]:
    if not path.exists():
        return []
    fm = {}
    for r in runs:
        if r.required_source == "find-min":
            fm[r.name.removeprefix("grid_fm_").removeprefix("grid_")] = r.result["measured"][
                "allocator_required_bytes"
            ]
    out = []
    for e in json.loads(path.read_text())["entries"]:
        s = e.get("simulated")
        if not s:
            continue
        out.append(Replayed(e["name"], e["peak_allocated_bytes"], e["peak_reserved_bytes"], bool(s["matches_trace"]),
                            s["required_bytes"], fm.get(e["name"]), s["seconds"]))  # fmt: skip
    return out


HEAD = ["configuration", "allocated GiB", "reserved GiB", "segments match", "replayed requirement GiB",
        "find-min GiB", "replay vs find-min", "seconds"]  # fmt: skip


def rows(entries: list[Replayed]) -> list[list[str]]:
    def gib(n: int | None) -> str:
        return f"{n / GiB:.2f}" if n else ""

    return [
        [e.name, gib(e.peak), gib(e.reserved), "yes" if e.matches else "no", gib(e.required), gib(e.find_min),
         f"{e.error * 100:+.1f} %" if e.error is not None else "", f"{e.seconds:.1f}"]
        for e in sorted(entries, key=lambda e: -abs(e.error or 0))
    ]  # fmt: skip


REPEAT_PREFIX = "h200_findmin_repeat_"  # a configuration searched again: h200_findmin_repeat_<name>.json


def repeat_find_min(replayed: list[Replayed], folder: Path = REPLAY.parent) -> tuple[str, int, int] | None:
    """(configuration, committed find-min, the repeat's find-min) of a configuration searched twice."""
    for path in sorted(folder.glob(REPEAT_PREFIX + "*.json")):
        name = path.stem.removeprefix(REPEAT_PREFIX)
        first = next((e.find_min for e in replayed if e.name == name), None)
        if first:
            again = json.loads(path.read_text())["result"]["measured"]["allocator_required_bytes"]
            return name, first, again
    return None
