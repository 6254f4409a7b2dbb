"""The report's tables as rows of text, shared by the Markdown and the HTML: the numbers formatted, and the
headers."""

from __future__ import annotations

import statistics

from vramfit.estimate.result import COMPONENTS
from vramfit.units import GiB, MiB

from .fit import slack_text
from .report import Report
from .runs import QUANTITIES, QUANTITY_LABEL, TOOL_LABEL, TOOLS, Run, exact_runs
from .summary import Summary, summarize


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f} %"


def gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / GiB:.2f}"


def mib(n: float) -> str:
    return f"{n / MiB:+.1f}"


def summary_cells(s: Summary | None) -> list[str]:
    if s is None:
        return ["0", "n/a", "n/a", "n/a", "n/a"]
    return [str(s.n), pct(s.median), f"{s.mean_abs * 100:.1f} %", pct(s.worst), f"{s.under} / {s.n}"]


def summary_rows(rep: Report) -> list[list[str]]:
    rows = []
    for q in QUANTITIES:
        for t in TOOLS:
            rows.append([QUANTITY_LABEL[q], TOOL_LABEL[t], *summary_cells(rep.summary(t, q))])
    for t in TOOLS:  # the requirement where it is known exactly
        rows.append(["required, find-min runs only", TOOL_LABEL[t],
                     *summary_cells(rep.summary(t, "required", exact_runs(rep.runs)))])  # fmt: skip
    return rows


SUMMARY_HEAD = ["quantity", "tool", "runs", "median error", "mean abs error", "worst", "under-estimates"]


def family_rows(rep: Report) -> list[list[str]]:
    rows = []
    for fam in sorted({r.family for r in rep.runs}):
        sub = [r for r in rep.runs if r.family == fam]
        cells = [fam, str(len(sub))]
        for t in ("vramfit", "fitcheck", "accelerate_fp16"):
            for q in QUANTITIES:
                s = rep.summary(t, q, sub)
                cells.append("n/a" if s is None else f"{pct(s.median)} ({pct(s.worst)})")
        rows.append(cells)
    return rows


FAMILY_HEAD = ["family", "runs"] + [
    f"{TOOL_LABEL[t]}: {QUANTITY_LABEL[q]}"
    for t in ("vramfit", "fitcheck", "accelerate_fp16")
    for q in QUANTITIES
]


TRANSIENT = ("gradients", "activations", "logits", "temporaries")


def component_errors(rep: Report) -> dict[str, list[tuple[str, int, int]]]:
    """component -> [(run, estimate - measured bytes, measured bytes)] where a measured attribution exists;
    plus "transient sum" (the four components that move within a phase, compared as one)."""
    out: dict[str, list[tuple[str, int, int]]] = {c: [] for c in (*COMPONENTS, "transient sum")}
    for r in rep.runs:
        m = r.measured_breakdown
        if not m:
            continue
        e = r.vramfit_breakdown
        for c in COMPONENTS:
            out[c].append((r.name, e[c] - m[c], m[c]))
        mt, et = sum(m[c] for c in TRANSIENT), sum(e[c] for c in TRANSIENT)
        out["transient sum"].append((r.name, et - mt, mt))
    return out


def component_rows(rep: Report) -> list[list[str]]:
    rows = []
    for comp, items in component_errors(rep).items():
        if not items:
            continue
        deltas = [d for _, d, _ in items]
        worst = max(items, key=lambda x: abs(x[1]))
        rel = [d / m for _, d, m in items if m >= 16 * MiB]
        rows.append([
            comp, str(len(items)),
            f"{statistics.median(abs(d) for d in deltas) / MiB:.1f}",
            f"{mib(worst[1])} ({worst[0]})",
            "n/a" if not rel else pct(statistics.median(rel)),
            "n/a" if not rel else f"{statistics.fmean(abs(x) for x in rel) * 100:.1f} %",
        ])  # fmt: skip
    return rows


COMPONENT_HEAD = ["component", "runs", "median |error| MiB", "worst error MiB (run)", "median error",
                  "mean abs error"]  # fmt: skip


def held_out_rows(rep: Report) -> list[list[str]]:
    rows = []
    for h in rep.held_out:
        errs = [e for _, e in h.errors]
        n_bounds = sum(1 for r in rep.runs if r.family == h.family and r.required_source != "find-min")
        if not errs:
            rows.append([h.family, "0", str(h.n_fit), slack_text(h.fit), "", "", "", "",
                         f"{len(h.above_bound)} of {n_bounds}"])  # fmt: skip
            continue
        s = summarize(errs)
        rows.append([
            h.family, str(len(errs)), str(h.n_fit), slack_text(h.fit),
            pct(s.median), f"{s.mean_abs * 100:.1f} %", pct(min(errs)), pct(max(errs)),
            f"{len(h.above_bound)} of {n_bounds}",
        ])  # fmt: skip
    return rows


HELD_OUT_HEAD = ["held-out family", "find-min runs held out", "runs fitted on", "slack fitted without it",
                 "median error", "mean abs error", "lowest", "highest", "above the reserved peak"]  # fmt: skip


RANGE_HEAD = ["held-out family", "find-min runs", "low end fitted without it", "inside the range",
              "low end, highest", "high end, lowest", "median width"]  # fmt: skip


def _range_cells(low: list[float], high: list[float]) -> list[str]:
    """Errors of the two ends over the same runs: how many runs the range holds, how far each end is on
    the wrong side at worst, and the median width (relative to the measured requirement)."""
    inside = sum(1 for lo, hi in zip(low, high, strict=True) if lo <= 0 <= hi)
    widths = sorted(hi - lo for lo, hi in zip(low, high, strict=True))
    return [
        f"{inside} of {len(low)}",
        pct(max(low)),
        pct(min(high)),
        f"{widths[len(widths) // 2] * 100:.1f} %",
    ]


def range_rows(rep: Report) -> list[list[str]]:
    """Held out by family: the range from allocator_required_low_bytes to allocator_required_bytes."""
    rows = []
    for h in rep.held_out:
        if not h.errors or h.low_fit is None:
            continue
        low, high = [e for _, e in h.low_errors], [e for _, e in h.errors]
        rows.append([h.family, str(len(low)), slack_text(h.low_fit), *_range_cells(low, high)])
    low = [e for h in rep.held_out for _, e in h.low_errors]
    high = [e for h in rep.held_out for _, e in h.errors]
    rows.append(["**all held out**", str(len(low)), "", *_range_cells(low, high)])
    return rows


def held_out_all(rep: Report) -> Summary:
    return summarize([e for h in rep.held_out for _, e in h.errors])


def run_rows(rep: Report, quantity: str) -> list[list[str]]:
    rows = []
    for r in rep.runs:
        cells = [r.name, r.model, config_text(r), gib(r.measured[quantity])]
        for t in ("vramfit", "fitcheck", "accelerate", "accelerate_fp16"):
            p = r.predicted.get(t, {}).get(quantity)
            cells += [gib(p), pct(r.error(t, quantity))]
        rows.append(cells)
    return rows


RUN_HEAD = ["run", "model", "configuration", "measured GiB", "vramfit GiB", "err", "fitcheck GiB", "err",
            "accelerate GiB (run's dtype)", "err", "accelerate GiB (float16)", "err"]  # fmt: skip


def config_text(r: Run) -> str:
    from vramfit.report.tables import config_summary

    c = r.config
    extra = [f"attn {r.vramfit_attn}"]
    if c["method"] != "qlora" or c["load_dtype"] != "bf16":
        extra.append(f"load {c['load_dtype']} / compute {c['compute_dtype']}")
    if c.get("grad_accum", 1) > 1:
        extra.append(f"accum {c['grad_accum']}")
    if c.get("kbit_upcast") is False:
        extra.append("no upcast")
    return config_summary(c) + ", " + ", ".join(extra)


def fitcheck_rows(rep: Report) -> list[list[str]]:
    return [
        [r.name, "fitcheck " + " ".join(r.fitcheck_args), "; ".join(r.fitcheck_unmapped) or "-",
         r.fitcheck_error or "-"]
        for r in rep.runs
    ]  # fmt: skip


def repeat_rows(rep: Report) -> list[list[str]]:
    rows = []
    for r in rep.runs:
        for o in r.repeats:
            a, b = r.result["measured"], o.result["measured"]
            rows.append([
                r.name, o.name, gib(a["peak_allocated_bytes"]), gib(b["peak_allocated_bytes"]),
                gib(a["peak_reserved_bytes"]), gib(b["peak_reserved_bytes"]),
                gib(a.get("allocator_required_bytes")) if a.get("allocator_required_bytes") else "",
            ])  # fmt: skip
    return rows


REPEAT_HEAD = ["run (kept)", "repeat", "peak allocated GiB", "repeat", "peak reserved GiB", "repeat",
               "find-min GiB"]  # fmt: skip


SEGMENT_PHASES = ("prepare", "forward (step 1)", "backward (step 1)", "optimizer (step 1)", "forward (steady)",
                  "backward (steady)", "optimizer (steady)")  # fmt: skip


def _requester(who: str) -> str:
    return who.rsplit("/", 1)[-1] if who else "(unknown)"


def segment_summary(rep: Report) -> tuple[int, list[list[str]], list[list[str]], int]:
    """From the probe's segment log (runs measured since it was recorded): the memory newly reserved in
    each phase, and by whom, summed over the runs; and how many runs reserved more in the steady step."""
    logged = [r for r in rep.runs if r.result["measured"].get("raw", {}).get("segments") is not None]
    by_phase: dict[str, list[int]] = {p: [0, 0, 0] for p in SEGMENT_PHASES}  # bytes, >= 100 MiB, segments
    by_who: dict[tuple[str, str], list[int]] = {}
    steady_growth = 0
    for r in logged:
        grew = False
        for phase, size, _req, who in r.result["measured"]["raw"]["segments"]:
            if phase not in by_phase or size <= 0:
                continue
            row = by_phase[phase]
            row[0] += size
            row[1] += size if size >= 100 * MiB else 0
            row[2] += 1
            w = by_who.setdefault((phase, _requester(who)), [0, 0])
            w[0] += size
            w[1] += 1
            grew |= phase.endswith("(steady)") and size >= 100 * MiB
        steady_growth += grew
    phase_rows = [[p, f"{v[0] / GiB:.1f}", f"{v[1] / GiB:.1f}", str(v[2])] for p, v in by_phase.items()]
    top = sorted(by_who.items(), key=lambda kv: -kv[1][0])[:15]
    who_rows = [[ph, f"`{w}`", f"{v[0] / GiB:.1f}", str(v[1])] for (ph, w), v in top]
    return len(logged), phase_rows, who_rows, steady_growth


def simulation_rows(rep: Report) -> tuple[list[list[str]], list[float]]:
    """Runs whose trace was replayed through vramfit.probe.allocsim (``raw.simulated``), against the
    find-min result of the same configuration."""
    rows, errs = [], []
    for r in rep.runs:
        for run in (r, *r.repeats):
            sim = run.result["measured"].get("raw", {}).get("simulated")
            if not sim:
                continue
            m = run.result["measured"]
            fm = (
                r.result["measured"].get("allocator_required_bytes")
                if r.required_source == "find-min"
                else None
            )
            err = sim["required_bytes"] / fm - 1 if fm else None
            if err is not None:
                errs.append(err)
            rows.append([
                run.name, gib(m["peak_allocated_bytes"]), gib(m["peak_reserved_bytes"]),
                gib(sim["peak_reserved_bytes"]), "yes" if sim["matches_trace"] else "no",
                gib(sim["required_bytes"]), gib(fm) if fm else "", pct(err) if err is not None else "",
                f"{sim['seconds']:.1f}",
            ])  # fmt: skip
    return rows, errs
