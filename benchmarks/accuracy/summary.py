"""Error statistics: median, mean |error|, worst and under-estimates of a list of relative errors."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .runs import Run


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    mean_abs: float
    worst: float  # the signed error of largest magnitude
    under: int  # runs under-estimated


def summarize(errors: list[float]) -> Summary | None:
    if not errors:
        return None
    return Summary(
        n=len(errors),
        median=statistics.median(errors),
        mean_abs=statistics.fmean(abs(e) for e in errors),
        worst=max(errors, key=abs),
        under=sum(e < 0 for e in errors),
    )


def tool_summary(runs: list[Run], tool: str, quantity: str) -> Summary | None:
    return summarize([e for r in runs if (e := r.error(tool, quantity)) is not None])
