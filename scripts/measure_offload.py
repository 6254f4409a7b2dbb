"""Measure FSDP2 (CPU offload on one GPU, or sharded over several) under an emulated card, against the estimate.

    python scripts/measure_offload.py --out $OUT/offload.json [--models mistral-7b:4GB,llama-3.2-1b:4GB]
    python scripts/measure_offload.py --out $OUT/fsdp2.json --grid benchmarks/engine_grids/fsdp_qlora_2gpu.toml \\
        --find-min 3

For each run: the QLoRA recipe (nf4, bnb_4bit_quant_storage = the compute dtype, LoRA r=16 on q_proj and
v_proj, 512 tokens, micro-batch 1, checkpointing, torch AdamW; on the CPU with offload) through
``accelerate launch`` with the emitted FSDP2 config, one process per GPU, each under
``set_per_process_memory_fraction`` at what the card leaves PyTorch (usable - CUDA context). Records every
rank's peaks per phase, host RSS / pinned bytes, the memory outside PyTorch's allocator (NCCL, CUDA context),
step seconds, whether checkpointing recomputed, and the estimate (``vramfit estimate``) beside it.

``--grid FILE``: runs as data ([configs.NAME] with model, vram, gpus, offload and TrainConfig keys).
``--find-min N``: after the run under the card's cap, N bisection steps for the smallest cap (per GPU) under
which the run still trains, between the peak allocated and the cap (or the peak reserved, uncapped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import tomllib

from vramfit.config import TrainConfig
from vramfit.gpus import resolve_card
from vramfit.models import resolve_model
from vramfit.probe.engine_probe import probe_engine

DEFAULT = "mistral-7b:4GB,llama-3.2-1b:4GB,qwen2.5-1.5b:4GB,llama-3.2-3b:4GB"
RUN_KEYS = ("model", "vram")
ENGINE_KEYS = ("gpus", "offload", "expandable_segments", "load", "port", "trace_to")


def runs_of(args) -> list[dict]:
    """The runs to measure: the grid's entries, or ``--models`` with ``--gpus`` / ``--offload``."""
    if args.grid:
        with open(args.grid, "rb") as f:
            grid = tomllib.load(f)["configs"]
        only = set(args.only.split(",")) if getattr(args, "only", None) else None
        return [{"name": n, **entry} for n, entry in grid.items() if only is None or n in only]
    out = []
    for item in args.models.split(","):
        name, _, vram = item.partition(":")
        out.append({"name": name, "model": name, "vram": vram or "4GB", "gpus": args.gpus,
                    "offload": args.offload, "load": args.load,
                    **({"expandable_segments": args.expandable_segments} if args.expandable_segments else {})})  # fmt: skip
    return out


def split_run(run: dict) -> tuple[TrainConfig, dict]:
    """A run's TrainConfig (torch AdamW unless it says otherwise) and its engine keys (gpus, offload, ...)."""
    engine = {"gpus": 1, "offload": "cpu", **{k: run[k] for k in ENGINE_KEYS if k in run}}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in run.items()
                 if k not in (*RUN_KEYS, *ENGINE_KEYS, "name")}  # fmt: skip
    return TrainConfig(optimizer="adamw_torch").with_(**overrides), engine


def one(run: dict, steps: int, device: str, n_find: int) -> dict:
    arch, card = resolve_model(run["model"]), resolve_card(vram=run["vram"])
    cfg, engine = split_run(run)
    row = probe_engine(arch, cfg, card, engine, steps, device, n_find)
    return {"name": run["name"], "model": run["model"], "vram": run["vram"], **row}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--models", default=DEFAULT, help="model:vram,... [default: %(default)s]")
    p.add_argument("--gpus", type=int, default=1, help="processes (GPUs) per run with --models [1]")
    p.add_argument("--offload", choices=("none", "cpu"), default="cpu", help="with --models [cpu]")
    p.add_argument("--grid", help="a TOML grid of runs (benchmarks/engine_grids/fsdp_qlora_2gpu.toml)")
    p.add_argument("--only", help="with --grid: the runs of these names (comma-separated) [all]")
    p.add_argument("--find-min", type=int, default=0, help="bisection steps for the smallest cap [0]")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument(
        "--port", type=int, default=29517, help="accelerate's main process port (one per parallel run)"
    )
    p.add_argument(
        "--trace-dir", help="write each run's allocator trace of the steps here (NAME.rankN.trace.json.gz)"
    )
    p.add_argument("--load", choices=("gpu", "cpu"), default="gpu",
                   help="with --models: quantize the base on the GPU before the cap, or on the CPU under it [gpu]")  # fmt: skip
    p.add_argument(
        "--expandable-segments", action="store_true", help="with --models: expandable_segments:True"
    )
    args = p.parse_args(argv)
    import torch

    from vramfit.environment import environment

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for run in runs_of(args):
        trace = {"trace_to": os.path.join(args.trace_dir, run["name"])} if args.trace_dir else {}
        rows.append(one({"port": args.port, **trace, **run}, args.steps, device, args.find_min))
        print(json.dumps({k: rows[-1].get(k) for k in ("name", "error_peak_allocated", "error")}), flush=True)
        with open(args.out, "w") as f:
            json.dump({"command": " ".join(sys.argv), "environment": environment(query_gpu=device == "cuda"),
                       "runs": rows}, f, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
