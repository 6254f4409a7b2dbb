"""``--html FILE`` and ``--markdown FILE``: the report flags of ``estimate``, ``plan`` and ``probe``.

A command adds them with :func:`add_report_flags` and, once it has its result object, calls
:func:`write_reports` and prints the paths it returns.
"""

from __future__ import annotations

import argparse

from vramfit.errors import InputError


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


def write_reports(args: argparse.Namespace, result: object) -> list[str]:
    """Write the reports the flags ask for (an Estimate, a plan result, a probe result, or their JSON
    dicts; the kind is read from its JSON); return the paths written, [] when no flag was given."""
    html_path = getattr(args, "html", None)
    md_path = getattr(args, "markdown", None)
    if not html_path and not md_path:
        return []
    from vramfit.report import result_json, write_html, write_markdown

    data = result_json(result)
    written: list[str] = []
    for flag, path, write in (("--html", html_path, write_html), ("--markdown", md_path, write_markdown)):
        if not path:
            continue
        try:
            written += write(data, path)
        except OSError as e:
            raise InputError(flag, f"cannot write {path}: {e.strerror or e}") from None
    return written
