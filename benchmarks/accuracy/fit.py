"""vramfit's fitted allocator slack on the runs (``benchmarks/slack_fit.py``): the points it is fitted on,
in sample and leaving one family out, the constants vramfit ships, and the runs where the requirement is
only bounded."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from benchmarks import slack_fit
from vramfit.estimate import allocator
from vramfit.units import MiB

from .provenance import provenance
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
    """The constants vramfit ships (vramfit/data/allocator_fit.json, read by estimate/allocator.py)."""
    s = allocator.REQUIRED_SLACK
    return slack_fit.Slack(s.base, s.per_logits, s.per_dequant, s.per_peak)


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
    return f"{s.a / MiB:.0f} MiB + {s.b:.2f} x logits + {s.c:.2f} x dequant + {s.d:.2f} x peak"


def _stats(errors: list[float]) -> dict:
    """The figures of a list of relative errors that the data file keeps."""
    errs = sorted(errors)
    return {
        "runs": len(errs),
        "median_error": round(statistics.median(errs), 6),
        "mean_abs_error": round(statistics.fmean(abs(e) for e in errs), 6),
        "lowest_error": round(errs[0], 6),
        "highest_error": round(errs[-1], 6),
    }


def _constants(s: slack_fit.Slack, base: int) -> dict:
    return {
        "base_bytes": base,
        "per_fp32_logits": s.b,
        "per_dequantized_weight": s.c,
        "per_allocated_peak": s.d,
    }


def _range_held_out(held: list[slack_fit.HeldOut]) -> dict:
    """Held out by family: how many find-min runs the range from the low to the high end holds."""
    pairs = [(lo, hi) for h in held for (_, lo), (_, hi) in zip(h.low_errors, h.errors, strict=True)]
    widths = sorted(hi - lo for lo, hi in pairs)
    return {
        "runs": len(pairs),
        "range_holds": sum(1 for lo, hi in pairs if lo <= 0 <= hi),
        "median_width": round(widths[len(widths) // 2], 6),
        "low_end_highest_error": round(max(lo for lo, _ in pairs), 6),
    }


def fit_record(runs: list[Run]) -> dict:
    """What ``vramfit/data/allocator_fit.json`` holds, but the provenance: the three slacks fitted on the
    runs (bases rounded to a MiB on the safe side: up for the requirement and the reserved peak, down for
    the floor), their errors in sample (the constants as shipped, on vramfit's estimated peaks) and held
    out one model family at a time."""
    points, reserved = slack_points(runs), reserved_points(runs)
    exact = [p for p in points if p.exact]
    req, low, res = slack_fit.fit(points), slack_fit.fit_low(points), slack_fit.fit(reserved)
    shipped = {
        "required": slack_fit.Slack(-(-req.a // MiB) * MiB, req.b, req.c, req.d),
        "low": slack_fit.Slack(low.a // MiB * MiB, low.b, low.c, low.d),
        "reserved": slack_fit.Slack(-(-res.a // MiB) * MiB, res.b, res.c, res.d),
    }
    held = slack_fit.leave_one_family_out(points)
    families = len({p.family for p in exact})
    held_required = {**_stats([e for h in held for _, e in h.errors]), "families": families}
    without = slack_fit.leave_one_family_out(points, features=("logits", "dequant"))
    held_without = {**_stats([e for h in without for _, e in h.errors]), "families": families}
    return {
        "floor": slack_fit.FLOOR,
        "required": {
            **_constants(req, shipped["required"].a),
            "in_sample": _stats([shipped["required"].error(p) for p in exact]),
            "held_out": held_required,
            "held_out_without_peak_term": held_without,
        },
        "low": {
            **_constants(low, shipped["low"].a),
            "in_sample": _stats([shipped["low"].error(p) for p in exact]),
            "held_out": {**_range_held_out(held), "families": families},
        },
        "reserved": {
            **_constants(res, shipped["reserved"].a),
            "in_sample": _stats([shipped["reserved"].error(p) for p in reserved]),
        },
    }


def measurements(runs: list[Run], results: Path) -> dict:
    """Where the runs a fit used come from: GPUs, driver, library versions, dates, folder."""
    pv = provenance(runs, results)
    keys = ("gpu", "driver", "cuda", "torch", "transformers", "peft", "bitsandbytes", "accelerate")
    return {"results": pv["results"], **{k: pv["env"][k] for k in keys}, "dates": pv["dates"]}
