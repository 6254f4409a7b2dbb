"""One self-contained HTML file per result: inline CSS, charts as inline SVG, no script, no CDN.

Every piece of text that came from a user or a file (model names, configuration values, warnings,
GPU names, trade-offs) passes through :func:`html.escape`; only markup written here and SVG drawn by
matplotlib (whose own text it escapes) is inserted raw.
"""

from __future__ import annotations

import datetime as _dt
from html import escape
from typing import TYPE_CHECKING

from vramfit.estimate.result import COMPONENTS
from vramfit.report import tables as T
from vramfit.units import format_bytes

if TYPE_CHECKING:
    from vramfit.estimate.result import Estimate
    from vramfit.plan.result import NoFit, PlanResult
    from vramfit.probe.result import Measured, ProbeResult
    from vramfit.report.tables import Result

CSS = """
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9;--ok:#047857;--okbg:#ecfdf5;--bad:#b91c1c;
--badbg:#fef2f2;--info:#1d4ed8;--infobg:#eff6ff;--warnbg:#fffbeb;--warn:#92400e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",
Roboto,"Helvetica Neue",Arial,"DejaVu Sans",sans-serif}
main{max-width:1000px;margin:0 auto;padding:28px 24px 40px}
header{display:flex;justify-content:space-between;align-items:flex-end;gap:16px;margin-bottom:18px}
.brand{font-weight:700;letter-spacing:.04em;color:var(--info);font-size:13px;text-transform:uppercase}
h1{font-size:26px;margin:2px 0 2px;word-break:break-word}
.sub{color:var(--muted);margin:0}
.kind{display:inline-block;border:1px solid var(--line);background:#fff;border-radius:999px;padding:2px 10px;
font-size:12px;color:var(--muted);white-space:nowrap}
.banner{border-radius:10px;padding:14px 18px;margin:0 0 18px;font-size:17px;font-weight:600;border:1px solid}
.banner small{display:block;font-weight:400;font-size:13px;margin-top:2px}
.banner.ok{background:var(--okbg);color:var(--ok);border-color:#a7f3d0}
.banner.bad{background:var(--badbg);color:var(--bad);border-color:#fecaca}
.banner.info{background:var(--infobg);color:var(--info);border-color:#bfdbfe}
.banner.warn{background:#fffbeb;color:#92400e;border-color:#fde68a}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin-bottom:18px}
.stat{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.stat .v{font-size:22px;font-weight:700;font-variant-numeric:tabular-nums}
.stat .l{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.stat .d{color:var(--muted);font-size:12px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin-bottom:18px}
h2{font-size:16px;margin:0 0 10px}
h3{font-size:14px;margin:14px 0 6px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:18px;background:none;border:0;padding:0}
.grid2>div{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px}
@media (max-width:760px){.grid2{grid-template-columns:1fr}}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.03em}
td.n,th.n{text-align:right;white-space:nowrap}
tr.total td{font-weight:700;border-top:2px solid var(--ink);border-bottom:0}
tr.sub td{font-weight:600;background:#fafafa}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:7px;vertical-align:-1px}
.kv td:first-child{color:var(--muted);width:45%}
svg.chart{width:100%;height:auto;display:block;margin:4px 0 8px}
.note{color:var(--muted);font-size:12px;margin:6px 0 0}
ul.warn{margin:0;padding-left:18px}
ul.warn li{background:var(--warnbg);color:var(--warn);margin:4px 0;padding:4px 8px;border-radius:6px;list-style:none}
.pos{color:var(--bad)} .neg{color:var(--ok)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:8px}
details summary{cursor:pointer;color:var(--muted)}
"""

KIND_TITLES = {"estimate": "Estimate", "probe": "Measurement (probe)", "plan": "Plan"}


def _e(x: object) -> str:
    return escape(str(x), quote=True)


def _b(n: int | None) -> str:
    return "&ndash;" if n is None else _e(format_bytes(int(n)))


def _signed(n: int) -> str:
    s = format_bytes(abs(n))
    cls = "pos" if n > 0 else "neg" if n < 0 else ""
    return f'<span class="{cls}">{"+" if n > 0 else "&minus;" if n < 0 else "&plusmn;"}{_e(s)}</span>'


def _kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _table(head: list[str], rows: list[list[str]], numeric: tuple[int, ...] = ()) -> str:
    """A plain table: ``head`` as text, ``rows`` of cells already escaped; ``numeric`` columns right-aligned."""

    def cls(i: int) -> str:
        return " class=n" if i in numeric else ""

    th = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _stat(label: str, value: str, detail: str = "") -> str:
    d = f'<div class="d">{detail}</div>' if detail else ""
    return f'<div class="stat"><div class="l">{_e(label)}</div><div class="v">{value}</div>{d}</div>'


def _swatch(name: str) -> str:
    from vramfit.report.charts import COLORS

    return f'<span class="sw" style="background:{COLORS.get(name, "#999")}"></span>'


# ---- sections ------------------------------------------------------------------------------------


_BANNER_CLASS = {"fits": "ok", "may fit": "warn", "does not fit": "bad"}


def _no_fit_banner(r: Result, part: Estimate | None) -> str:
    gpu, capacity, _ = T.card_of(r, part)
    card = gpu or (_b(capacity) if capacity else "")
    detail = (
        f"The smallest configuration needs {_b(T.required_bytes(part))}; below: why, and what would fit."
        if part
        else "Below: why, and what would fit."
    )
    return f'<div class="banner bad">No configuration fits {card}<small>{detail}</small></div>'


def _probe_banner(m: Measured, meas: Measured | None) -> str | None:
    """The banners of a probe without a verdict to state: out of memory, or no memory numbers."""
    if m.oom is not None:
        from vramfit.report.verdict import oom_words

        words = oom_words(m.oom, m.cap_bytes)
        return f'<div class="banner bad">{_e(words[0].upper() + words[1:])}<small>{_e(m.oom.message)}</small></div>'
    if meas is None:
        return (
            '<div class="banner info">Pipeline check without memory numbers'
            f"<small>The probe ran on {_e(m.device or 'a device')}; only a CUDA run measures memory.</small></div>"
        )
    return None


def _banner(r: Result, part: Estimate | None, meas: Measured | None) -> str:
    kind = T.kind_of(r)
    if kind == "plan" and not r.fits:
        return _no_fit_banner(r, part)
    if kind == "probe":
        special = _probe_banner(r.measured, meas)
        if special:
            return special
    words = T.verdict_words(r)
    cls = _BANNER_CLASS[words.status] if words else "info"
    line = T.verdict_line(r, T.required_bytes(meas if kind == "probe" else part))
    if kind == "probe":
        return f'<div class="banner {cls}">Measured: {_e(line)}</div>'
    if kind == "plan":
        return f'<div class="banner {cls}">Recommended run {_e(line)}</div>'
    return f'<div class="banner {cls}">{_e(line[0].upper() + line[1:])}</div>'


def _required_stat(part: Estimate | None, meas: Measured | None) -> str | None:
    """The first figure: the measured requirement (against the estimate), or the estimated one."""
    if meas is not None:
        mreq = T.required_bytes(meas)
        if part:
            est_req = T.required_bytes(part)
            err = (est_req - mreq) / mreq if mreq else 0.0
            detail = f"estimate {_b(est_req)} ({err * 100:+.1f}%)"
        else:
            detail = "allocator + non-PyTorch"
        if meas.allocator_required_bytes is None:
            detail += "; from peak reserved"
        return _stat("required VRAM (measured)", _b(mreq), detail)
    if part:
        low = part.required_vram_low_bytes
        detail = "allocator-required + non-PyTorch"
        if low < T.required_bytes(part):
            detail += f"; {_b(low)} if the allocator places the logits well"
        return _stat("required VRAM", _b(T.required_bytes(part)), detail)
    return None


def _stats(part: Estimate | None, meas: Measured | None) -> str:
    first = _required_stat(part, meas)
    cards = [first] if first else []
    src = meas or part
    if src:
        phase = src.peak_phase if src.peak_phase is not None else "?"
        cards.append(_stat("peak allocated", _b(src.peak_allocated_bytes), f"in {_e(phase)}"))
        cards.append(_stat("peak reserved", _b(src.peak_reserved_bytes), "PyTorch caching allocator"))
    if part and part.total_params:
        tp, total = part.trainable_params, part.total_params
        cards.append(
            _stat(
                "trainable parameters",
                _e(f"{tp / 1e6:,.1f} M"),
                _e(f"{tp / total:.2%} of {total / 1e9:.2f} B"),
            )
        )
    if meas and meas.step_seconds is not None:
        cards.append(_stat("step time", _e(f"{meas.step_seconds:.2f} s"), "measured, one optimizer step"))
    return f'<div class="stats">{"".join(cards)}</div>' if cards else ""


def _breakdown_table(cols: list[tuple[str, list[tuple[str, int]]]], srcs: list[Estimate | Measured]) -> str:
    """The breakdown's table: a row per segment, a column per source (and their difference)."""
    values = [dict(segs) for _, segs in cols]
    heads = "<th>component</th>" + "".join(f"<th class=n>{_e(label)}</th>" for label, _ in cols)
    both = len(cols) == 2
    if both:
        heads += "<th class=n>difference</th>"

    def row(name: str, label: str, nums: list[int | None], cls: str = "") -> str:
        sw = _swatch(name) if name else ""
        cells = f"<td>{sw}{_e(label)}</td>" + "".join(f"<td class=n>{_b(n)}</td>" for n in nums)
        if both:
            cells += f"<td class=n>{_signed((nums[1] or 0) - (nums[0] or 0))}</td>"
        return f'<tr class="{cls}">{cells}</tr>'

    rows = [row(c, T.segment_label(c), [v.get(c, 0) for v in values]) for c in COMPONENTS]
    if any(v.get(T.UNATTRIBUTED) for v in values):
        rows.append(row(T.UNATTRIBUTED, T.UNATTRIBUTED, [v.get(T.UNATTRIBUTED, 0) for v in values]))
    phase = srcs[-1].peak_phase if srcs[-1].peak_phase is not None else "?"
    peaks = [sum(v.get(c, 0) for c in (*COMPONENTS, T.UNATTRIBUTED)) for v in values]
    rows.append(row("", f"peak allocated (in {phase})", peaks, "sub"))
    for name in (T.SLACK, T.CONTEXT, T.PAGED):
        rows.append(row(name, name, [v.get(name, 0) for v in values]))
    rows.append(row("", "required VRAM", [T.required_bytes(p) for p in srcs], "total"))
    return f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _breakdown_notes(meas: Measured | None) -> str:
    note = (
        '<p class="note">Required VRAM = the allocator capacity the steps need (peak allocated plus allocator '
        "cache) plus memory outside PyTorch (CUDA context, paged optimizer state). "
        "Sizes in binary units: 1 GiB = 2<sup>30</sup> bytes.</p>"
    )
    if meas and meas.allocator_required_bytes is None:
        note += (
            '<p class="note">The probe did not search the allocator requirement: the measured allocator cache is '
            "peak reserved minus peak allocated, an upper bound.</p>"
        )
        sim = meas.raw.get("simulated") or {}
        if isinstance(sim.get("required_bytes"), int):
            from vramfit.probe.allocator_replay import model_words

            note += (
                f'<p class="note">The allocator model ({_e(model_words(sim))}; this run\'s allocation trace '
                f"replayed under caps) needs {_b(sim['required_bytes'])}; <code>--find-min</code> measures "
                "it with capped runs.</p>"
            )
    return note


def _breakdown_section(r: Result, part: Estimate | None, meas: Measured | None) -> str:
    from vramfit.report import charts

    srcs = [p for p in (part, meas) if p]
    cols = [(label, T.stack_segments(p)) for label, p in (("estimate", part), ("measured", meas)) if p]
    if not cols:
        return ""
    _, capacity, usable = T.card_of(r, part)
    fig = charts.breakdown_chart(cols, capacity, usable)
    svg = charts.to_svg(fig, "stacked breakdown of required VRAM")
    table = _breakdown_table(cols, srcs)
    return f"<section><h2>Where the memory goes</h2>{svg}{table}{_breakdown_notes(meas)}</section>"


def _not_drawn(why: str) -> str:
    return f'<section><h2>Memory against sequence length</h2><p class="note">Not drawn: {why}</p></section>'


def _sweep_section(part: Estimate, meas: Measured | None = None) -> str:
    from vramfit.report import charts
    from vramfit.report.sweep import seq_len_sweep

    try:
        sw = seq_len_sweep(part)
    except ImportError as exc:  # the estimator is not installed in this build
        return _not_drawn(_e(exc))
    if sw is None:
        return _not_drawn(f"the model {_e(part.model)} cannot be resolved on this machine.")
    if sw.empty:
        return _not_drawn(_e(sw.note))
    seq_len = part.config.get("seq_len")
    current = (int(seq_len), T.required_bytes(part)) if isinstance(seq_len, int) else None
    cap = part.verdict.capacity_bytes if part.verdict else None
    measured = (current[0], T.required_bytes(meas)) if current and meas else None
    fig = charts.seq_len_chart(
        sw.seq_lens, sw.with_checkpointing, sw.without_checkpointing, current, cap, measured
    )
    svg = charts.to_svg(fig, "required VRAM against sequence length")
    note = f'<p class="note">Estimated by vramfit for the same model and configuration. {_e(sw.note)}</p>'
    return f"<section><h2>Memory against sequence length</h2>{svg}{note}</section>"


def _trials_table(trials: tuple[dict, ...]) -> list[str]:
    """``--find-min``'s capped runs, by cap."""
    ok = [t for t in trials if isinstance(t, dict) and isinstance(t.get("cap_bytes"), int)]
    if not ok:
        return []
    rows = [
        [_b(t["cap_bytes"]), "fits" if t.get("fits") else "out of memory", _e(t.get("phase") or "")]
        for t in sorted(ok, key=lambda t: t["cap_bytes"])
    ]
    return ["<h3>Allocator cap search (--find-min)</h3>",
            _table(["allocator cap", "result", "failed in"], rows, numeric=(0,))]  # fmt: skip


def _timeline_section(r: ProbeResult, part: Estimate | None) -> str:
    from vramfit.report import charts

    m = r.measured
    timeline = [p for p in m.timeline if isinstance(p, dict)]
    if len(timeline) < 2 and not m.phases and not r.trials:
        return ""
    out = ["<section><h2>Measured allocation timeline</h2>"]
    if len(timeline) >= 2:
        _, cap, _ = T.card_of(r, part)
        out.append(charts.to_svg(charts.timeline_chart(timeline, cap), "allocated memory over time"))
    else:
        out.append('<p class="note">The result has no allocation timeline.</p>')
    if m.phases:
        rows = [
            [_e(p.name), _b(p.peak_allocated_bytes), _b(p.peak_reserved_bytes),
             _e(format(p.seconds, ".2f") + " s" if isinstance(p.seconds, (int, float)) else "")]
            for p in m.phases
        ]  # fmt: skip
        out.append(_table(["phase", "peak allocated", "peak reserved", "time"], rows, numeric=(1, 2, 3)))
    out += _trials_table(r.trials)
    out.append("</section>")
    return "".join(out)


def _recommendation_html(r: PlanResult, part: Estimate) -> list[str]:
    out = [f"<p><strong>{_e(T.config_summary(part.config))}</strong></p>"]
    desc = f": {_e(r.margin.describe())}" if r.margin is not None else ""
    out.append(
        f'<p class="note">Chosen to leave a safety margin of {_b(r.margin_bytes)} of the usable memory{desc}.</p>'
    )
    cmds = T.plan_commands(r)
    if cmds:
        out.append(_kv_table_code(cmds))
    return out


def _choices_html(r: PlanResult) -> list[str]:
    """The alternatives and what each knob costs."""
    out = []
    if r.alternatives:
        rows = [
            [_e(T.config_summary(a.estimate.config)), _b(a.required_bytes), _e(T.trade_text(a))]
            for a in r.alternatives
        ]
        out.append("<h3>Alternatives</h3>")
        out.append(_table(["configuration", "required VRAM", "trade-off"], rows, numeric=(1,)))
    if r.knob_prices:
        rows = [[_e(k.knob), _e(T.knob_change(k)), _signed(k.delta_bytes), _e(k.note)] for k in r.knob_prices]
        out.append("<h3>What each knob costs</h3>")
        out.append(_table(["knob", "change", "required VRAM", ""], rows, numeric=(2,)))
    return out


def _plan_section(r: PlanResult, part: Estimate | None) -> str:
    out = [f"<section><h2>{'Recommendation' if r.fits else 'Why nothing fits'}</h2>"]
    if part and r.fits:
        out += _recommendation_html(r, part)
    if not r.fits and r.no_fit is not None:
        out += _no_fit_html(r.no_fit)
    out += _choices_html(r)
    out.append("</section>")
    return "".join(out)


def _no_fit_html(no_fit: NoFit) -> list[str]:
    """Why nothing fits, the smallest configuration, the cards and the models that would fit."""
    out: list[str] = []
    reasons = "".join(f"<li>{_e(r)}</li>" for r in no_fit.reasons)
    if reasons:
        out.append(f"<ul>{reasons}</ul>")
    small = no_fit.smallest
    if small is not None:
        out.append(
            f"<p>The smallest configuration, {_e(T.config_summary(small.estimate.config))}, needs "
            f"{_b(small.required_bytes)}.</p>"
        )
    if no_fit.cards_that_fit:
        out.append(
            f"<p>It fits a card with {_b(no_fit.card_needed_bytes)}: {_e(', '.join(no_fit.cards_that_fit))}.</p>"
        )
    if no_fit.models_that_fit:
        rows = [[_e(m.name), _b(m.required_bytes)] for m in no_fit.models_that_fit]
        out.append("<h3>Models that fit this card</h3>")
        out.append(_table(["model", "required VRAM"], rows, numeric=(1,)))
    return out


def _kv_table_code(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _config_env_section(r: Result, part: Estimate | None) -> str:
    cfg = T.config_of(r, part)
    env = T.environment_of(r)
    env_title = "Environment"
    if not env:
        from vramfit.environment import environment

        env = {k: v for k, v in environment(query_gpu=False).items() if v is not None}
        env_title = "Environment (of this report; the result recorded none)"
    left = f"<div><h2>Configuration</h2>{_kv_table(T.config_rows(cfg)) if cfg else '<p class=note>none recorded</p>'}</div>"
    right = f"<div><h2>{_e(env_title)}</h2>{_kv_table(T.environment_rows(env))}</div>"
    return f'<div class="grid2" style="margin-bottom:18px">{left}{right}</div>'


def _warnings_section(r: Result, part: Estimate | None) -> str:
    unique = T.warnings_of(r, part, notes=True)
    if not unique:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in unique)
    return f'<section><h2>Warnings</h2><ul class="warn">{items}</ul></section>'


def _assumptions_section(part: Estimate | None) -> str:
    a = part.assumptions if part else {}
    if not a:
        return ""
    rows = []
    for k, v in a.items():
        shown = format_bytes(v) if isinstance(v, int) and str(k).endswith("bytes") else v
        rows.append((str(k), str(shown)))
    return f"<section><details><summary>Assumptions of the estimate</summary>{_kv_table(rows)}</details></section>"


def _page(model: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>vramfit: {_e(model)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def render_html(result: object, sweep: bool = True, generated_at: str | None = None) -> str:
    """The report of an estimate, plan or probe result (typed, or its saved JSON) as one HTML page.

    ``generated_at`` is the footer's time (default: now, to the minute, UTC)."""
    from vramfit import __version__

    r = T.typed(result)
    kind = T.kind_of(r)
    part, meas = T.estimate_part(r), T.measured_part(r)
    model = T.model_name(r)
    summary = T.config_summary(T.config_of(r, part))
    body = [
        '<header><div><div class="brand">vramfit report</div>'
        f"<h1>{_e(model)}</h1><p class=sub>{_e(summary)}</p></div>"
        f'<span class="kind">{_e(KIND_TITLES[kind])}</span></header>',
        _banner(r, part, meas),
        _stats(part, meas),
        _breakdown_section(r, part, meas),
    ]
    if kind == "plan":
        body.append(_plan_section(r, part))
    if kind == "probe":
        body.append(_timeline_section(r, part))
    if part and sweep:
        body.append(_sweep_section(part, meas))
    body += [_config_env_section(r, part), _warnings_section(r, part), _assumptions_section(part)]
    now = generated_at or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body.append(f"<footer>Generated by vramfit {_e(__version__)} on {_e(now)}.</footer>")
    return _page(model, body)
