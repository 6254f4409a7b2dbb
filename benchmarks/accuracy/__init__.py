"""The accuracy report of ``python -m benchmarks.accuracy_report`` (the command; its docstring says what is
compared and how), one job per module:

* ``runs``: the measured runs, one per configuration, and vramfit's estimate of each;
* ``peers``: fitcheck-llm and ``accelerate estimate-memory`` on the same runs (a local Hugging Face cache);
* ``fit``: vramfit's allocator slack fitted on the runs (``benchmarks/slack_fit.py``), in sample and held out;
* ``provenance``: the measuring environment, dates, commands and tool versions;
* ``summary``: error statistics;
* ``report``: ``Report`` and ``build``, everything above for one results folder;
* ``tables``: the tables as rows of text, shared by both renderings;
* ``markdown``, ``charts``, ``html``: accuracy.md, the SVG charts, accuracy.html.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .html import render_html
from .markdown import render_markdown
from .report import Report, build
from .runs import RESULTS, ROOT

__all__ = ["Report", "build", "main", "render_html", "render_markdown"]


def main(argv: list[str] | None = None, description: str | None = None) -> int:
    """The command line of ``python -m benchmarks.accuracy_report`` (``description``: its ``--help`` text)."""
    ap = argparse.ArgumentParser(description=description or __doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of h100_*.json probe results")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "reports", help="where accuracy.md/.html go")
    ap.add_argument("--no-fitcheck", action="store_true", help="leave fitcheck-llm out")
    args = ap.parse_args(argv)
    report = build(args.results, with_fitcheck=not args.no_fitcheck)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "accuracy.md").write_text(render_markdown(report))
    (args.out_dir / "accuracy.html").write_text(render_html(report))
    s = report.summary("vramfit", "peak")
    print(
        f"{len(report.runs)} runs; vramfit peak allocated median {s.median:+.2%}; "
        f"wrote {args.out_dir / 'accuracy.md'} and accuracy.html in {report.seconds:.1f} s"
    )
    return 0
