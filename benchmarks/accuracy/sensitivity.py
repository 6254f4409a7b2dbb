"""Real runs a few tokens apart (``accuracy_grid.py --grid sens``, ``benchmarks/results/sensitivity/``): how
the measured requirement moves while the tensors barely do, and where vramfit's range puts it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from vramfit.config import TrainConfig
from vramfit.estimate import estimate
from vramfit.gpus import match_device, resolve_card
from vramfit.units import MiB

SENSITIVITY = Path(__file__).resolve().parent.parent / "results" / "sensitivity"


@dataclass(frozen=True)
class Point:
    series: str  # the configuration without its sequence length
    seq_len: int
    peak: int  # measured peak allocated
    required: int  # the allocator model's replay of the run's trace (uncapped run)
    reserved: int
    low: int  # vramfit's range
    high: int
    matches: bool  # the replay created the run's own segments (allocsim.check_against_trace)


def load_points(folder: Path = SENSITIVITY) -> list[Point]:
    out = []
    for path in sorted(folder.glob("h[0-9]*_grid_sens_*.json")):
        result = json.loads(path.read_text())["result"]
        m = result["measured"]
        sim = (m.get("raw") or {}).get("simulated") or {}
        if not sim.get("required_bytes"):
            continue
        env = result["environment"]
        card = resolve_card(gpu=match_device(env["gpu"], env["gpu_memory_bytes"]).name)
        est = estimate(result["model"], TrainConfig.from_json(result["config"]), card)
        series = re.sub(r"_s\d+(_rep\d+)?$", "", path.stem.split("_grid_sens_", 1)[1])
        out.append(Point(series, result["config"]["seq_len"], m["peak_allocated_bytes"], sim["required_bytes"],
                         m["peak_reserved_bytes"], est.allocator_required_low, est.allocator_required_bytes,
                         bool(sim.get("matches_trace"))))  # fmt: skip
    return sorted(out, key=lambda p: (p.series, p.seq_len))


HEAD = ["configuration", "tokens", "peak allocated MiB", "requirement MiB (replay)", "slack MiB",
        "vramfit range MiB", "inside", "replay segments match"]  # fmt: skip


def rows(points: list[Point]) -> list[list[str]]:
    return [
        [p.series, str(p.seq_len), f"{p.peak / MiB:.0f}", f"{p.required / MiB:.0f}",
         f"{(p.required - p.peak) / MiB:.0f}", f"{p.low / MiB:.0f}-{p.high / MiB:.0f}",
         "yes" if p.low <= p.required <= p.high else "no", "yes" if p.matches else "no"]
        for p in points
    ]  # fmt: skip


def jumps(points: list[Point]) -> list[tuple[str, float, float]]:
    """Per configuration: the largest change of the requirement and of the peak between neighbouring
    sequence lengths (relative)."""
    out = []
    for series in sorted({p.series for p in points}):
        by_len: dict[int, Point] = {}
        for p in points:  # one run per length (repeats of a length: the first)
            if p.series == series:
                by_len.setdefault(p.seq_len, p)
        ps = [by_len[s] for s in sorted(by_len)]
        pairs = list(zip(ps, ps[1:], strict=False))
        if not pairs:
            continue
        req = max(abs(b.required / a.required - 1) for a, b in pairs)
        peak = max(abs(b.peak / a.peak - 1) for a, b in pairs)
        out.append((series, req, peak))
    return out


def repeat_spread(points: list[Point]) -> list[tuple[str, int, int, int, int]]:
    """Configurations run more than once at one length: (series, length, runs, least and most requirement)."""
    out = []
    for key in sorted({(p.series, p.seq_len) for p in points}):
        reqs = [p.required for p in points if (p.series, p.seq_len) == key]
        if len(reqs) > 1:
            out.append((key[0], key[1], len(reqs), min(reqs), max(reqs)))
    return out
