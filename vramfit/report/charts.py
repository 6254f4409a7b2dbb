"""Charts of a result, drawn with matplotlib (imported here lazily, Agg / SVG canvases, never pyplot).

Every chart is a function from plain numbers to a :class:`matplotlib.figure.Figure`; :func:`to_svg`
turns one into an SVG element to inline in HTML, :func:`to_png` into a file for Markdown.
Sizes arrive as int bytes and are drawn in GiB (binary: 1 GiB = 2**30 bytes).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from vramfit.report.tables import CONTEXT, PAGED, SLACK, UNATTRIBUTED, segment_label
from vramfit.units import GiB

# One colour per segment of the stacked bar (colour-blind-safe Okabe-Ito hues first, then greys).
COLORS = {
    "weights": "#0072B2",
    "quant_state": "#56B4E9",
    "adapters": "#009E73",
    "gradients": "#CC79A7",
    "optimizer": "#E69F00",
    "activations": "#D55E00",
    "logits": "#F0E442",
    "temporaries": "#8E6C8A",
    UNATTRIBUTED: "#E5E7EB",
    SLACK: "#C9CED6",
    CONTEXT: "#6B7280",
    PAGED: "#A3A3A3",
}
TEXT = "#1F2937"
MUTED = "#6B7280"
GRID = "#E5E7EB"
CARD_LINES = (4, 6, 8, 12)  # GiB: the small cards people ask about

# The matplotlib settings of every vramfit chart (public: benchmarks draw theirs with :func:`style`).
STYLE = {
    "svg.fonttype": "none",  # text stays text: selectable, searchable, drawn in the page's font
    "svg.hashsalt": "vramfit",  # fixed element ids: the same chart gives the same file
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.edgecolor": "#9CA3AF",
    "axes.labelcolor": TEXT,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def style():
    """A context manager that draws (and saves) matplotlib figures in vramfit's :data:`STYLE`."""
    import matplotlib

    return matplotlib.rc_context(STYLE)


def figure(width: float, height: float):
    """A new Agg-backed figure of ``width`` x ``height`` inches in vramfit's style, and its axes."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # harmless if already Agg; never opens a window
    from matplotlib.figure import Figure

    with style():
        fig = Figure(figsize=(width, height), layout="constrained")
        ax = fig.add_subplot()
    return fig, ax


def style_axes(ax) -> None:
    """vramfit's grid and spines on ``ax``."""
    ax.grid(True, axis="both", color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _stacked_bar(ax, y: float, segs: Sequence[tuple[str, int]], seen: set[str]) -> float:
    """One column's segments end to end at height ``y``, its total written after it; returns the total
    in GiB. Each segment name gets a legend entry the first time it is drawn (``seen``)."""
    left = 0.0
    for name, b in segs:
        if b <= 0:
            continue
        w = b / GiB
        ax.barh(
            y,
            w,
            left=left,
            height=0.6,
            color=COLORS.get(name, "#999999"),
            edgecolor="white",
            linewidth=0.6,
            hatch="//" if name in (CONTEXT, PAGED) else None,
            label=segment_label(name) if name not in seen else None,
        )
        seen.add(name)
        left += w
    ax.text(left, y, f"  {left:.2f} GiB", va="center", ha="left", color=TEXT, fontsize=9, fontweight="bold")
    return left


def _card_lines(ax, capacity_bytes: int | None, usable_bytes: int | None, label_y: float) -> float:
    """The card's capacity (solid) and usable memory (dashed) as vertical lines; returns the capacity in GiB
    (0 without a card)."""
    cap = 0.0
    if capacity_bytes:
        cap = capacity_bytes / GiB
        ax.axvline(cap, color="#111827", linewidth=1.4)
        ax.annotate(f"card {cap:.1f} GiB", (cap, label_y), xytext=(3, 0), textcoords="offset points",
                    ha="left", va="bottom", fontsize=8, color=TEXT)  # fmt: skip
    if usable_bytes and capacity_bytes and usable_bytes < capacity_bytes:
        use = usable_bytes / GiB
        ax.axvline(use, color="#111827", linewidth=1, linestyle="--")
        ax.annotate(f"usable {use:.2f}", (use, label_y), xytext=(-3, 0), textcoords="offset points",
                    ha="right", va="bottom", fontsize=8, color=MUTED)  # fmt: skip
    return cap


def breakdown_chart(
    columns: Sequence[tuple[str, Sequence[tuple[str, int]]]],
    capacity_bytes: int | None = None,
    usable_bytes: int | None = None,
):
    """Horizontal stacked bars, one per column (e.g. estimate, measured), with the card as lines."""

    with style():
        fig, ax = figure(7.2, 1.6 + 0.5 * len(columns))
        labels = [c[0] for c in columns]
        ys = list(range(len(columns)))[::-1]
        seen: set[str] = set()
        top = 0.0
        for y, (_, segs) in zip(ys, columns, strict=True):
            top = max(top, _stacked_bar(ax, y, segs, seen))
        top = max(top, _card_lines(ax, capacity_bytes, usable_bytes, max(ys) + 0.45))
        ax.set_yticks(ys, labels)
        ax.set_ylim(min(ys) - 0.6, max(ys) + 0.9)
        ax.set_xlim(0, top * 1.2 if top else 1)
        ax.set_xlabel("GiB")
        style_axes(ax)
        ax.grid(False, axis="y")
        fig.legend(loc="outside lower center", ncol=4, frameon=False, fontsize=8)
    return fig


def _run_marks(ax, current: tuple[int, int] | None, measured: tuple[int, int] | None) -> float:
    """The run's estimate (star) and measurement (diamond); returns the higher of the two in GiB (0: none)."""
    top = 0.0
    if current is not None:
        ax.plot(
            [current[0]],
            [current[1] / GiB],
            marker="*",
            markersize=12,
            color="#111827",
            linestyle="none",
            label="this run (estimate)",
        )
        top = current[1] / GiB
    if measured is not None:
        ax.plot([measured[0]], [measured[1] / GiB], marker="D", markersize=6, color="#CC79A7",
                linestyle="none", label="this run, measured")  # fmt: skip
        top = max(top, measured[1] / GiB)
    return top


def _card_sizes(ax, shown_top: float, cap: float | None) -> None:
    """4/6/8/12 GiB (dashed) and this card (solid) as horizontal lines, named on a right-hand axis."""
    for g in CARD_LINES:
        if g <= shown_top:
            ax.axhline(g, color="#9CA3AF", linewidth=0.8, linestyle=(0, (4, 3)))
    if cap and cap <= shown_top:
        ax.axhline(cap, color="#111827", linewidth=1.2)
    # the card sizes as labels on a right-hand axis, outside the curves
    right = ax.twinx()
    right.set_ylim(0, shown_top)
    marks = sorted({*(g for g in CARD_LINES if g <= shown_top), *([cap] if cap and cap <= shown_top else [])})
    right.set_yticks(marks, [("this card " if m == cap else "") + f"{m:g} GiB" for m in marks])
    right.tick_params(axis="y", length=0, labelsize=8, colors=MUTED)
    for side in ("top", "right", "left", "bottom"):
        right.spines[side].set_visible(False)


def seq_len_chart(
    seq_lens: Sequence[int],
    with_checkpointing: Sequence[int | None],
    without_checkpointing: Sequence[int | None],
    current: tuple[int, int] | None = None,
    capacity_bytes: int | None = None,
    measured: tuple[int, int] | None = None,
):
    """Required VRAM against sequence length, checkpointing on and off, with 4/6/8/12 GiB lines.

    ``current`` marks the run's estimate, ``measured`` its measurement (seq_len, bytes)."""

    with style():
        fig, ax = figure(7.2, 3.3)
        for values, label, color in (
            (with_checkpointing, "gradient checkpointing on", "#0072B2"),
            (without_checkpointing, "gradient checkpointing off", "#D55E00"),
        ):
            pts = [(s, v / GiB) for s, v in zip(seq_lens, values, strict=True) if v is not None]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True), marker="o", markersize=3, linewidth=1.8, color=color, label=label
                )
        ymax = max([v / GiB for v in (*with_checkpointing, *without_checkpointing) if v is not None] or [1])
        ymax = max(ymax, _run_marks(ax, current, measured))
        # NOTE: the axis stops a little above 12 GiB (or the run / the card, when higher): that is where
        # the small cards this is for live; steeper curves leave the top of the chart.
        focus = max(14.0, 1.5 * (current[1] / GiB if current else 0), 1.25 * (capacity_bytes or 0) / GiB)
        shown_top = min(ymax * 1.08, focus) if ymax > 1 else 1.0
        _card_sizes(ax, shown_top, capacity_bytes / GiB if capacity_bytes else None)
        ax.set_ylim(0, shown_top)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(seq_lens), [str(s) for s in seq_lens])
        ax.minorticks_off()
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("required VRAM (GiB)")
        style_axes(ax)
        ax.legend(loc="upper left", frameon=False, fontsize=8)
    return fig


def timeline_chart(timeline: Sequence[dict], capacity_bytes: int | None = None):
    """Allocated memory over time from a probe's snapshot, each phase shaded and named."""

    with style():
        fig, ax = figure(7.2, 3.0)
        ts = [float(p.get("t_ms", 0)) / 1000 for p in timeline]
        ys = [int(p.get("allocated_bytes", 0)) / GiB for p in timeline]
        phases = [str(p.get("phase") or "") for p in timeline]  # None: between phases
        # contiguous runs of one phase -> shaded spans
        spans: list[tuple[str, float, float]] = []
        for t, ph in zip(ts, phases, strict=True):
            if spans and spans[-1][0] == ph:
                spans[-1] = (ph, spans[-1][1], t)
            else:
                if spans:
                    spans[-1] = (spans[-1][0], spans[-1][1], t)
                spans.append((ph, t, t))
        shades = ("#F3F4F6", "#FFFFFF")
        for i, (_ph, a, b) in enumerate(spans):
            ax.axvspan(a, b, color=shades[i % 2], zorder=0, linewidth=0)
        ax.step(ts, ys, where="post", color="#0072B2", linewidth=1.4)
        ax.fill_between(ts, ys, step="post", color="#0072B2", alpha=0.15)
        top = max(ys or [1])
        if ys:
            i = max(range(len(ys)), key=ys.__getitem__)
            ax.annotate(
                f"peak {ys[i]:.2f} GiB",
                (ts[i], ys[i]),
                xytext=(6, 4),
                textcoords="offset points",
                fontsize=8,
                color=TEXT,
            )
        if capacity_bytes and capacity_bytes / GiB < top * 1.6:
            ax.axhline(capacity_bytes / GiB, color="#111827", linewidth=1.2)
            top = max(top, capacity_bytes / GiB)
        ax.set_ylim(0, top * 1.25)
        # phase names along the top, only where a span is wide enough to hold one
        total = (ts[-1] - ts[0]) if len(ts) > 1 else 1
        for ph, a, b in spans:
            if ph and (b - a) / (total or 1) > 0.06:
                ax.text((a + b) / 2, top * 1.2, ph, ha="center", va="top", fontsize=7, color=MUTED)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("allocated (GiB)")
        style_axes(ax)
        ax.grid(False, axis="x")
    return fig


_SVG_ROOT = re.compile(r'<svg\b[^>]*?\swidth="[^"]*"\s+height="[^"]*"', re.S)


def to_svg(fig, title: str = "") -> str:
    """An ``<svg>`` element (no XML prologue) that scales to its container."""

    buf = io.StringIO()
    with style():  # svg.fonttype is read when saving
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF licence block: not needed inline
    text = _SVG_ROOT.sub(
        lambda m: re.sub(r'\swidth="[^"]*"\s+height="[^"]*"', ' class="chart" role="img"', m.group(0)),
        text,
        count=1,
    )
    if title:
        from html import escape

        text = text.replace(">", f"><title>{escape(title)}</title>", 1)
    return text


def to_png(fig, path, dpi: int = 144) -> None:
    from vramfit.userfiles import write_output

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    write_output(path, buf.getvalue(), "--markdown")  # atomic: an interrupted run keeps the old file
