"""``vramfit models``: the built-in model registry."""

from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  vramfit models                 # table of every built-in model
  vramfit models --json | jq '.[] | {name, total_params}'
  vramfit estimate --model qwen2.5-0.5b    # any name or alias listed here is accepted by --model
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the built-in models (--model accepts their names, aliases and hub ids offline)",
        description="List the built-in models: exact parameter counts, shapes, default attention and the "
        "module names LoRA can target. --model also accepts a local config.json, a model folder or a hub id.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--json", action="store_true", help="print the list as JSON (sizes and counts as integers)"
    )
    p.set_defaults(run=run)


def format_params(n: int) -> str:
    """7241732096 -> '7.24B', 134515008 -> '135M'."""
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def models_json() -> list[dict]:
    """Every registry model as a JSON-ready dict: the ArchSpec's fields plus hub id and aliases."""
    from vramfit.models import REGISTRY, list_models

    out = []
    for spec in list_models():
        entry = REGISTRY[spec.name]
        out.append({**spec.to_json(), "hf_id": entry.hf_id, "aliases": list(entry.aliases)})
    return out


def _table(rows: list[dict]):
    """The rich table of ``rows`` (:func:`models_json`), and the models of each set of LoRA targets."""
    from rich import box
    from rich.table import Table

    # Fits 80 columns; the LoRA target names follow the table, grouped (most models share one set).
    table = Table(
        title="Built-in models (--model NAME)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 0),  # the box's blank column divider is the only gap
    )
    table.add_column("name", no_wrap=True)
    table.add_column("family", no_wrap=True)
    for col in ("params", "vocab", "layers", "hidden", "heads/kv"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("tied", no_wrap=True)
    table.add_column("attn", no_wrap=True)
    targets: dict[tuple[str, ...], list[str]] = {}
    for r in rows:
        table.add_row(
            r["name"],
            r["family"],
            format_params(r["total_params"]),
            f"{r['vocab_size']:,}",
            str(r["num_layers"]),
            str(r["hidden_size"]),
            f"{r['num_heads']}/{r['num_kv_heads']}",
            "yes" if r["tie_word_embeddings"] else "no",
            r["default_attn"],
        )
        targets.setdefault(tuple(r["lora_targets"]), []).append(r["name"])
    return table, targets


def _targets_text(targets: dict[tuple[str, ...], list[str]]) -> str:
    """The LoRA target names: the set most models share, then the models that differ."""
    common = max(targets, key=lambda t: len(targets[t]))
    lines = [f"LoRA targets (--targets): {','.join(common)}"]
    lines += [f"  except {', '.join(names)}: {','.join(t)}" for t, names in targets.items() if t != common]
    lines.append("  and the groups all-linear, attention, mlp.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = models_json()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0

    table, targets = _table(rows)
    from vramfit.cli.render import console as make_console

    console = make_console()
    console.print(table)
    console.print(_targets_text(targets), highlight=False)
    console.print(
        "params: exact total (tied embeddings counted once); attn: what transformers picks when "
        "attn_implementation is not given. --model also accepts a local config.json, a model folder, "
        "or a hub id org/name.",
        highlight=False,
    )
    return 0
