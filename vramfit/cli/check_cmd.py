"""``vramfit check``: memory-regression check of the configurations in vramfit.toml, for CI.

Exit codes: 0 every configuration within its tolerance and budget, 1 a regression or a budget
exceeded, 2 bad input (missing or corrupt files, unknown keys).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vramfit.errors import InputError

EXAMPLES = """examples:
  vramfit check --update                                  # record vramfit-baseline.json (commit it)
  vramfit check                                           # CI: compare with it, exit 1 on a regression
  vramfit check --tolerance 5% --budget 8GB --junit vramfit-junit.xml
  vramfit check --probe --baseline vramfit-baseline-probe.json   # on a GPU runner: measured numbers

vramfit.toml (see examples/vramfit.toml):
  model = "llama-3.2-1b"
  budget = "8GB"
  [configs.default]
  [configs.long]
  seq_len = 2048
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="CI check: configurations in vramfit.toml against a memory baseline and budgets",
        description="Estimate (or, with --probe, measure) every configuration in vramfit.toml and compare its "
        "required VRAM with the baseline and with its budget. Exit 0: all within; 1: a regression or a budget "
        "exceeded; 2: bad input. Only --update writes the baseline.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", default="vramfit.toml", metavar="FILE", help="configurations [default: vramfit.toml]"
    )
    p.add_argument("--baseline", default="vramfit-baseline.json", metavar="FILE",
                   help="baseline to compare with [default: vramfit-baseline.json]")  # fmt: skip
    p.add_argument("--tolerance", metavar="PCT",
                   help="allowed move against the baseline, e.g. 2%% or 0.02 [default: the file's, else 2%%]")  # fmt: skip
    p.add_argument(
        "--budget", metavar="SIZE", help="required-VRAM budget for configurations without their own, e.g. 8GB"
    )
    p.add_argument(
        "--probe", action="store_true", help="measure with the probe (CUDA GPU) instead of estimating"
    )
    p.add_argument(
        "--update", action="store_true", help="write the baseline from this run (the only way it is written)"
    )
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one testcase per configuration)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.set_defaults(run=run)


def _render(result, updating: bool) -> None:
    from rich.table import Table

    from vramfit.check import IMPROVED, NEW, OK, OVER_BUDGET, REGRESSION
    from vramfit.cli.render import console as make_console
    from vramfit.units import format_bytes

    styles = {OK: "green", NEW: "cyan", IMPROVED: "green", REGRESSION: "bold red", OVER_BUDGET: "bold red"}
    console = make_console()
    table = Table(
        title=f"vramfit check ({result.mode}s, tolerance {result.tolerance:.1%})", title_justify="left"
    )
    for col, just in (("configuration", "left"), ("model", "left"), ("baseline", "right"), ("now", "right"),
                      ("change", "right"), ("budget", "right"), ("status", "left")):  # fmt: skip
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in result.checks:
        base = format_bytes(c.baseline_bytes) if c.baseline_bytes is not None else "-"
        if c.delta_bytes is None:
            change = "-"
        elif c.delta_bytes == 0:
            change = "0"
        else:
            sign = "+" if c.delta_bytes > 0 else "-" if c.delta_bytes < 0 else "±"
            change = f"{sign}{format_bytes(abs(c.delta_bytes))} ({c.delta_fraction:+.1%})"
        budget = format_bytes(c.budget_bytes) if c.budget_bytes is not None else "-"
        st = styles.get(c.status, "")
        table.add_row(c.name, c.model, base, format_bytes(c.required_vram_bytes), change, budget,
                      f"[{st}]{c.status}[/{st}]")  # fmt: skip
    console.print(table)
    for c in result.checks:
        if updating and c.status in (NEW, IMPROVED, REGRESSION):
            continue  # the new baseline takes these numbers
        for m in c.messages:
            console.print(f"  {c.name}: {m}", markup=False)
    for name in result.removed:
        console.print(
            f"  {name}: in the baseline but not in the configuration file (dropped by --update)", markup=False
        )
    if result.version_changes:
        console.print(
            f"  versions changed since the baseline: {'; '.join(result.version_changes)}", markup=False
        )
    failed = [c.name for c in result.checks if c.failed]
    if failed and not updating:
        console.print(
            f"[bold red]FAIL[/bold red]: {len(failed)} of {len(result.checks)} configurations: {', '.join(failed)}"
        )
    elif not updating:
        console.print(f"[green]OK[/green]: {len(result.checks)} configurations within tolerance and budget")


def run(args: argparse.Namespace) -> int:
    import json

    from vramfit.check import (
        DEFAULT_TOLERANCE,
        check,
        junit_xml,
        load_baseline,
        load_check_file,
        parse_tolerance,
        write_baseline,
    )
    from vramfit.units import parse_size
    from vramfit.userfiles import check_outputs, write_output

    tolerance = parse_tolerance(args.tolerance) if args.tolerance is not None else None
    budget = parse_size(args.budget, flag="--budget") if args.budget is not None else None
    inputs = [("--config", args.config)] + ([] if args.update else [("--baseline", args.baseline)])
    outputs = [("--baseline", args.baseline)] if args.update else []  # --update writes it: its job
    check_outputs(outputs + [("--junit", args.junit)], inputs)
    spec = load_check_file(args.config)
    if tolerance is None:
        tolerance = spec.tolerance if spec.tolerance is not None else DEFAULT_TOLERANCE
    baseline = None
    if not args.update:
        baseline = load_baseline(args.baseline)
    elif Path(args.baseline).exists():
        # --update rewrites the file; the old one, when readable and of the same mode, shows what moves
        try:
            baseline = load_baseline(args.baseline)
        except InputError as e:
            print(f"vramfit check: replacing an unreadable baseline ({e})", file=sys.stderr)
        if baseline is not None and baseline.mode != ("probe" if args.probe else "estimate"):
            baseline = None
    result = check(spec.configs, baseline, tolerance, budget, probe=args.probe)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _render(result, args.update)
    if args.junit:
        write_output(args.junit, junit_xml(result), "--junit")
    if args.update:
        write_baseline(args.baseline, result.to_baseline())
        if not args.json:
            print(f"wrote {args.baseline} ({len(result.checks)} configurations)")
        # a new baseline accepts every move; budgets still hold
        return 1 if any(c.status == "over budget" for c in result.checks) else 0
    return 0 if result.ok else 1
