"""reports/accuracy.html, self-contained: inline CSS and SVG, no script (vramfit.report.html: its CSS and
escaping)."""

from __future__ import annotations

from . import sensitivity
from .charts import component_chart, family_chart, scatter_chart
from .fit import bound_errors
from .markdown import RANGE_TEXT, held_out_range, method_notes, sensitivity_text
from .report import Report
from .runs import TOOL_LABEL, exact_runs
from .summary import summarize
from .tables import (
    COMPONENT_HEAD,
    FAMILY_HEAD,
    HELD_OUT_HEAD,
    RANGE_HEAD,
    RUN_HEAD,
    SUMMARY_HEAD,
    component_rows,
    family_rows,
    fitcheck_rows,
    held_out_all,
    held_out_rows,
    pct,
    range_rows,
    run_rows,
    summary_rows,
)

EXTRA_CSS = """
main{max-width:1180px}
.tw{overflow-x:auto}
table.data{font-size:12px}
table.data td{white-space:nowrap}
table.data td.wrap{white-space:normal;min-width:260px}
td.good{color:var(--ok)} td.warn{color:var(--warn)} td.bad{color:var(--bad);font-weight:600}
.lede{color:var(--muted);margin:0 0 14px}
ul.notes{margin:0;padding-left:18px} ul.notes li{margin:4px 0}
"""


def _err_class(text: str) -> str:
    try:
        x = float(text.split()[0])
    except (ValueError, IndexError):
        return ""
    return "good" if abs(x) <= 5 else "warn" if abs(x) <= 20 else "bad"


def _html_table(
    head: list[str], rows: list[list[str]], wrap: tuple[int, ...] = (), code: tuple[int, ...] = ()
):
    from vramfit.report.html import _e

    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = []
    for row in rows:
        cells = []
        for i, x in enumerate(row):
            x = str(x)
            text = f"<code>{_e(x.strip('`'))}</code>" if i in code else _e(x).replace("&lt;br&gt;", "<br>")
            cls = "wrap" if i in wrap else ("n " + _err_class(x)) if x.endswith("%") else ""
            cells.append(f'<td class="{cls}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="tw"><table class="data"><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _md_inline(text: str) -> str:
    """The few Markdown marks of the notes (`code`, **bold**) as HTML, after escaping."""
    import re

    from vramfit.report.html import _e

    t = _e(text.removeprefix("- "))
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)


def _stats(rep: Report) -> list[str]:
    """The headline figures: each tool's peak allocated error, vramfit's held-out and find-min requirement."""
    from vramfit.report.html import _e, _stat

    h, (low, high) = held_out_all(rep), held_out_range(rep)
    stats = []
    for t in ("vramfit", "fitcheck", "accelerate_fp16"):
        s = rep.summary(t, "peak")
        stats.append(_stat(f"{TOOL_LABEL[t]}: peak allocated", _e(pct(s.median) if s else "n/a"),
                           _e(f"median; mean |error| {s.mean_abs * 100:.1f} %, worst {pct(s.worst)}") if s
                           else _e(rep.problems.get(t.split("_")[0]) or "")))  # fmt: skip
    stats.append(_stat("vramfit: required, held out", _e(f"{h.mean_abs * 100:.1f} %"),
                       _e(f"mean |error| by family; {low} to {high}")))  # fmt: skip
    ex = [r.error("vramfit", "required") for r in exact_runs(rep.runs)]
    if ex:
        stats.append(_stat("vramfit: required, find-min runs", _e(f"{summarize(ex).mean_abs * 100:.1f} %"),
                           _e(f"mean |error| on {len(ex)} runs; {pct(min(ex))} to {pct(max(ex))}")))  # fmt: skip
    return stats


def _provenance_rows(rep: Report) -> list[list[str]]:
    env, pv = rep.provenance["env"], rep.provenance
    return [
        ["GPU", ", ".join(env["gpu"])],
        ["driver / CUDA / cc", f"{', '.join(env['driver'])} / {', '.join(env['cuda'])} / "
         f"{', '.join(env['compute_capability'])}"],
        ["measured with", ", ".join(f"{k} {', '.join(env[k])}" for k in
                                     ("torch", "transformers", "peft", "bitsandbytes", "python", "vramfit"))],
        ["measurements committed", (", ".join(pv["dates"]) or "unknown") + " (files record no timestamp)"],
        ["predictions computed with", ", ".join(f"{k} {x or 'not installed'}" for k, x in rep.versions.items())],
        ["calibration command", "<br>".join(pv["calib_commands"])],
        ["grid command", "<br>".join(pv["grid_commands"])],
    ]  # fmt: skip


def _header(rep: Report) -> str:
    from vramfit.report.html import _e

    env = rep.provenance["env"]
    return (
        '<header><div><div class="brand">vramfit accuracy</div>'
        "<h1>Predicted vs measured GPU memory</h1>"
        f'<p class="sub">{len(rep.runs)} training runs, {len({r.model for r in rep.runs})} models, '
        f"{len({r.family for r in rep.runs})} families, measured on {_e(', '.join(env['gpu']))}; "
        "vramfit, fitcheck-llm and accelerate estimate-memory on the same configurations.</p></div>"
        '<span class="kind">python -m benchmarks.accuracy_report</span></header>'
    )


def _chart_sections(rep: Report) -> list[str]:
    """Predicted against measured, the summary, the errors by family and by component, with their charts."""
    from vramfit.report import charts as C

    return [
        "<section><h2>Predicted vs measured</h2>"
        f"{C.to_svg(scatter_chart(rep), 'predicted against measured, log axes')}"
        '<p class="note">Log axes. Grey band: ±5 %. Required excludes the CUDA context (not measured for the '
        "grid runs, which shared the GPU). accelerate prices full fine-tuning with Adam of the base model "
        "whatever the configuration; it has no figure for int4 / int8, hence the float16 row.</p></section>",
        "<section><h2>Summary</h2>" + _html_table(SUMMARY_HEAD, summary_rows(rep)) + "</section>",
        "<section><h2>Errors by model family</h2>"
        f"{C.to_svg(family_chart(rep), 'predicted over measured by family')}"
        '<p class="note">Small marks: runs; large marks: family median. Log scale of predicted / measured; grey band ±5 %. accelerate is in the table only (its figures are 2 to 10 times the measurement).</p>'
        + _html_table(FAMILY_HEAD, family_rows(rep))
        + "</section>",
        "<section><h2>vramfit by component</h2>"
        '<p class="lede">Estimate minus the probe\'s attribution of live memory at the measured peak, over '
        "the runs that kept a snapshot. Gradients, activations, logits and temporaries trade places within a "
        "phase; their sum is compared too.</p>"
        f"{C.to_svg(component_chart(rep), 'estimate minus measured by component')}"
        + _html_table(COMPONENT_HEAD, component_rows(rep))
        + "</section>",
    ]


def _held_out_section(rep: Report) -> str:
    h, (low, high) = held_out_all(rep), held_out_range(rep)
    total = [
        "all held out", str(h.n), "", "", pct(h.median), f"{h.mean_abs * 100:.1f} %", low, high,
        f"{sum(len(x.above_bound) for x in rep.held_out)} of {len(bound_errors(rep.runs))}",
    ]  # fmt: skip
    return (
        "<section><h2>Held out: the fitted allocator slack, leave one family out</h2>"
        '<p class="lede"><strong>Fitted</strong>: the slack <code>a + b × fp32 logits + c × one dequantized '
        "weight</code> with the least mean |error| on the find-min runs of every other family (none more "
        "than 0.5 % under) plus the mean excess over the reserved peak of their other runs. "
        "<strong>Held out</strong>: the error of vramfit's <code>allocator_required_bytes</code> (estimated "
        "peak + that slack) on the find-min runs of the family left out, and how many of its other runs it "
        "puts above their reserved peak. Target: mean |error| ≤ 2 %, worst ≤ 5 %, nothing below −2 %.</p>"
        + _html_table(HELD_OUT_HEAD, held_out_rows(rep) + [total])
        + "</section>"
    )


def _range_section(rep: Report) -> str:
    return (
        "<section><h2>The requirement as a range</h2>"
        + f'<p class="lede">{_md_inline(RANGE_TEXT)}</p>'
        + _html_table(RANGE_HEAD, [[c.strip("*") for c in row] for row in range_rows(rep)])
        + (
            f'<p class="lede">{_md_inline(sensitivity_text(rep.sensitivity))}</p>'
            + _html_table(sensitivity.HEAD, sensitivity.rows(rep.sensitivity))
            if rep.sensitivity
            else ""
        )
        + "</section>"
    )


def _run_sections(rep: Report) -> list[str]:
    """How each number is obtained, every run, how fitcheck-llm was called, provenance and commands."""
    return [
        "<section><h2>How each number is obtained</h2><ul class=notes>"
        + "".join(f"<li>{_md_inline(n)}</li>" for n in method_notes(rep))
        + "</ul></section>",
        "<section><h2>Every run: peak allocated</h2>"
        + _html_table(RUN_HEAD, run_rows(rep, "peak"), wrap=(2,))
        + "</section>",
        "<section><h2>Every run: required excluding the CUDA context</h2>"
        + _html_table(RUN_HEAD, run_rows(rep, "required"), wrap=(2,))
        + "</section>",
        "<section><h2>fitcheck-llm: how each run was mapped</h2>"
        + _html_table(
            ["run", "command", "not expressible", "error"], fitcheck_rows(rep), wrap=(1, 2), code=(1,)
        )
        + "</section>",
        "<section><h2>Provenance</h2>"
        + _html_table(["", ""], _provenance_rows(rep), wrap=(1,))
        + "<h3>Measurement commands</h3>"
        + _html_table(["run", "command"], [[r.name, r.command] for r in rep.runs], code=(1,))
        + "</section>",
    ]


def render_html(rep: Report) -> str:
    from vramfit.report.html import CSS, _e

    missing = "".join(f"<li>{_e(t)}: {_e(w)}</li>" for t, w in rep.problems.items() if w)
    body = [
        _header(rep),
        f'<div class="stats">{"".join(_stats(rep))}</div>',
        (f'<section><h2>Not available</h2><ul class="warn">{missing}</ul></section>' if missing else ""),
        *_chart_sections(rep),
        _held_out_section(rep),
        _range_section(rep),
        *_run_sections(rep),
        "<footer>vramfit accuracy report, regenerated from the committed measurements by "
        "<code>python -m benchmarks.accuracy_report</code>.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>vramfit accuracy</title><style>{CSS}{EXTRA_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
