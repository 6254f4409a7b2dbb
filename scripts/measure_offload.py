"""Measure FSDP2 CPU offload on one GPU under an emulated small card, against the estimate.

    python scripts/measure_offload.py --out $OUT/offload.json [--models mistral-7b,llama-3.2-1b,...]

For each model: the QLoRA recipe (nf4, bnb_4bit_quant_storage = the compute dtype, LoRA r=16 on q_proj and
v_proj, 512 tokens, micro-batch 1, checkpointing, torch AdamW on the CPU) through ``accelerate launch`` with
the emitted FSDP2 config (fsdp_offload_params: true), under ``set_per_process_memory_fraction`` at what the
card leaves PyTorch (usable - CUDA context). Records every rank's peaks per phase, host RSS / pinned bytes,
step seconds, and the estimate (``vramfit estimate --offload cpu``) beside it.
"""

from __future__ import annotations

import argparse
import json
import sys

from vramfit.config import TrainConfig
from vramfit.estimate.engine import engine_estimate
from vramfit.gpus import resolve_card
from vramfit.models import resolve_model
from vramfit.probe.emulate import cap_for_card
from vramfit.probe.launch import LaunchFailed, launch_trial

DEFAULT = "mistral-7b:4GB,llama-3.2-1b:4GB,qwen2.5-1.5b:4GB,llama-3.2-3b:4GB"


def one(name: str, vram: str, steps: int, device: str) -> dict:
    arch, card = resolve_model(name), resolve_card(vram=vram)
    cfg = TrainConfig(optimizer="adamw_torch")
    est = engine_estimate(arch, cfg, card, offload="cpu", gpus=1).to_json()
    cap = cap_for_card(card) if device == "cuda" else None
    row = {"model": name, "vram": vram, "cap_bytes": cap, "config": cfg.to_json(), "estimate": {
        k: est[k] for k in ("peak_allocated_bytes", "peak_phase", "per_gpu_required_vram_bytes",
                            "host_memory_bytes", "slowdown", "breakdown")}}  # fmt: skip
    row["estimate"]["phases"] = est["phases"]
    try:
        ranks = launch_trial(arch, cfg, gpus=1, offload="cpu", steps=steps, cap_bytes=cap, timeout=560)
    except LaunchFailed as e:
        row["error"] = str(e)[-2000:]
        return row
    r = ranks[0]
    row["measured"] = r
    train = [p for p in r.get("phases", []) if p["name"] != "load"]
    if device == "cuda" and train and not r.get("oom"):
        peak = max(p["peak_allocated_bytes"] for p in train)
        row["measured_peak_allocated_bytes"] = peak
        row["error_peak_allocated"] = round(est["peak_allocated_bytes"] / peak - 1, 4)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--models", default=DEFAULT, help="model:vram,... [default: %(default)s]")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)
    import torch

    from vramfit.environment import environment

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for item in args.models.split(","):
        name, _, vram = item.partition(":")
        rows.append(one(name, vram or "4GB", args.steps, device))
        print(
            json.dumps({k: rows[-1].get(k) for k in ("model", "error_peak_allocated", "error")}), flush=True
        )
        with open(args.out, "w") as f:
            json.dump({"command": " ".join(sys.argv), "environment": environment(query_gpu=device == "cuda"),
                       "runs": rows}, f, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
