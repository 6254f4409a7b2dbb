"""A compact Markdown report for a GitHub issue or pull-request comment, with a PNG chart beside it.

``write_markdown(result, "run.md")`` writes ``run.md`` and ``run.png`` (the stacked breakdown bar)
and links the picture by its file name (a link, not an image: pasted into an issue it does not show
broken; the text says how to attach the PNG). Text from users is
escaped for tables (``|``) and for GitHub's HTML (``<``, ``>``, ``&``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

from vramfit.estimate.result import COMPONENTS
from vramfit.report import tables as T
from vramfit.units import format_bytes
from vramfit.userfiles import write_output


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


def _headline(d: dict, part: dict | None, meas: dict | None) -> list[str]:
    """The heading: the shared verdict sentence (vramfit.report.verdict)."""
    model = T.model_name(d)
    lines: list[str] = []
    if d["kind"] == "plan" and not T.plan_fits(d):
        smallest = f"; the smallest needs {_b(T.required_bytes(part))}" if part else ""
        lines.append(f"### vramfit plan: {md_escape(model)}: no configuration fits{smallest}")
    elif meas is not None:
        line = T.verdict_line(d, T.required_bytes(meas))
        lines.append(f"### vramfit measured: {md_escape(model)}: {md_escape(line)}")
    elif part is not None:
        line = T.verdict_line(d, T.required_bytes(part))
        lines.append(f"### vramfit {d['kind']}: {md_escape(model)}: {md_escape(line)}")
    else:
        lines.append(f"### vramfit {d['kind']}: {md_escape(model)}: no memory numbers")
    return lines


def _breakdown_lines(part: dict | None, meas: dict | None, chart: str | None) -> list[str]:
    lines: list[str] = []
    cols = [(label, p) for label, p in (("estimate", part), ("measured", meas)) if p is not None]
    if cols:
        values = [dict(T.stack_segments(p)) for _, p in cols]
        both = len(cols) == 2
        head = (
            "| component | "
            + " | ".join(label for label, _ in cols)
            + " |"
            + (" difference |" if both else "")
        )
        lines += ["", head, "|---|" + "--:|" * (len(cols) + both)]
        names = [*COMPONENTS, *([T.UNATTRIBUTED] if any(v.get(T.UNATTRIBUTED) for v in values) else [])]
        for name in (*names, T.SLACK, T.CONTEXT, T.PAGED):
            nums = [v.get(name, 0) for v in values]
            row = f"| {T.segment_label(name)} | " + " | ".join(_b(n) for n in nums) + " |"
            lines.append(row + (f" {_delta(nums[0], nums[1])} |" if both else ""))
        reqs = [T.required_bytes(p) for _, p in cols]
        total = "| **required VRAM** | " + " | ".join(f"**{_b(r)}**" for r in reqs) + " |"
        lines.append(total + (f" {_delta(reqs[0], reqs[1])} |" if both else ""))
        src = cols[-1][1]
        lines += [
            "",
            f"Peak allocated {_b(src.get('peak_allocated_bytes'))} in {md_escape(src.get('peak_phase', '?'))}.",
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


def _plan_lines(d: dict) -> list[str]:
    lines: list[str] = []
    if d["kind"] == "plan":
        alts = [a for a in (d.get("alternatives") or []) if isinstance(a, dict)]
        if alts:
            lines += [
                "",
                "**Alternatives**",
                "",
                "| configuration | required VRAM | trade-off |",
                "|---|--:|---|",
            ]
            for a in alts:
                lines.append(
                    f"| {md_escape(T.config_summary(a.get('config') or {}))} | {_b(a.get('required_vram_bytes'))} "
                    f"| {md_escape(T.trade_text(a))} |"
                )
        knobs = [k for k in (d.get("knob_prices") or []) if isinstance(k, dict)]
        if knobs:
            lines += [
                "",
                "**What each knob costs**",
                "",
                "| knob | change | required VRAM |",
                "|---|---|--:|",
            ]
            for k in knobs:
                delta = int(k.get("delta_bytes") or 0)
                lines.append(
                    f"| {md_escape(k.get('knob', '?'))} | {md_escape(T.knob_change(k))} "
                    f"| {'+' if delta > 0 else '−' if delta < 0 else '±'}{format_bytes(abs(delta))} |"
                )
    no_fit = d.get("no_fit") if d["kind"] == "plan" and not T.plan_fits(d) else None
    if isinstance(no_fit, dict):
        lines += ["", *[f"- {md_escape(r)}" for r in no_fit.get("reasons") or []]]
    return lines


def _details_lines(d: dict) -> list[str]:
    lines: list[str] = []
    details = []
    cfg = T.config_of(d)
    if cfg:
        details += [
            "| setting | value |",
            "|---|---|",
            *[f"| {md_escape(k)} | {md_escape(v)} |" for k, v in T.config_rows(cfg)],
        ]
    env = T.environment_rows(d.get("environment"))
    if env:
        details += [
            "",
            "| environment | |",
            "|---|---|",
            *[f"| {md_escape(k)} | {md_escape(v)} |" for k, v in env],
        ]
    if details:
        lines += [
            "",
            "<details><summary>configuration and environment</summary>",
            "",
            *details,
            "",
            "</details>",
        ]
    return lines


def render_markdown(result: object, chart: str | None = None) -> str:
    """The Markdown text; ``chart`` is the relative path of the PNG to link (or None for none)."""
    from vramfit import __version__

    d = T.result_json(result)
    part = T.estimate_part(d)
    meas = T.measured_part(d)
    lines = _headline(d, part, meas)
    summary = T.config_summary(T.config_of(d))
    if summary:
        lines += ["", f"*{md_escape(summary)}*"]
    oom = (d.get("measured") or {}).get("oom") if d["kind"] == "probe" else None
    if oom:
        lines += [
            "",
            f"**Out of memory** in {md_escape(oom.get('phase', '?'))}: {md_escape(oom.get('message', ''))}",
        ]
    lines += _breakdown_lines(part, meas, chart)
    lines += _plan_lines(d)
    warns = [
        *(d.get("warnings") or []),
        *((part or {}).get("warnings") or []),
        *(d.get("probe_warnings") or []),
    ]
    warns = list(dict.fromkeys(str(w) for w in warns))
    if warns:
        lines += ["", "**Warnings**", "", *[f"- {md_escape(w)}" for w in warns]]
    lines += _details_lines(d)
    lines += ["", f"<sub>vramfit {md_escape(__version__)}; binary units (1 GiB = 2^30 bytes)</sub>", ""]
    return "\n".join(lines)


def write_markdown(result: object, path: str | Path) -> list[str]:
    """Write the Markdown file and its PNG chart (same name, ``.png``); return the paths written."""
    from vramfit.report import charts

    path = Path(path)
    d = T.result_json(result)
    part = T.estimate_part(d)
    written = []
    chart = None
    cols = [
        (label, p) for label, p in (("estimate", part), ("measured", T.measured_part(d))) if p is not None
    ]
    if cols:
        png = chart_path(path)
        verdict = T.verdict_of(d) or {}
        fig = charts.breakdown_chart(
            [(label, T.stack_segments(p)) for label, p in cols],
            verdict.get("capacity_bytes"),
            verdict.get("usable_bytes"),
        )
        charts.to_png(fig, png)
        written.append(str(png))
        chart = quote(png.name)
    write_output(path, render_markdown(d, chart), "--markdown")
    return [str(path), *written]


def chart_path(path: str | Path) -> Path:
    """The PNG chart written beside the Markdown report ``path``."""
    return Path(path).with_suffix(".png")
