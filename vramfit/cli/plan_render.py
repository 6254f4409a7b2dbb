"""Rich rendering of a :class:`~vramfit.plan.PlanResult` (``vramfit plan`` without ``--json``)."""

from __future__ import annotations

from vramfit.plan.result import PlanResult
from vramfit.units import format_bytes as fb


def _card_line(r: PlanResult) -> str:
    c = r.card
    name = f"{c['name']} ({fb(c['capacity_bytes'])}, " if c["name"] else f"a {fb(c['capacity_bytes'])} card ("
    return f"{name}{fb(c['usable_bytes'])} usable, CUDA context {fb(c['cuda_context_bytes'])})"


def _knob(name: str) -> str:
    """A knob as the output names it: the configuration's label (report tables), not its JSON key."""
    from vramfit.report.tables import CONFIG_LABELS

    return CONFIG_LABELS.get(name, name.replace("_", " "))


def _signed(n: int) -> str:
    return ("+" if n > 0 else "-" if n < 0 else "±") + fb(abs(n))


def render(r: PlanResult, con=None, verbose: bool = False) -> None:
    from vramfit.cli.render import console

    con = con or console()
    con.print(f"[bold]vramfit plan[/]: {r.model} on {_card_line(r)}", soft_wrap=True)
    for note in r.notes:
        con.print(f"  [dim]assumption:[/] {note}", soft_wrap=True)
    con.print(f"  [dim]safety margin:[/] {r.margin.describe()}", soft_wrap=True)

    _render_verification(r, con)
    if r.recommended is None and r.no_fit is None:
        con.print(
            f"[bold red]None of the {len(r.verification)} best candidates fits for real[/] (--verify): "
            "the estimate is too low for this setup; please report it with the probe's JSON"
        )
    elif r.recommended is None:
        _render_no_fit(r, con)
    else:
        _render_pick(r, con, verbose)

    s = r.search
    con.print(f"[dim]objective: {'; '.join(r.objective)}[/]", soft_wrap=True)
    con.print(
        f"[dim]searched {s.configurations:,} configurations in {s.seconds * 1000:.0f} ms: {s.estimate_calls:,} "
        "estimated, the others follow from those (a longer sequence or a bigger micro-batch never needs less "
        "memory, and a setting that needs more memory for the same result is never picked)[/]",
        soft_wrap=True,
    )


def _render_no_fit(r: PlanResult, con) -> None:
    from vramfit.cli.render import describe_config

    nf = r.no_fit
    assert nf is not None
    con.print()
    con.print(f"[bold red]Nothing fits[/] {r.model} on this card with your constraints.")
    con.print(f"  smallest configuration: {describe_config(nf.smallest.estimate.config)}", soft_wrap=True)
    for line in nf.reasons:
        con.print(f"  - {line}", soft_wrap=True)
    con.print(
        f"  a card with {fb(nf.card_needed_bytes)} would fit the smallest configuration"
        + (f" (e.g. {', '.join(nf.cards_that_fit)})" if nf.cards_that_fit else ""),
        soft_wrap=True,
    )
    if nf.models_that_fit:
        con.print("  largest built-in models that fit this card with your constraints:")
        for m in nf.models_that_fit:
            con.print(
                f"    {m.name} ({m.total_params / 1e9:.2f}B): needs {fb(m.required_bytes)}, {fb(m.headroom_bytes)} headroom"
                f"  ->  vramfit plan --model {m.name} ...",
                soft_wrap=True,
            )
    else:
        con.print("  no built-in model fits this card with your constraints")


def _render_verification(r: PlanResult, con) -> None:
    for v in r.verification:
        if v.fits:
            res = "[green]fits for real[/]"
        else:
            res = "[red]MISS: ran out of memory[/]" + (f" in {v.oom.get('phase')}" if v.oom else "")
        meas = fb(v.measured_peak_allocated_bytes) if v.measured_peak_allocated_bytes is not None else "-"
        con.print(
            f"verify candidate #{v.rank + 1} on {v.gpu or 'the GPU'} (card emulated): peak allocated predicted "
            f"{fb(v.predicted_peak_allocated_bytes)}, measured {meas}: {res}",
            soft_wrap=True,
        )


def _render_pick(r: PlanResult, con, verbose: bool = False) -> None:
    from vramfit.cli.render import describe_config, estimate_table, print_warnings, rich_verdict
    from vramfit.report.verdict import verdict_text

    p = r.recommended
    con.print()
    con.print(f"[bold green]Recommended[/]: {rich_verdict(verdict_text(p.verdict))}", soft_wrap=True)
    con.print(f"  {describe_config(p.estimate.config)}", soft_wrap=True)
    con.print(f"  {p.estimate.trainable_params:,} trainable parameters", style="dim")
    con.print(estimate_table(p.estimate))
    print_warnings(con, [w for w in p.estimate.warnings if w not in r.notes], verbose=verbose)
    _render_alternatives(r, con)
    _render_knob_prices(r, con)
    con.print("[bold]Code[/] (train.py for accelerate launch with FSDP2, the engine files below):"
              if r.code_kind == "fsdp2"
              else "[bold]Code[/] (the reference recipe with these values):")  # fmt: skip
    con.print(r.code, markup=False, highlight=False, soft_wrap=True)
    con.print("[bold]Same configuration on the command line[/]:")
    con.print(r.estimate_command, markup=False, highlight=False, soft_wrap=True)
    con.print(r.probe_command + "   # measure it on a GPU", markup=False, highlight=False, soft_wrap=True)


def _render_alternatives(r: PlanResult, con) -> None:
    from rich import box
    from rich.table import Table

    if r.alternatives:
        t = Table(title="Next best (what each trades against the recommendation)", title_justify="left",
                  box=box.SIMPLE_HEAD)  # fmt: skip
        t.add_column("#", justify="right")
        t.add_column("trades")
        t.add_column("needs", justify="right")
        t.add_column("headroom", justify="right")
        for i, a in enumerate(r.alternatives, 2):
            t.add_row(
                str(i),
                "; ".join(a.trades[:-1]) or "(same settings)",
                fb(a.required_bytes),
                fb(a.headroom_bytes),
            )
        con.print(t)


def _render_knob_prices(r: PlanResult, con) -> None:
    from rich import box
    from rich.table import Table

    t = Table(
        title="Knob prices on the recommendation (+ costs, - saves)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    t.add_column("knob")
    t.add_column("change")
    t.add_column("memory", justify="right")
    t.add_column("fits?")
    for k in r.knob_prices:
        if not k.required_bytes:
            t.add_row(k.knob, k.change, "-", f"[dim]{k.note}[/]")
            continue
        fits = "[green]yes[/]" if k.fits else "[red]no[/]"
        extra = ", ".join(x for x in (k.note, "you fixed it" if k.fixed else "") if x)
        t.add_row(k.knob, k.change, _signed(k.delta_bytes), fits + (f" [dim]({extra})[/]" if extra else ""))
    con.print(t)
