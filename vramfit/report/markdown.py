"""A compact Markdown report for a GitHub issue or pull-request comment, with a PNG chart beside it.

``write_markdown(result, "run.md")`` writes ``run.md`` and ``run.png`` (the stacked breakdown bar)
and links the picture by its file name (a link, not an image: pasted into an issue it does not show
broken; the text says how to attach the PNG). Text from users is
escaped for tables (``|``) and for GitHub's HTML (``<``, ``>``, ``&``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from vramfit.estimate.result import COMPONENTS
from vramfit.report import tables as T
from vramfit.units import format_bytes
from vramfit.userfiles import write_output

if TYPE_CHECKING:
    from vramfit.estimate.result import Estimate
    from vramfit.plan.result import PlanResult
    from vramfit.probe.result import Measured
    from vramfit.report.tables import Result


def md_escape(x: object) -> str:
    s = str(x).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\|`*_[]":
        s = s.replace(ch, "\\" + ch)
    return s.replace("\n", " ")


def _b(n: object) -> str:
    return format_bytes(int(n)) if isinstance(n, int) and not isinstance(n, bool) else "–"


def _delta(a: int, b: int) -> str:
    d = b - a
    return ("+" if d > 0 else "−" if d < 0 else "±") + format_bytes(abs(d))


def _headline(r: Result, part: Estimate | None, meas: Measured | None) -> list[str]:
    """The heading: the shared verdict sentence (vramfit.report.verdict)."""
    model, kind = T.model_name(r), T.kind_of(r)
    if kind == "plan" and not r.fits:
        smallest = f"; the smallest needs {_b(T.required_bytes(part))}" if part else ""
        return [f"### vramfit plan: {md_escape(model)}: no configuration fits{smallest}"]
    if meas is not None:
        line = T.verdict_line(r, T.required_bytes(meas))
        return [f"### vramfit measured: {md_escape(model)}: {md_escape(line)}"]
    if part is not None:
        line = T.verdict_line(r, T.required_bytes(part))
        return [f"### vramfit {kind}: {md_escape(model)}: {md_escape(line)}"]
    return [f"### vramfit {kind}: {md_escape(model)}: no memory numbers"]


def _columns(part: Estimate | None, meas: Measured | None) -> list[tuple[str, Estimate | Measured]]:
    return [(label, p) for label, p in (("estimate", part), ("measured", meas)) if p is not None]


def _breakdown_rows(cols: list[tuple[str, Estimate | Measured]]) -> list[str]:
    values = [dict(T.stack_segments(p)) for _, p in cols]
    both = len(cols) == 2
    head = (
        "| component | " + " | ".join(label for label, _ in cols) + " |" + (" difference |" if both else "")
    )
    lines = ["", head, "|---|" + "--:|" * (len(cols) + both)]
    names = [*COMPONENTS, *([T.UNATTRIBUTED] if any(v.get(T.UNATTRIBUTED) for v in values) else [])]
    for name in (*names, T.SLACK, T.CONTEXT, T.PAGED):
        nums = [v.get(name, 0) for v in values]
        row = f"| {T.segment_label(name)} | " + " | ".join(_b(n) for n in nums) + " |"
        lines.append(row + (f" {_delta(nums[0], nums[1])} |" if both else ""))
    reqs = [T.required_bytes(p) for _, p in cols]
    total = "| **required VRAM** | " + " | ".join(f"**{_b(r)}**" for r in reqs) + " |"
    return [*lines, total + (f" {_delta(reqs[0], reqs[1])} |" if both else "")]


def _breakdown_lines(part: Estimate | None, meas: Measured | None, chart: str | None) -> list[str]:
    cols = _columns(part, meas)
    if not cols:
        return []
    src = cols[-1][1]
    phase = src.peak_phase if src.peak_phase is not None else "?"
    lines = [
        *_breakdown_rows(cols),
        "",
        f"Peak allocated {_b(src.peak_allocated_bytes)} in {md_escape(phase)}.",
    ]
    if chart:
        # A link, not an image: pasted into an issue, an image of a file GitHub does not have shows
        # broken, while the tables above carry every number of the chart.
        name = md_escape(unquote(chart))
        lines += [
            "",
            f"Chart: [{name}]({chart}), beside this file. In a GitHub issue or comment, drag {name} into "
            "the comment box: GitHub uploads it and inserts it as an image.",
        ]
    return lines


def _plan_lines(r: PlanResult) -> list[str]:
    lines: list[str] = []
    if r.alternatives:
        lines += [
            "",
            "**Alternatives**",
            "",
            "| configuration | required VRAM | trade-off |",
            "|---|--:|---|",
        ]
        for a in r.alternatives:
            lines.append(
                f"| {md_escape(T.config_summary(a.estimate.config))} | {_b(a.required_bytes)} "
                f"| {md_escape(T.trade_text(a))} |"
            )
    if r.knob_prices:
        lines += ["", "**What each knob costs**", "", "| knob | change | required VRAM |", "|---|---|--:|"]
        for k in r.knob_prices:
            lines.append(
                f"| {md_escape(k.knob)} | {md_escape(T.knob_change(k))} | {_delta(0, k.delta_bytes)} |"
            )
    if not r.fits and r.no_fit is not None:
        lines += ["", *[f"- {md_escape(reason)}" for reason in r.no_fit.reasons]]
    return lines


def _details_lines(r: Result, part: Estimate | None) -> list[str]:
    details = []
    cfg = T.config_of(r, part)
    if cfg:
        details += [
            "| setting | value |",
            "|---|---|",
            *[f"| {md_escape(k)} | {md_escape(v)} |" for k, v in T.config_rows(cfg)],
        ]
    env = T.environment_rows(T.environment_of(r))
    if env:
        details += [
            "",
            "| environment | |",
            "|---|---|",
            *[f"| {md_escape(k)} | {md_escape(v)} |" for k, v in env],
        ]
    if not details:
        return []
    return ["", "<details><summary>configuration and environment</summary>", "", *details, "", "</details>"]


def render_markdown(result: object, chart: str | None = None) -> str:
    """The Markdown text of a result (typed, or its saved JSON); ``chart`` is the relative path of the
    PNG to link (or None for none)."""
    from vramfit import __version__

    r = T.typed(result)
    part, meas = T.estimate_part(r), T.measured_part(r)
    lines = _headline(r, part, meas)
    summary = T.config_summary(T.config_of(r, part))
    if summary:
        lines += ["", f"*{md_escape(summary)}*"]
    oom = r.measured.oom if T.kind_of(r) == "probe" else None
    if oom:
        lines += ["", f"**Out of memory** in {md_escape(oom.phase)}: {md_escape(oom.message)}"]
    lines += _breakdown_lines(part, meas, chart)
    if T.kind_of(r) == "plan":
        lines += _plan_lines(r)
    warns = T.warnings_of(r, part, notes=False)
    if warns:
        lines += ["", "**Warnings**", "", *[f"- {md_escape(w)}" for w in warns]]
    lines += _details_lines(r, part)
    lines += ["", f"<sub>vramfit {md_escape(__version__)}; binary units (1 GiB = 2^30 bytes)</sub>", ""]
    return "\n".join(lines)


def write_markdown(result: object, path: str | Path) -> list[str]:
    """Write the Markdown file and its PNG chart (same name, ``.png``); return the paths written."""
    from vramfit.report import charts

    path = Path(path)
    r = T.typed(result)
    part = T.estimate_part(r)
    written = []
    chart = None
    cols = _columns(part, T.measured_part(r))
    if cols:
        png = chart_path(path)
        _, capacity, usable = T.card_of(r, part)
        fig = charts.breakdown_chart([(label, T.stack_segments(p)) for label, p in cols], capacity, usable)
        charts.to_png(fig, png)
        written.append(str(png))
        chart = quote(png.name)
    write_output(path, render_markdown(r, chart), "--markdown")
    return [str(path), *written]


def chart_path(path: str | Path) -> Path:
    """The PNG chart written beside the Markdown report ``path``."""
    return Path(path).with_suffix(".png")
