"""``vramfit report RESULT.json -o FILE.html [--markdown FILE.md]``: a report from a saved result."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  vramfit estimate --model llama-3.2-1b --vram 6GB --json > run.json
  vramfit report run.json -o run.html
  vramfit report probe.json -o probe.html --markdown probe.md   # probe.md + probe.png for an issue
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="HTML / Markdown report of a saved estimate, plan or probe result",
        description="Write a self-contained HTML report (inline CSS and SVG charts, no network) and/or a "
        "Markdown report with a PNG chart from a result saved with --json (estimate, plan) or by the probe.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "result", metavar="RESULT.json", help="a saved result (estimate --json, plan --json, probe)"
    )
    p.add_argument("-o", "--output", "--html", dest="html", metavar="FILE.html",
                   help="HTML file to write [default: RESULT.html when --markdown is not given]")  # fmt: skip
    p.add_argument(
        "--markdown", metavar="FILE.md", help="Markdown file to write (its PNG chart goes beside it)"
    )
    p.add_argument("--no-sweep", dest="sweep", action="store_false",
                   help="leave out the memory-against-sequence-length chart (it re-runs the estimator)")  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vramfit.cli.report_flags import report_outputs
    from vramfit.errors import InputError
    from vramfit.report import load_result, typed, write_html, write_markdown
    from vramfit.userfiles import check_byte_fields, check_outputs

    data = load_result(args.result)  # a readable result first: RESULT.html is named after it
    html_path = args.html
    if not html_path and not args.markdown:
        html_path = str(Path(args.result).with_suffix(".html"))
    check_outputs(report_outputs(html_path, args.markdown, "--output"), [("RESULT", args.result)])
    check_byte_fields(data, "RESULT", args.result)
    written: list[str] = []
    try:
        result = typed(data)  # the saved JSON read into its record (Estimate, PlanResult, ProbeResult)
        if html_path:
            written += write_html(result, html_path, sweep=args.sweep)
        if args.markdown:
            written += write_markdown(result, args.markdown)
    except InputError:
        raise
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        IndexError,
        ZeroDivisionError,
        OverflowError,
    ) as e:
        # the file parsed and has the keys of a result, but a field holds what vramfit never writes there
        raise InputError(
            "RESULT",
            f"{args.result}: not a result as vramfit writes it (a field has the wrong type: "
            f"{type(e).__name__}: {str(e)[:80]}); save it again with --json",
        ) from None
    for w in written:
        print(f"wrote {w}")
    return 0
