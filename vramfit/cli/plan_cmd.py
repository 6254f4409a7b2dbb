"""``vramfit plan``: the best fine-tuning run that fits the card, or an honest no with numbers."""

from __future__ import annotations

import argparse
import json
import sys

from vramfit.cli.train_flags import (
    add_card_flags,
    add_model_flag,
    add_train_flags,
    add_verbose_flag,
    explicit_fields,
)
from vramfit.inputs import FLAG_RANGES, number_flag

EPILOG = """examples:
  vramfit plan --model mistral-7b --vram 4GB          # nothing fits: why, and what would
  vramfit plan --model llama-3.2-1b --gpu rtx-2060    # fp16 compute: the card has no bf16
  vramfit plan --model qwen2.5-1.5b --vram 8GB --seq-len 1024 --effective-batch 32
  vramfit plan --model mistral-7b --vram 12GB --method qlora --targets all-linear --top 5 --json

Every configuration flag you give is held; the others are searched. --seq-len is a minimum.
exit codes: 0 a configuration fits, 1 nothing fits, 2 bad input"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="the best training configuration that fits a card",
        description="Search methods, quantization, LoRA rank and targets, sequence length, micro-batch, "
        "gradient checkpointing, optimizer and attention for the best run that fits the card with a "
        "safety margin; print it as code to paste, with the next best runs and the price of each knob.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_flag(p)
    add_train_flags(p)
    add_card_flags(p)
    from vramfit.cli.engine_flags import add_engine_flags

    add_engine_flags(p)
    from vramfit.cli.allocator_flags import add_allocator_flags

    add_allocator_flags(p, platform=True)
    _add_planning_flags(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON (sizes in int bytes)")
    from vramfit.plan.emit import TARGETS

    p.add_argument(
        "--emit", choices=TARGETS,
        help="print only the pick as the configuration of this tool: Python for transformers / trl, YAML for "
        "axolotl / llamafactory (their current key names)",
    )  # fmt: skip
    add_verbose_flag(p)
    from vramfit.cli.report_flags import add_report_flags

    add_report_flags(p)
    p.set_defaults(run=run)


def _add_planning_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("planning")
    g.add_argument(
        "--effective-batch", type=number_flag(FLAG_RANGES["effective_batch"]),
        help="sequences per optimizer step (micro-batch x accumulation); kept while the micro-batch is "
        "searched [default: 16]",
    )  # fmt: skip
    g.add_argument(
        "--margin",
        help="memory kept free beyond the estimate: a size (300MiB) or a percentage of the estimate (15%%) "
        "[default: 3%% + 64 MiB, provisional]",
    )
    g.add_argument(
        "--top",
        type=number_flag(FLAG_RANGES["top"]),
        default=3,
        help="how many alternatives to show [default: 3]",
    )
    g.add_argument(
        "--verify", action="store_true",
        help="run the probe on the pick (needs a CUDA GPU and the probe extra); on a miss, the next candidate",
    )  # fmt: skip


def _card_args(args: argparse.Namespace) -> dict[str, str]:
    return {
        k: getattr(args, k)
        for k in ("gpu", "vram", "cuda_context", "display_reserve")
        if getattr(args, k, None)
    }


def run(args: argparse.Namespace) -> int:
    from vramfit.cli.allocator_flags import allocator_from_args
    from vramfit.cli.estimate_cmd import resolve_card_from_args
    from vramfit.errors import InputError
    from vramfit.models import resolve_model
    from vramfit.plan import parse_margin, plan

    if not (args.gpu or args.vram):
        raise InputError(
            "--vram", "plan needs the card: give --vram SIZE (e.g. 4GB) or --gpu NAME (vramfit gpus)"
        )
    from vramfit.cli.report_flags import check_report_outputs

    check_report_outputs(args)
    arch = resolve_model(args.model)
    card = resolve_card_from_args(args)
    fixed = {f: getattr(args, f) for f in explicit_fields(args) if f != "seq_len"}
    if args.emit:
        from vramfit.plan.emit import stack_fields

        fixed = stack_fields(args.emit, fixed)
    from vramfit.cli.engine_flags import engine_args
    from vramfit.plan.engine_plan import plan_with_engine

    offload, gpus = engine_args(args)
    _check_emit(args.emit, offload, gpus)
    common = dict(
        min_seq=args.seq_len,
        effective_batch=args.effective_batch,
        margin=parse_margin(args.margin) if args.margin is not None else None,
        top=args.top,
        card_args=_card_args(args),
        verify=args.verify,
        allocator=(allocator := allocator_from_args(args, plan=True)),
    )
    result, extra = plan_with_engine(plan, arch, card, fixed, offload, gpus, common)
    from vramfit.cli.report_flags import write_reports

    written = write_reports(args, result)
    if args.emit and _emit(args.emit, arch, result, allocator):
        return 0
    if args.json:
        print(json.dumps({**result.to_json(), **extra(result.to_json())}, indent=2))
    else:
        _print_plan(result, extra, written, args.verbose)
    return 0 if result.fits else 1


def _check_emit(target: str | None, offload: str, gpus: int) -> None:
    """An FSDP2 pick is emitted as train.py for accelerate launch: only ``--emit transformers`` with the engine."""
    from vramfit.cli.engine_flags import uses_engine
    from vramfit.errors import InputError

    if target not in (None, "transformers") and uses_engine(offload, gpus):
        raise InputError("--emit", f"with --offload cpu or --gpus > 1 the pick runs through FSDP2, which vramfit "
                         f"emits as train.py for accelerate launch, not as {target}; accepted: transformers")  # fmt: skip


def _emit(target: str, arch, result, allocator) -> bool:
    """Print the pick as ``target``'s configuration; False (and why, on stderr) when nothing fits."""
    if result.recommended is None:
        print(f"vramfit plan: nothing fits, so there is no {target} configuration to emit", file=sys.stderr)
        return False
    if result.code_kind == "fsdp2":  # train.py for accelerate launch (run() refused the other targets)
        print(result.code, end="" if result.code.endswith("\n") else "\n")
        return True
    from vramfit.plan.emit import emit

    env = allocator.env_line() if allocator is not None and allocator.expandable_segments else None
    print(emit(target, arch, result.recommended.config, env_line=env), end="")
    return True


def _print_plan(result, extra, written: list, verbose: bool) -> None:
    """The plan as text: the table, the engine's notes and files, the reports written."""
    from vramfit.cli.plan_render import render

    render(result, verbose=verbose)
    for line in extra(result.to_json())["engine_notes"]:
        print(line)
    for name, text in extra(result.to_json())["code"].get("engine_files", {}).items():
        print(f"--- {name} ---")
        print(text, end="")
    for path in written:
        print(f"wrote {path}")
