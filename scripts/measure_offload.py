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
import sys

import tomllib

from vramfit.config import TrainConfig
from vramfit.estimate.engine import engine_estimate
from vramfit.gpus import resolve_card
from vramfit.models import resolve_model
from vramfit.probe.emulate import CAP_GRANULE, cap_for_card
from vramfit.probe.launch import LaunchFailed, launch_trial

DEFAULT = "mistral-7b:4GB,llama-3.2-1b:4GB,qwen2.5-1.5b:4GB,llama-3.2-3b:4GB"
RUN_KEYS = ("model", "vram", "gpus", "offload")
ESTIMATE_KEYS = ("peak_allocated_bytes", "peak_phase", "per_gpu_required_vram_bytes", "host_memory_bytes",
                 "nccl_bytes", "slowdown", "breakdown", "warnings")  # fmt: skip


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
                    "offload": args.offload})  # fmt: skip
    return out


def _trial(arch, cfg, run: dict, steps: int, cap) -> dict:
    """Every rank's result, or the launch's failure."""
    try:
        ranks = launch_trial(arch, cfg, gpus=run["gpus"], offload=run["offload"], steps=steps, cap_bytes=cap,
                             timeout=560)  # fmt: skip
    except LaunchFailed as e:
        return {"error": str(e)[-2000:]}
    return {"ranks": ranks, "oom": any(r.get("oom") for r in ranks)}


def find_min(arch, cfg, run: dict, steps: int, lo: int, hi: int, n: int) -> dict:
    """``n`` bisection steps between a cap known to fail (``lo``) and one that trains (``hi``)."""
    tried = []
    for _ in range(n):
        mid = (lo + hi) // 2 // CAP_GRANULE * CAP_GRANULE
        if mid <= lo or mid >= hi:
            break
        t = _trial(arch, cfg, run, steps, mid)
        ok = "ranks" in t and not t["oom"]
        tried.append({"cap_bytes": mid, "trained": ok})
        lo, hi = (lo, mid) if ok else (mid, hi)
    return {"min_cap_bytes": hi, "tried": tried}


def one(run: dict, steps: int, device: str, n_find: int) -> dict:
    arch, card = resolve_model(run["model"]), resolve_card(vram=run["vram"])
    run = {"gpus": 1, "offload": "cpu", **run}
    overrides = {
        k: tuple(v) if isinstance(v, list) else v for k, v in run.items() if k not in (*RUN_KEYS, "name")
    }
    cfg = TrainConfig(optimizer="adamw_torch").with_(**overrides)
    est = engine_estimate(arch, cfg, card, offload=run["offload"], gpus=run["gpus"]).to_json()
    cap = cap_for_card(card) if device == "cuda" else None
    row = {**{k: run[k] for k in ("name", *RUN_KEYS)}, "cap_bytes": cap, "config": cfg.to_json(),
           "estimate": {k: est.get(k) for k in ESTIMATE_KEYS}}  # fmt: skip
    row["estimate"]["phases"] = est["phases"]
    t = _trial(arch, cfg, run, steps, cap)
    if "error" in t:
        return {**row, "error": t["error"]}
    row["measured"] = t["ranks"]
    peaks = [max(p["peak_allocated_bytes"] or 0 for p in r.get("phases", []) if p["name"] != "load")
             for r in t["ranks"] if r.get("phases")]  # fmt: skip
    if device == "cuda" and peaks and not t["oom"]:
        row["measured_peak_allocated_bytes"] = max(peaks)  # the largest rank's
        row["error_peak_allocated"] = round(est["peak_allocated_bytes"] / max(peaks) - 1, 4)
        if n_find:
            row["find_min"] = find_min(arch, cfg, run, steps, max(peaks) - CAP_GRANULE, cap, n_find)
    return row


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
    args = p.parse_args(argv)
    import torch

    from vramfit.environment import environment

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for run in runs_of(args):
        rows.append(one(run, args.steps, device, args.find_min))
        print(json.dumps({k: rows[-1].get(k) for k in ("name", "error_peak_allocated", "error")}), flush=True)
        with open(args.out, "w") as f:
            json.dump({"command": " ".join(sys.argv), "environment": environment(query_gpu=device == "cuda"),
                       "runs": rows}, f, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
