"""Fit, and validate held out, the allocator-slack constants of ``vramfit.estimate.allocator``.

    allocator_required = peak allocated + a + b x fp32 logits + c x one dequantized weight + d x peak allocated

``fp32 logits`` = batch x seq x vocab x 4 bytes, ``dequantized weight`` = a layer's largest linear weight
in the compute dtype (k-bit bases only; 0 otherwise), both vramfit's own figures for the run. ``d``: the
memory the allocator cannot hand back at the peak (the free tails of segments that still hold a live block)
grows with what is live then. The data file keeps the held-out figures of the formula without it
(``required.held_out_without_peak_term``): its worst over-estimates are on the small models, whose slack
is the largest share of their peak.

The fit sees the allocator alone: the measured slack above the *measured* peak allocated, so a run whose
peak the estimator misses (missing physics, pinned in tests/test_accuracy_measured.py) does not bend the
slack. Two kinds of runs:

* ``exact``: the requirement was searched with ``--find-min`` (the smallest cap that works);
* bounds: only the uncapped reserved peak is known, and the requirement is at most that (under a cap the
  allocator frees its unused cached segments and retries, so it needs up to 1 GiB less than it reserves
  uncapped).

Objective: the least mean |error| over the exact runs plus the mean amount by which the bounds are
exceeded (a prediction above a run's reserved peak is certainly too high), under the constraint that no
exact run is under-estimated by more than ``FLOOR`` (an under-estimate is a "fits" verdict that runs out of
memory). ``b``, ``c`` and ``d`` are searched on grids; ``a`` is then the least that meets the constraint.
Evaluation (:meth:`Slack.error`) adds the slack to the *estimated* peak: what vramfit prints.
Used by ``accuracy_report.py`` (in sample, and leaving one model family out at a time).

    python -m benchmarks.slack_fit [--results benchmarks/results/probe] [--out vramfit/data/allocator_fit.json]

fits the three slacks on the committed measurements and writes the data file vramfit reads them from, with
their errors in sample and held out and where the measurements come from; ``tests/test_allocator_fit.py``
re-runs the fit and holds the file to it.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np

from vramfit.estimate import allocator

FLOOR = -0.005  # the most a fitted run may be under-estimated
B_GRID = [i / 20 for i in range(0, 61)]  # per fp32 logits: 0 to 3 in 0.05
C_GRID = [i / 4 for i in range(0, 33)]  # per dequantized weight: 0 to 8 in 0.25
D_GRID = [i / 100 for i in range(0, 21)]  # per byte of the allocated peak: 0 to 0.2 in 0.01


@dataclass(frozen=True)
class Point:
    """One measured run, as the fit sees it (bytes)."""

    name: str
    family: str
    peak: int  # vramfit's peak allocated for the run's configuration (+ its paged optimizer state)
    measured_peak: int  # the probe's peak allocated (+ paged optimizer state)
    logits: int  # fp32 logits
    dequant: int  # one dequantized weight (0 without a k-bit base)
    required: int  # measured: allocator requirement + paged state (exact), or reserved + paged (a bound)
    exact: bool = True  # found by --find-min; otherwise ``required`` is an upper bound


@dataclass(frozen=True)
class Slack:
    a: int
    b: float
    c: float
    d: float = 0.0

    def slack(self, p: Point, peak: int | None = None) -> int:
        """The estimator's own formula (``vramfit.estimate.allocator.Slack``) with these constants, on
        vramfit's peak unless ``peak`` is given."""
        s = allocator.Slack(self.a, self.b, self.c, self.d)
        return s.bytes(p.logits, p.dequant, p.peak if peak is None else peak)

    def required(self, p: Point) -> int:
        return p.peak + self.slack(p)

    def error(self, p: Point) -> float:
        """The requirement vramfit prints (estimated peak + slack) against the measured one."""
        return self.required(p) / p.required - 1

    def fit_error(self, p: Point) -> float:
        """What the fit constrains: the measured peak + slack against the measured requirement."""
        return (p.measured_peak + self.slack(p, p.measured_peak)) / p.required - 1


Feature = Literal["logits", "dequant", "peak"]
FEATURES: tuple[Feature, ...] = ("logits", "dequant", "peak")
GRIDS: dict[Feature, list[float]] = {"logits": B_GRID, "dequant": C_GRID, "peak": D_GRID}


def _candidates(pts: list[Point], features: tuple[Feature, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Every (b, c, d) on the grids (a feature left out stays 0) and, per candidate and run, the slack's
    variable part on the run's *measured* peak (the fit sees the allocator alone)."""
    grids = [GRIDS[f] if f in features else [0.0] for f in FEATURES]
    coefs = np.array(list(itertools.product(*grids)))  # m x 3
    feats = np.array([[p.logits, p.dequant, p.measured_peak] for p in pts], dtype=np.float64)  # n x 3
    return coefs, np.floor(coefs @ feats.T)


def _slack(a: float, coefs: np.ndarray, j: int) -> Slack:
    b, c, d = (float(x) for x in coefs[j])
    return Slack(int(a), b, c, d)


def fit(points: Iterable[Point], floor: float = FLOOR, features: tuple[Feature, ...] = FEATURES) -> Slack:
    pts = list(points)
    exact = np.array([p.exact for p in pts])
    if not exact.any():
        raise ValueError("no --find-min runs to fit on")
    base = np.array([p.measured_peak for p in pts], dtype=np.float64)
    req = np.array([p.required for p in pts], dtype=np.float64)
    coefs, var = _candidates(pts, features)  # var: m x n, the slack's variable part per candidate and run
    # least a with (measured peak + a + var) / required - 1 >= floor for every exact run
    need = np.floor((1 + floor) * req) + 1 - base - var
    a = np.maximum(0.0, np.max(np.where(exact, need, -np.inf), axis=1))
    err = (base + a[:, None] + var) / req - 1
    cost = np.abs(err[:, exact]).mean(axis=1)
    if (~exact).any():
        cost = cost + np.maximum(err[:, ~exact], 0).mean(axis=1)
    j = int(np.argmin(cost))  # the first of equal costs: the smallest coefficients
    return _slack(a[j], coefs, j)


def fit_low(points: Iterable[Point], features: tuple[Feature, ...] = FEATURES) -> Slack:
    """The best-placement slack (``LOW_SLACK``): over the --find-min runs only, the greatest ``a`` with
    measured peak + a + b x logits + c x dequant at or below the measured requirement of every one, ``b``
    and ``c`` (same grids) with the least mean |error|. The requirement of a run can move by a logits-sized
    segment when its tensors change by a fraction of a percent (``trace_sensitivity.py``); this is the
    requirement when the allocator places them well, as the upper fit (:func:`fit`) is when it does not."""
    pts = [p for p in points if p.exact]
    if not pts:
        raise ValueError("no --find-min runs to fit on")
    base = np.array([p.measured_peak for p in pts], dtype=np.float64)
    req = np.array([p.required for p in pts], dtype=np.float64)
    coefs, var = _candidates(pts, features)
    a = np.min(req - base - var, axis=1)  # greatest a that leaves no run above its requirement
    err = (base + a[:, None] + var) / req - 1
    cost = np.where(a >= 0, np.abs(err).mean(axis=1), np.inf)
    j = int(np.argmin(cost))
    return _slack(a[j], coefs, j)


@dataclass(frozen=True)
class HeldOut:
    family: str
    fit: Slack  # fitted without the family
    n_fit: int
    errors: tuple[tuple[str, float], ...]  # (run, error of the requirement) for the family's exact runs
    above_bound: tuple[tuple[str, float], ...]  # (run, how far above its reserved peak) for its other runs
    low_fit: Slack | None = None  # fit_low without the family
    low_errors: tuple[tuple[str, float], ...] = ()  # (run, error of the best-placement requirement)


def leave_one_family_out(
    points: Iterable[Point], floor: float = FLOOR, features: tuple[Feature, ...] = FEATURES
) -> list[HeldOut]:
    """Refit without each family in turn (families with no --find-min run are held out too: only their
    bounds can be checked)."""
    pts = list(points)
    out = []
    for fam in sorted({p.family for p in pts}):
        train = [p for p in pts if p.family != fam]
        s, low = fit(train, floor, features), fit_low(train, features)
        mine = [p for p in pts if p.family == fam]
        out.append(HeldOut(
            fam, s, len(train),
            tuple((p.name, s.error(p)) for p in mine if p.exact),
            tuple((p.name, s.error(p)) for p in mine if not p.exact and s.error(p) > 0),
            low, tuple((p.name, low.error(p)) for p in mine if p.exact),
        ))  # fmt: skip
    return out


COMMAND = "python -m benchmarks.slack_fit"
DATA_FILE = Path(__file__).resolve().parents[1] / "vramfit" / "data" / "allocator_fit.json"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.accuracy.fit import fit_record, measurements
    from benchmarks.accuracy.runs import RESULTS, add_vramfit, load_runs

    ap = argparse.ArgumentParser(description="Fit the allocator slack and write the data file vramfit reads.")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of h100_*.json probe results")
    ap.add_argument("--out", type=Path, default=DATA_FILE, help="the data file to write")
    args = ap.parse_args(argv)
    runs = load_runs(args.results)
    if not runs:
        raise SystemExit(f"slack_fit: no measured runs under {args.results}")
    add_vramfit(runs)
    record = {
        "about": "The caching allocator's slack above the allocated peak, fitted on probe measurements "
        "(base + per_fp32_logits x fp32 logits + per_dequantized_weight x one dequantized weight "
        "+ per_allocated_peak x the allocated peak).",
        "command": COMMAND,
        "written": date.today().isoformat(),
        "measurements": measurements(runs, args.results),
        **fit_record(runs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out} from {len(runs)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
