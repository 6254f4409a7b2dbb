"""Rich rendering of a probe: estimate and measurement side by side, per component and per phase."""

from __future__ import annotations

from vramfit.estimate.result import COMPONENTS
from vramfit.probe.result import ProbeResult
from vramfit.units import format_bytes


def _b(n: int | None) -> str:
    return "-" if n is None else format_bytes(n)


def _diff(measured: int | None, estimated: int | None) -> str:
    if measured is None or estimated is None:
        return ""
    d = measured - estimated
    pct = f" ({d / estimated:+.0%})" if estimated else ""
    return f"{'+' if d >= 0 else '-'}{format_bytes(abs(d))}{pct}"


def comparison_table(r: ProbeResult):
    from rich.table import Table

    m, est = r.measured, r.estimate or {}
    title = f"{r.model}: measured peak in {m.peak_phase or '-'}"
    if est.get("peak_phase"):
        title += f", estimated in {est['peak_phase']}"
    t = Table(title=title, title_justify="left")
    t.add_column("")
    t.add_column("estimate", justify="right")
    t.add_column("measured", justify="right")
    t.add_column("measured - estimate", justify="right")
    eb = est.get("breakdown") or {}
    mb = m.breakdown or {}
    for c in COMPONENTS:
        t.add_row(c, _b(eb.get(c)), _b(mb.get(c)) if m.breakdown else "-", _diff(mb.get(c), eb.get(c)))
    t.add_section()
    ent = est.get("non_torch_bytes") or {}
    mnt = m.non_torch_bytes or {}
    rows = [
        ("[bold]peak allocated[/]", est.get("peak_allocated_bytes"), m.peak_allocated_bytes),
        ("allocator required", est.get("allocator_required_bytes"), m.allocator_required_bytes),
        ("peak reserved", est.get("peak_reserved_bytes"), m.peak_reserved_bytes),
        ("CUDA context", ent.get("cuda_context"), mnt.get("cuda_context")),
        ("paged optimizer", ent.get("paged_optimizer"), mnt.get("paged_optimizer")),
        ("[bold]required VRAM[/]", est.get("required_vram_bytes"), m.required_vram_bytes),
    ]
    for name, e, v in rows:
        t.add_row(name, _b(e), _b(v), _diff(v, e))
    return t


def phase_table(r: ProbeResult):
    from rich.table import Table

    t = Table(title="phases (peaks reset at each boundary)", title_justify="left")
    for col in ("phase", "peak allocated", "peak reserved", "seconds"):
        t.add_column(col, justify="left" if col == "phase" else "right")
    for p in r.measured.phases:
        t.add_row(p.name, _b(p.peak_allocated_bytes), _b(p.peak_reserved_bytes), f"{p.seconds:.2f}")
    return t


# What a cap on a bigger GPU does not emulate (said wherever a capped figure is shown).
EMULATION_LIMITS = (
    "the cap covers PyTorch's caching allocator only: not the CUDA context (the card's own is added from "
    "vramfit gpus), not bitsandbytes' paged optimizer state (CUDA managed memory), and not workspaces that "
    "libraries size from the free memory they see, which is the big GPU's"
)


def verdict(r: ProbeResult) -> str:
    """The shared verdict sentence of the measurement on the card ("" when no card was given)."""
    from vramfit.cli.render import rich_verdict
    from vramfit.report.verdict import probe_verdict_text

    words = probe_verdict_text(r.verdict, r.measured)
    return rich_verdict(words) if words else ""


def render(r: ProbeResult, con) -> None:
    env = r.environment
    where = ", ".join(
        f"{k} {env[k]}" for k in ("torch", "transformers", "peft", "bitsandbytes") if env.get(k)
    )
    con.print(f"[bold]{r.model}[/] on {env.get('gpu') or r.measured.device} ({where})")
    con.print(comparison_table(r))
    con.print(phase_table(r))
    m = r.measured
    if m.step_seconds is not None:
        con.print(
            f"step time {m.step_seconds:.2f} s; model built in {m.build_seconds or 0:.1f} s; total {m.total_seconds or 0:.1f} s"
        )
    if r.trials:
        tried = ", ".join(
            f"{t['cap_bytes'] / 2**30:.2f} GiB {'ok' if t['fits'] else 'OOM'}" for t in r.trials
        )
        con.print(f"--find-min trials: {tried}", style="dim")
    if m.cap_bytes is not None or r.trials:
        con.print(f"emulation: {EMULATION_LIMITS}", style="dim", soft_wrap=True)
    if env.get("allocator_expandable_segments") is not None:
        on = "on" if env["allocator_expandable_segments"] else "off"
        con.print(
            f"allocator: expandable segments {on} (as torch {env.get('allocator_torch')} reported)",
            style="dim",
        )
    sim = (m.raw or {}).get("simulated")
    if sim:
        from vramfit.probe.allocator_replay import mismatch_words, model_words

        off = mismatch_words(sim)
        con.print(
            f"allocator model ({model_words(sim)}; the run's trace replayed under caps): "
            f"needs {_b(sim['required_bytes'])}"
            + ("" if m.allocator_required_bytes else "; --find-min measures it with capped runs")
            + (f" ({off})" if off else ""),
            style="dim",
        )
    line = verdict(r)
    if line:
        con.print(line)
    for w in r.warnings:
        con.print(f"[yellow]warning:[/] {w}")
    if r.snapshot_path:
        con.print(
            f"snapshot saved to {r.snapshot_path} (open it at https://pytorch.org/memory_viz)", style="dim"
        )
