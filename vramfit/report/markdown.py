"""A compact Markdown report for a GitHub issue or pull-request comment, with a PNG chart beside it.

``write_markdown(result, "run.md")`` writes ``run.md`` and ``run.png`` (the stacked breakdown bar)
and links the picture by its file name, so both can be attached together. Text from users is
escaped for tables (``|``) and for GitHub's HTML (``<``, ``>``, ``&``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from vramfit.estimate.result import COMPONENTS
from vramfit.report import tables as T
from vramfit.units import format_bytes


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


def render_markdown(result: object, chart: str | None = None) -> str:
    """The Markdown text; ``chart`` is the relative path of the PNG to link (or None for none)."""
    from vramfit import __version__

    d = T.result_json(result)
    part = T.estimate_part(d)
    model = T.model_name(d)
    lines: list[str] = []
    if not part:
        lines.append(f"### vramfit plan: {md_escape(model)}: no configuration fits")
    else:
        req = T.required_bytes(part)
        verdict = part.get("verdict")
        m = d.get("measured") if d["kind"] == "probe" else None
        if m and isinstance(m.get("required_vram_bytes"), int):
            req = m["required_vram_bytes"]
            if verdict:
                usable = int(verdict.get("usable_bytes", verdict.get("capacity_bytes", 0)))
                verdict = {**verdict, "fits": req <= usable, "headroom_bytes": usable - req}
        what = {"estimate": "estimate", "probe": "measured", "plan": "plan"}[d["kind"]]
        lines.append(f"### vramfit {what}: {md_escape(model)}: {md_escape(T.verdict_line(verdict, req))}")
        lines.append("")
        lines.append(f"*{md_escape(T.config_summary(part.get('config') or {}))}*")
        if m and m.get("oom"):
            lines += [
                "",
                f"**Out of memory** in {md_escape(m['oom'].get('phase', '?'))}: {md_escape(m['oom'].get('message', ''))}",
            ]
        lines.append("")
        est = dict(T.stack_segments(part))
        mea = dict(T.stack_segments(m)) if m else {}
        if m:
            lines += ["| component | estimate | measured | difference |", "|---|--:|--:|--:|"]
        else:
            lines += ["| component | estimate |", "|---|--:|"]
        for name in (*COMPONENTS, T.SLACK, T.CONTEXT, T.PAGED):
            row = f"| {T.segment_label(name)} | {_b(est[name])} |"
            if m:
                row += f" {_b(mea[name])} | {_delta(est[name], mea[name])} |"
            lines.append(row)
        total = f"| **required VRAM** | **{_b(T.required_bytes(part))}** |"
        if m:
            total += (
                f" **{_b(T.required_bytes(m))}** | {_delta(T.required_bytes(part), T.required_bytes(m))} |"
            )
        lines.append(total)
        peak_src = m or part
        lines += [
            "",
            f"Peak allocated {_b(peak_src.get('peak_allocated_bytes'))} in {md_escape(peak_src.get('peak_phase', '?'))}.",
        ]
        if chart:
            lines += ["", f"![memory breakdown]({chart})"]
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
    no_fit = d.get("no_fit") if not part else None
    if isinstance(no_fit, dict):
        lines += ["", *[f"- {md_escape(r)}" for r in no_fit.get("reasons") or []]]
    warns = [
        *(d.get("warnings") or []),
        *((part or {}).get("warnings") or []),
        *(d.get("probe_warnings") or []),
    ]
    warns = list(dict.fromkeys(str(w) for w in warns))
    if warns:
        lines += ["", "**Warnings**", "", *[f"- {md_escape(w)}" for w in warns]]
    details = []
    cfg = (part or {}).get("config") or {}
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
    if part:
        png = path.with_suffix(".png")
        cols = [("estimate", T.stack_segments(part))]
        if d["kind"] == "probe" and d.get("measured"):
            cols.append(("measured", T.stack_segments(d["measured"])))
        verdict = part.get("verdict") or {}
        fig = charts.breakdown_chart(cols, verdict.get("capacity_bytes"), verdict.get("usable_bytes"))
        charts.to_png(fig, png)
        written.append(str(png))
        chart = quote(png.name)
    path.write_text(render_markdown(d, chart), encoding="utf-8")
    return [str(path), *written]
