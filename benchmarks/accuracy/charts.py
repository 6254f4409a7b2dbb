"""The report's charts (vramfit.report.charts: its figure, style and SVG export)."""

from __future__ import annotations

import statistics

from vramfit.units import GiB, MiB

from .report import Report
from .runs import QUANTITIES, QUANTITY_LABEL, TOOL_LABEL, TOOLS
from .tables import component_errors

TOOL_STYLE = {  # colour, marker
    "vramfit": ("#0072B2", "o"),
    "fitcheck": ("#D55E00", "s"),
    "accelerate": ("#009E73", "^"),
    "accelerate_fp16": ("#CC79A7", "v"),
}


def scatter_chart(rep: Report):
    """Predicted against measured, log axes, one panel per quantity, y = x and a +-5 % band."""
    from matplotlib.figure import Figure

    from vramfit.report import charts as C

    with C.style():
        fig = Figure(figsize=(9.6, 4.4), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, q in zip(axes, QUANTITIES, strict=True):
            xs = [r.measured[q] / GiB for r in rep.runs]
            lo, hi = min(xs) * 0.7, max(xs) * 1.4
            for t in TOOLS:
                pts = [(r.measured[q] / GiB, p / GiB) for r in rep.runs
                       if (p := r.predicted.get(t, {}).get(q)) is not None]  # fmt: skip
                if not pts:
                    continue
                color, marker = TOOL_STYLE[t]
                ax.scatter(*zip(*pts, strict=True), s=22, marker=marker, facecolor="none" if t != "vramfit"
                           else color, edgecolor=color, linewidth=1.1, label=TOOL_LABEL[t], zorder=3)  # fmt: skip
                hi = max(hi, max(y for _, y in pts) * 1.2)
            line = [lo, hi]
            ax.fill_between(line, [x * 0.95 for x in line], [x * 1.05 for x in line], color="#9CA3AF",
                            alpha=0.35, linewidth=0, label="±5 %")  # fmt: skip
            ax.plot(line, line, color="#111827", linewidth=0.9, label="y = x")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo, max(xs) * 1.4)
            ax.set_ylim(lo, hi)
            ax.set_xlabel(f"measured {QUANTITY_LABEL[q]} (GiB)")
            ax.set_ylabel("predicted (GiB)")
            ax.set_title(QUANTITY_LABEL[q], fontsize=10, color=C.TEXT)
            C.style_axes(ax)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=6, frameon=False, fontsize=8)
    return fig


RATIO_TICKS = (0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2)


def _ratio_axis(ax, values: list[float]) -> None:
    lo = min([0.8, *values]) * 0.9
    hi = max([1.25, *values]) * 1.15
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [t for t in RATIO_TICKS if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.axvspan(0.95, 1.05, color="#9CA3AF", alpha=0.3, linewidth=0)
    ax.axvline(1.0, color="#111827", linewidth=0.9)


def family_chart(rep: Report):
    """predicted / measured per family: each run a small mark, the family median a large one."""

    from vramfit.report import charts as C

    fams = sorted({r.family for r in rep.runs}, reverse=True)
    # accelerate (2x to 10x over, see the table) would squeeze the other two into one pixel column
    tools = [t for t in ("vramfit", "fitcheck") if any(t in r.predicted for r in rep.runs)]
    with C.style():
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9.6, 0.38 * len(fams) + 1.3), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, q in zip(axes, QUANTITIES, strict=True):
            allv = []
            for k, t in enumerate(tools):
                color, marker = TOOL_STYLE[t]
                off = (k - (len(tools) - 1) / 2) * 0.22
                for y, fam in enumerate(fams):
                    ratios = [1 + e for r in rep.runs if r.family == fam and (e := r.error(t, q)) is not None]
                    if not ratios:
                        continue
                    allv += ratios
                    ax.scatter(ratios, [y + off] * len(ratios), s=9, color=color, alpha=0.45, marker=marker,
                               linewidth=0, zorder=3)  # fmt: skip
                    ax.scatter([statistics.median(ratios)], [y + off], s=46, color=color, marker=marker,
                               edgecolor="white", linewidth=0.6, zorder=4,
                               label=TOOL_LABEL[t] if y == 0 else None)  # fmt: skip
            _ratio_axis(ax, allv)
            ax.set_yticks(range(len(fams)), fams)
            ax.set_xlabel(f"predicted / measured, {QUANTITY_LABEL[q]}")
            C.style_axes(ax)
            ax.grid(False, axis="y")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False, fontsize=8)
    return fig


def component_chart(rep: Report):
    """vramfit estimate minus the probe's attribution, per component, one dot per run (MiB)."""

    from vramfit.report import charts as C

    data = [(c, items) for c, items in component_errors(rep).items() if items]
    with C.style():
        fig, ax = C.figure(9.6, 0.36 * len(data) + 1.2)
        for y, (comp, items) in enumerate(reversed(data)):
            d = [x / MiB for _, x, _ in items]
            color = C.COLORS.get(comp, "#374151")
            ax.scatter(d, [y] * len(d), s=16, color=color, alpha=0.7, edgecolor="#374151", linewidth=0.3,
                       zorder=3)  # fmt: skip
            ax.scatter([statistics.median(d)], [y], s=70, marker="|", color="#111827", zorder=4)
        ax.axvline(0, color="#111827", linewidth=0.9)
        ax.set_xscale("symlog", linthresh=16)
        ax.set_yticks(range(len(data)), [c for c, _ in reversed(data)])
        ax.set_xlabel("estimate - measured (MiB, symmetric log beyond ±16); bar: median")
        C.style_axes(ax)
        ax.grid(False, axis="y")
    return fig
