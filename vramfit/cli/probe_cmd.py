"""``vramfit probe``: run real training steps on this GPU and put the measurement beside the estimate."""

from __future__ import annotations

import argparse
import json

from vramfit.cli.train_flags import add_card_flags, add_model_flag, add_train_flags, config_from_args
from vramfit.inputs import FLAG_RANGES, number_flag

EPILOG = """examples:
  vramfit probe --model mistral-7b
  vramfit probe --model llama-3.2-1b --seq-len 2048 --gpu rtx-3060 --find-min
  vramfit probe --model mistral-7b --emulate-vram 6GB --snapshot run.pickle --json
  vramfit probe --model ./my-model --weights ./my-model --method lora --optimizer adamw_torch
  vramfit probe --model mistral-7b --vram 4GB --offload cpu     # FSDP2 through accelerate launch

The model is built from its config with random weights (memory does not depend on their values) and
quantized on the way in, as from_pretrained does; nothing is downloaded. --gpu / --emulate-vram cap
PyTorch's allocator at what that card leaves free, on a bigger GPU.

exit codes: 0 measured (and fits, when a card is emulated), 1 does not fit, 2 bad input or no GPU"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "probe",
        help="measure a configuration with real training steps on the GPU",
        description="Run a few real training steps and measure the memory, phase by phase and component by component.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_flag(p)
    add_train_flags(p)
    add_card_flags(p)
    from vramfit.cli.allocator_flags import add_allocator_flags

    add_allocator_flags(p)
    _add_probe_flags(p)
    from vramfit.cli.engine_flags import add_engine_flags

    add_engine_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON (sizes in int bytes)")
    from vramfit.cli.report_flags import add_report_flags

    add_report_flags(p)
    p.set_defaults(run=run)


def _add_probe_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("probe")
    g.add_argument(
        "--steps",
        type=number_flag(FLAG_RANGES["steps"]),
        default=3,
        help="training steps to run (>= 2 measures a steady step) [default: 3]",
    )
    g.add_argument(
        "--emulate-vram", help="cap the allocator as on a card of this size, e.g. 6GB (like --vram)"
    )
    g.add_argument(
        "--find-min",
        action="store_true",
        help="search allocator_required_bytes (the smallest cap that works)",
    )
    g.add_argument("--resolution", default="32MiB", help="resolution of --find-min [default: 32MiB]")
    g.add_argument("--parallel", type=number_flag(FLAG_RANGES["parallel"]), default=8, metavar="N",
                   help="--find-min: at most N capped trials side by side, fewer if the GPU cannot hold "
                   "them [default: 8]")  # fmt: skip
    g.add_argument(
        "--snapshot", metavar="FILE", help="save the memory snapshot (pickle for pytorch.org/memory_viz)"
    )
    g.add_argument("--no-snapshot", dest="record", action="store_false",
                   help="do not record a snapshot (faster; no attribution by component)")  # fmt: skip
    g.add_argument(
        "--timeout",
        type=number_flag(FLAG_RANGES["timeout"]),
        default=900,
        help="seconds per round of trials (with --offload / --gpus: per trial, one at a time) [default: 900]",
    )
    g.add_argument("--weights", metavar="PATH", help="load this local checkpoint instead of random weights")
    g.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu runs the pipeline without measuring memory (for testing) [default: cuda]")  # fmt: skip


def _card(args):
    from vramfit.errors import InputError

    if args.emulate_vram and args.vram:
        raise InputError("--emulate-vram", "give either --emulate-vram or --vram, not both")
    from vramfit.cli.estimate_cmd import resolve_card_from_args

    if not args.emulate_vram:
        return resolve_card_from_args(args)
    args.vram = args.emulate_vram
    try:
        return resolve_card_from_args(args)
    except InputError as e:  # the size came from --emulate-vram: say so
        if e.flag != "--vram":
            raise
        raise InputError("--emulate-vram", e.message) from None


def _progress_printer(con):
    from rich.status import Status

    status = Status("starting the trial process", console=con)
    status.start()

    def on_event(e: dict) -> None:
        kind = e.get("event")
        if kind == "phase":
            status.update("building the model (random weights, quantized on the way in)"
                          if e["phase"] == "load" else f"{e['phase']}")  # fmt: skip
        elif kind == "step":
            status.update(f"step {e['step']} of {e['of']}")
        elif kind == "round":
            caps = ", ".join(f"{c / 2**30:.2f}" for c in e["caps"])
            status.update(f"--find-min round {e['round']}: {len(e['caps'])} trials with caps {caps} GiB")

    return status, on_event


def run(args: argparse.Namespace) -> int:
    from vramfit.cli.report_flags import check_report_outputs
    from vramfit.models import resolve_model
    from vramfit.probe import probe
    from vramfit.units import parse_size

    check_report_outputs(args, ("--snapshot", args.snapshot))
    arch = resolve_model(args.model)
    card = _card(args)
    from vramfit.cli.engine_flags import engine_args, uses_engine

    offload, gpus = engine_args(args)
    if uses_engine(offload, gpus):
        from vramfit.cli.probe_engine import run_engine

        return run_engine(args, arch, card, offload, gpus)
    cfg = config_from_args(args)
    resolution = parse_size(args.resolution, "--resolution")
    from vramfit.cli.render import console

    con = console(stderr=True)
    status, on_event = _progress_printer(con) if not args.json else (None, None)
    try:
        result = probe(arch, cfg, card, steps=args.steps, device=args.device, snapshot_path=args.snapshot,
                       find_min_cap=args.find_min, resolution=resolution, max_parallel=args.parallel,
                       timeout=args.timeout, weights=args.weights, record=args.record or bool(args.snapshot),
                       expandable_segments=args.expandable_segments, on_event=on_event)  # fmt: skip
    finally:
        if status is not None:
            status.stop()
    from vramfit.cli.report_flags import write_reports

    written = write_reports(args, result)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        from vramfit.cli.probe_render import render

        render(result, console())
        for path in written:
            print(f"wrote {path}")
    return 1 if result.fits is False else 0
