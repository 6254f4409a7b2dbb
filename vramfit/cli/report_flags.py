"""``--html FILE`` and ``--markdown FILE``: the report flags of ``estimate``, ``plan`` and ``probe``.

A command adds them with :func:`add_report_flags` and, once it has its result object, calls
:func:`write_reports` and prints the paths it returns.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_report_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("reports")
    g.add_argument(
        "--html", metavar="FILE", help="also write a self-contained HTML report (charts inline) to FILE"
    )
    g.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write a Markdown report to FILE and its chart beside it (FILE.png)",
    )


def report_outputs(
    html: str | None, markdown: str | None, html_flag: str = "--html"
) -> list[tuple[str, str]]:
    """(flag, path) of every file the report flags write: the Markdown report's PNG chart too."""
    from vramfit.report.markdown import chart_path

    out = [(html_flag, html)] if html else []
    if markdown:
        out.append(("--markdown", markdown))
        if Path(markdown).name:  # "." is refused as a folder by check_outputs
            out.append(("--markdown", str(chart_path(markdown))))
    return out


def model_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, path) of the local files the command reads: --model's config.json, --weights."""
    import os

    found = []
    for flag, value in (
        ("--model", getattr(args, "model", None)),
        ("--weights", getattr(args, "weights", None)),
    ):
        path = os.path.expanduser(value) if value else ""
        if path and os.path.isdir(path) and flag == "--model":
            path = os.path.join(path, "config.json")
        if path and os.path.exists(path):
            found.append((flag, path))
    return found


def check_report_outputs(args: argparse.Namespace, *extra: tuple[str, str | None]) -> None:
    """Before any work: the reports (and ``extra`` outputs, e.g. --snapshot) overwrite no input and no
    other output, and their folders exist (:func:`vramfit.userfiles.check_outputs`)."""
    from vramfit.userfiles import check_outputs

    outputs = report_outputs(getattr(args, "html", None), getattr(args, "markdown", None))
    check_outputs([*outputs, *((f, p) for f, p in extra if p)], model_inputs(args))


def write_reports(args: argparse.Namespace, result: object) -> list[str]:
    """Write the reports the flags ask for (an Estimate, a PlanResult, a ProbeResult, or their JSON
    dicts, read into the typed record first); return the paths written, [] when no flag was given."""
    html_path = getattr(args, "html", None)
    md_path = getattr(args, "markdown", None)
    if not html_path and not md_path:
        return []
    from vramfit.report import typed, write_html, write_markdown

    data = typed(result)
    written: list[str] = []
    if html_path:
        written += write_html(data, html_path)
    if md_path:
        written += write_markdown(data, md_path)
    return written
