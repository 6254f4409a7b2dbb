"""vramfit's fitted allocator slack on the runs (``benchmarks/slack_fit.py``): the points it is fitted on,
in sample and leaving one family out, the constants vramfit ships, and the runs where the requirement is
only bounded."""

from __future__ import annotations

import dataclasses

from benchmarks import slack_fit
from vramfit.estimate import allocator
from vramfit.units import MiB

from .runs import Run, allocator_required_measured


def slack_points(runs: list[Run]) -> list[slack_fit.Point]:
    return [
        # peaks + paged optimizer state, as the measured requirement includes it
        slack_fit.Point(
            name=r.name,
            family=r.family,
            peak=r.predicted["vramfit"]["peak"] + r.predicted["vramfit"]["paged"],
            measured_peak=r.measured["peak"] + r.measured["required"] - allocator_required_measured(r),
            logits=r.fp32_logits,
            dequant=r.dequant,
            required=r.measured["required"],
            exact=r.required_source == "find-min",
        )
        for r in runs
    ]


def leave_one_family_out(runs: list[Run]) -> list[slack_fit.HeldOut]:
    return slack_fit.leave_one_family_out(slack_points(runs))


def bound_errors(runs: list[Run]) -> list[float]:
    """vramfit's requirement over the uncapped reserved peak, for the runs without find-min: the reserved
    peak bounds the requirement from above, so a positive value is certainly an over-estimate."""
    return [r.error("vramfit", "required") for r in runs if r.required_source != "find-min"]


def shipped_slack() -> slack_fit.Slack:
    """The constants vramfit ships (estimate/allocator.py)."""
    s = allocator.REQUIRED_SLACK
    return slack_fit.Slack(s.base, s.per_logits, s.per_dequant)


def reserved_points(runs: list[Run]) -> list[slack_fit.Point]:
    """The same runs with their uncapped reserved peak as the target (for ``peak_reserved_bytes``)."""
    out = []
    for p, r in zip(slack_points(runs), runs, strict=True):
        paged = r.measured["required"] - allocator_required_measured(r)
        out.append(
            dataclasses.replace(p, required=r.result["measured"]["peak_reserved_bytes"] + paged, exact=True)
        )
    return out


def slack_text(s: slack_fit.Slack) -> str:
    return f"{s.a / MiB:.0f} MiB + {s.b:.2f} x logits + {s.c:.2f} x dequant"
