"""``vramfit probe --offload cpu`` / ``--gpus N``: the run through FSDP2 (:mod:`vramfit.probe.engine_probe`)."""

from __future__ import annotations

import argparse
import json
import math

from vramfit.errors import InputError

# what the engine's loop (vramfit/probe/engine_child.py) does not run: the flag and why
UNSUPPORTED = {
    "snapshot": ("--snapshot", "the engine's ranks record no memory snapshot"),
    "weights": ("--weights", "the engine's ranks build the model from its config with random weights"),
    "html": ("--html", "the report pages show single-GPU probes; use --json"),
    "markdown": ("--markdown", "the report pages show single-GPU probes; use --json"),
}


def _check(args: argparse.Namespace, cfg) -> None:
    for attr, (flag, why) in UNSUPPORTED.items():
        if getattr(args, attr, None):
            raise InputError(flag, f"not with --offload cpu or --gpus > 1: {why}")
    if cfg.trainer != "hf" or cfg.resolved_loss != "full":
        raise InputError("--trainer", "with --offload cpu or --gpus > 1 the probe runs accelerate's loop with the "
                         "model's own loss; accepted: --trainer hf --loss full")  # fmt: skip


def _device(args: argparse.Namespace) -> str:
    if args.device == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise InputError(
            "--device", "no CUDA GPU here; --device cpu runs the engine over gloo without measuring"
        )
    return "cuda"


def run_engine(args: argparse.Namespace, arch, card, offload: str, gpus: int) -> int:
    from vramfit.cli.train_flags import config_from_args
    from vramfit.config import TrainConfig
    from vramfit.estimate.engine import check_engine
    from vramfit.probe.engine_probe import probe_engine
    from vramfit.units import parse_size

    base = TrainConfig(optimizer="adamw_torch") if offload == "cpu" else None
    cfg = config_from_args(args, base)
    check_engine(cfg, offload, gpus)
    _check(args, cfg)
    device = _device(args)
    steps = 0
    if args.find_min and card is not None:
        resolution = parse_size(args.resolution, "--resolution")
        steps = max(1, math.ceil(math.log2(max(2, card.usable_bytes // max(1, resolution)))))
    from vramfit.cli.allocator_flags import allocator_from_args

    run = {
        "gpus": gpus,
        "offload": offload,
        "expandable_segments": allocator_from_args(args).expandable_segments,
        "timeout": args.timeout,  # per trial: the engine runs its trials one at a time (--parallel is unused)
    }
    row = probe_engine(arch, cfg, card, run, steps=args.steps, device=device, find_min_steps=steps)
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(summary(row))
    if "error" in row:
        return 2
    return 1 if row.get("oom") else 0


def summary(row: dict) -> str:
    """The measurement in a few lines: what ran, the peaks beside the estimate, host memory, step time."""
    from vramfit.units import format_bytes

    est = row["estimate"]
    lines = [f"vramfit probe: FSDP2, {row['gpus']} process(es), offload {row['offload']}"
             + (f", capped at {format_bytes(row['cap_bytes'])} per GPU" if row.get("cap_bytes") else "")]  # fmt: skip
    if "error" in row:
        return "\n".join([*lines, f"the engine failed: {row['error'][-600:]}"])
    ranks = row["measured"]
    if row.get("oom"):
        why = next(r.get("oom") for r in ranks if r.get("oom"))
        lines.append(f"out of memory under the cap: {why}")
    peak = row.get("measured_peak_allocated_bytes")
    if peak:
        lines.append(f"peak allocated: measured {format_bytes(peak)} (largest rank), estimated "
                     f"{format_bytes(est['peak_allocated_bytes'])} ({100 * row['error_peak_allocated']:+.1f} %)")  # fmt: skip
    if row.get("find_min"):
        lines.append(f"smallest cap that trains: {format_bytes(row['find_min']['min_cap_bytes'])} per GPU "
                     f"(estimated requirement {format_bytes(est['allocator_required_bytes'])})")  # fmt: skip
    pinned = max((r.get("pinned_param_bytes") or 0 for r in ranks), default=0)
    rss = max((r.get("host_rss_peak_bytes") or 0 for r in ranks), default=0)
    lines.append(f"host memory: pinned {format_bytes(pinned)} (estimated "
                 f"{format_bytes(est['host_memory_bytes']['pinned'])}), process RSS peak {format_bytes(rss)}")  # fmt: skip
    secs = [s for r in ranks for s in r.get("step_seconds", [])[1:]]
    if secs:
        lines.append(f"step time after the first: {sum(secs) / len(secs):.2f} s")
    lines.append("the load is not part of the capped run (the base is quantized on the GPU and moved to the host "
                 "first); the cap does not cover the CUDA context or NCCL's buffers")  # fmt: skip
    return "\n".join(lines)
