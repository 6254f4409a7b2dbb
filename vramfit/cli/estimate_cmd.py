"""``vramfit estimate``: the memory breakdown of one training configuration."""

from __future__ import annotations

import argparse
import json

from vramfit.cli.train_flags import (
    add_card_flags,
    add_model_flag,
    add_train_flags,
    add_verbose_flag,
    config_from_args,
)

EPILOG = """examples:
  vramfit estimate --model mistral-7b
  vramfit estimate --model llama-3.2-1b --seq-len 2048 --batch-size 4 --gpu rtx-3060
  vramfit estimate --model qwen2.5-7b --targets all-linear --rank 64 --vram 12GB --json
  vramfit estimate --model ./my-model/config.json --method lora --optimizer adamw_torch

exit codes: 0 estimated (and fits, when a card is given), 1 does not fit or only may fit (the card is
between the two ends of the requirement's range), 2 bad input"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "estimate",
        help="memory breakdown of one training configuration",
        description="Estimate the peak GPU memory of a fine-tuning run and split it into components.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_flag(p)
    add_train_flags(p)
    add_card_flags(p)
    from vramfit.cli.engine_flags import add_engine_flags

    add_engine_flags(p)
    from vramfit.cli.allocator_flags import add_allocator_flags

    add_allocator_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON (sizes in int bytes)")
    add_verbose_flag(p)
    try:
        from vramfit.cli.report_flags import add_report_flags

        add_report_flags(p)
    except ImportError:  # reports not installed in this build
        pass
    p.set_defaults(run=run)


def resolve_card_from_args(args):
    if not (args.gpu or args.vram):
        for flag in ("cuda_context", "display_reserve"):
            if getattr(args, flag, None):
                from vramfit.errors import InputError

                raise InputError(
                    "--" + flag.replace("_", "-"), "needs a card: give --gpu NAME or --vram SIZE too"
                )
        return None
    from vramfit.gpus import resolve_card

    return resolve_card(
        gpu=args.gpu, vram=args.vram, cuda_context=args.cuda_context, display_reserve=args.display_reserve
    )


def run(args: argparse.Namespace) -> int:
    from vramfit.cli.report_flags import check_report_outputs
    from vramfit.models import resolve_model

    check_report_outputs(args)
    arch = resolve_model(args.model)
    card = resolve_card_from_args(args)
    from vramfit.cli.allocator_flags import allocator_from_args
    from vramfit.cli.engine_flags import engine_args, estimate_fn
    from vramfit.config import TrainConfig

    alloc = allocator_from_args(args)
    offload, gpus = engine_args(args)
    # with --offload cpu the optimizer steps on the CPU: torch's AdamW unless --optimizer says otherwise
    base = TrainConfig(optimizer="adamw_torch") if offload == "cpu" else None
    est = estimate_fn(offload, gpus, alloc.expandable_segments)(arch, config_from_args(args, base), card)
    written = []
    if getattr(args, "html", None) or getattr(args, "markdown", None):
        from vramfit.cli.report_flags import write_reports

        written = write_reports(args, est)
    if args.json:
        print(json.dumps({**est.to_json(), "allocator": alloc.to_json()}, indent=2))
    else:
        from vramfit.cli.render import console, describe_config, estimate_table, print_warnings, verdict_line

        con = console()
        con.print(
            f"[bold]{arch.name}[/] ({arch.total_params / 1e9:.2f}B parameters, {est.trainable_params:,} trainable)"
        )
        con.print(describe_config(est.config), style="dim")
        con.print(f"allocator: {alloc.text()}", style="dim", soft_wrap=True)
        con.print(estimate_table(est))
        line = verdict_line(est)
        if line:
            con.print(line)
        print_warnings(con, (*alloc.warnings, *est.warnings), verbose=args.verbose)
        for path in written:
            con.print(f"wrote {path}")
    if est.verdict is not None and not est.verdict.fits:
        return 1
    return 0
