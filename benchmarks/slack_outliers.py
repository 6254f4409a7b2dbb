"""Per-run held-out errors of the fitted allocator slack, beside the run's features.

    python -m benchmarks.slack_outliers [--worst N]

Refits the slack leaving one model family out at a time (``benchmarks/slack_fit.py``, as the data file's
``required.held_out`` figures are made) and prints, for every --find-min run, the requirement's held-out
error with what the slack is fitted on (measured peak, fp32 logits, one dequantized weight) and what the
measured slack was, as a multiple of the fp32 logits and of the peak: which runs set the worst figures
and whether a logits-sized block explains them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from benchmarks import slack_fit
from vramfit.units import MiB


@dataclass(frozen=True)
class Row:
    name: str
    family: str
    error: float  # held-out error of the requirement vramfit prints
    point: slack_fit.Point
    config: dict

    @property
    def slack(self) -> int:
        """The measured slack above the measured peak."""
        return self.point.required - self.point.measured_peak


def held_out_rows(runs: list) -> list[Row]:
    """Every --find-min run with its held-out error, worst over-estimate first."""
    from benchmarks.accuracy.fit import slack_points

    points = slack_points(runs)
    by_name = {r.name: r for r in runs}
    point = {p.name: p for p in points}
    rows = [
        Row(name, h.family, err, point[name], by_name[name].config)
        for h in slack_fit.leave_one_family_out(points)
        for name, err in h.errors
    ]
    return sorted(rows, key=lambda r: -r.error)


HEADER = "error  run                                            peak MiB  slack MiB  logits MiB  slack/logits  logits/peak  config"


def row_text(r: Row) -> str:
    p, c = r.point, r.config
    cfg = (
        f"{c['method']} b{c['batch_size']} s{c['seq_len']} {'gc' if c['gradient_checkpointing'] else 'nogc'} "
        f"{c['optimizer']}"
    )
    return (
        f"{r.error * 100:+5.1f}  {r.name[:45]:45s}  {p.measured_peak / MiB:8.0f}  {r.slack / MiB:9.0f}  "
        f"{p.logits / MiB:10.0f}  {r.slack / p.logits:12.2f}  {p.logits / p.measured_peak:11.3f}  {cfg}"
    )


def main(argv: list[str] | None = None) -> int:
    from benchmarks.accuracy.runs import RESULTS, add_vramfit, load_runs

    ap = argparse.ArgumentParser(description="Per-run held-out errors of the allocator slack.")
    ap.add_argument("--worst", type=int, default=0, help="print only the N worst over- and under-estimates")
    args = ap.parse_args(argv)
    runs = load_runs(RESULTS)
    add_vramfit(runs)
    rows = held_out_rows(runs)
    if args.worst > 0 and len(rows) > 2 * args.worst:
        rows = rows[: args.worst] + rows[-args.worst :]
    print(HEADER)
    for r in rows:
        print(row_text(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
