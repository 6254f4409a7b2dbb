"""The whole report: every run measured and predicted by the three tools, the slack refitted, provenance."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import slack_fit

from . import sensitivity as sens
from .fit import leave_one_family_out, slack_points
from .peers import add_accelerate, add_fitcheck, offline_hub, write_hub_cache
from .provenance import provenance, tool_versions
from .replay import load_replayed, repeat_find_min
from .runs import RESULTS, Run, add_vramfit, load_runs
from .summary import Summary, tool_summary


@dataclass
class Report:
    runs: list[Run]
    provenance: dict
    versions: dict
    problems: dict  # tool -> why it has no numbers (None: it ran)
    held_out: list[slack_fit.HeldOut]
    in_sample: slack_fit.Slack  # the slack refitted on every run
    seconds: float = 0.0
    sensitivity: list = field(default_factory=list)  # sensitivity.Point: runs a few tokens apart
    # replay.Replayed: the allocator model on every configuration; (committed, repeated) find-min of one
    replayed: list = field(default_factory=list)
    repeat_find_min: tuple | None = None  # (configuration, committed, repeated) find-min

    def summary(self, tool: str, quantity: str, runs: list[Run] | None = None) -> Summary | None:
        return tool_summary(self.runs if runs is None else runs, tool, quantity)


def build(results: Path = RESULTS, with_fitcheck: bool = True) -> Report:
    t0 = time.perf_counter()
    runs = load_runs(results)
    if not runs:
        raise SystemExit(f"no measured runs under {results}")
    add_vramfit(runs)
    problems: dict[str, str | None] = {"vramfit": None}
    with tempfile.TemporaryDirectory(prefix="hf-home-") as tmp:
        home = Path(tmp)
        write_hub_cache(home, runs)
        with offline_hub(home):
            problems["accelerate"] = add_accelerate(runs)
            problems["fitcheck"] = (
                add_fitcheck(runs) if with_fitcheck else "fitcheck-llm was not run (--no-fitcheck)."
            )
    return Report(
        runs=runs,
        provenance=provenance(runs, results),
        versions=tool_versions(),
        problems=problems,
        held_out=leave_one_family_out(runs),
        in_sample=slack_fit.fit(slack_points(runs)),
        seconds=time.perf_counter() - t0,
        sensitivity=sens.load_points(),
        replayed=(replayed := load_replayed(runs)),
        repeat_find_min=repeat_find_min(replayed),
    )
