"""``vramfit gpus``: the GPU database."""

from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  vramfit gpus                          # every card, smallest memory first
  vramfit gpus --min-vram 8GB --max-vram 12GB
  vramfit gpus --json | jq '.[] | select(.supports_bf16) | .name'
  vramfit estimate --model mistral-7b --gpu rtx-3060      # --gpu accepts any name or alias listed here

Memory is what nvidia-smi reports as the total (the size on the box in GiB, except datacenter cards with
ECC on). The driver's reservation, the desktop's share and the CUDA context come off it before training
gets any; the context and desktop values are assumptions (override with --cuda-context, --display-reserve)
unless marked measured.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gpus",
        help="list the GPU database (--gpu accepts its names and aliases)",
        description="List the cards vramfit knows: memory, compute capability and what follows from it "
        "(bf16, bitsandbytes nf4/fp4 and int8), and the memory each keeps before training starts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--min-vram", metavar="SIZE", help="only cards sold with at least this much memory, e.g. 8GB"
    )
    p.add_argument(
        "--max-vram", metavar="SIZE", help="only cards sold with at most this much memory, e.g. 12GB"
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON (sizes in int bytes)")
    p.set_defaults(run=run)


def gpus_json(min_vram: str | None = None, max_vram: str | None = None) -> list[dict]:
    """The database, filtered by the --min-vram / --max-vram sizes, as JSON-ready dicts."""
    from vramfit.errors import InputError
    from vramfit.gpus import list_gpus
    from vramfit.units import format_bytes, parse_size

    lo = parse_size(min_vram, "--min-vram") if min_vram is not None else None
    hi = parse_size(max_vram, "--max-vram") if max_vram is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise InputError(
            "--max-vram", f"{format_bytes(hi)} is below --min-vram {format_bytes(lo)}; no card can match"
        )
    return [g.to_json() for g in list_gpus(lo, hi)]


def _yes(flag: bool) -> str:
    return "yes" if flag else "[dim]no[/]"


def _table(rows: list[dict], wide: bool):
    """The rich table of ``rows`` (:func:`gpus_json`); ``wide``: with each card's full name."""
    from rich import box
    from rich.table import Table

    from vramfit.units import GiB, MiB

    table = Table(
        title="GPU database (--gpu NAME)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 0),  # the box's blank column divider is the only gap
    )
    table.add_column("name", no_wrap=True)
    if wide:
        table.add_column("card", no_wrap=True)
    table.add_column("GiB", justify="right", no_wrap=True)
    table.add_column("cc", justify="right", no_wrap=True)
    table.add_column("arch", no_wrap=True)
    for col in ("bf16", "nf4", "int8"):
        table.add_column(col, no_wrap=True)
    for col in ("ctx", "drv", "disp"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        cc = r["compute_capability"]
        context = f"{r['cuda_context_bytes'] / MiB:.0f}" + ("" if r["cuda_context_measured"] else "*")
        driver = f"{r['driver_reserve_bytes'] / MiB:.0f}" + ("" if r["driver_reserve_source"] else "*")
        card = [r["display_name"].removeprefix("NVIDIA ").removeprefix("GeForce ")] if wide else []
        table.add_row(
            r["name"],
            *card,
            f"{r['memory_bytes'] / GiB:.2f}",
            f"{cc[0]}.{cc[1]}",
            r["architecture"],
            _yes(r["supports_bf16"]),
            _yes(r["supports_4bit"]),
            _yes(r["supports_int8"]),
            context,
            driver,
            f"{r['display_reserve_bytes'] / MiB:.0f}",
        )
    return table


def run(args: argparse.Namespace) -> int:
    rows = gpus_json(args.min_vram, args.max_vram)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0

    from vramfit.cli.render import console as make_console

    console = make_console()
    table = _table(rows, wide=console.width >= 120)  # the card's full name only where it fits
    if not rows:
        console.print("no card in the database matches --min-vram / --max-vram")
        return 0
    console.print(table)
    console.print(
        "GiB: nvidia-smi's total. cc: compute capability (bf16 needs 8.0+, nf4/fp4 6.0+, int8 7.5+). "
        "In MiB: ctx = the training process's CUDA context, drv = kept by the driver (invisible to "
        "CUDA), disp = assumed held by the desktop (0 for laptops with hybrid graphics and datacenter "
        "cards). * = assumed, not measured on that card.",
        style="dim",
    )
    return 0
