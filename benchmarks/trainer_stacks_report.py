"""Measured vs estimated peak allocated memory of the trainer-stack probe runs (TRL, Liger).

    python3 benchmarks/trainer_stacks_report.py benchmarks/results/probe/trl/*.json

Each file is a ``vramfit probe --json`` result (scripts/probe_trainer_stacks.sh writes them); the
estimate is made fresh with the installed vramfit for the configuration and the GPU the run recorded.
"""

from __future__ import annotations

import json
import sys

from vramfit.config import TrainConfig
from vramfit.estimate import estimate
from vramfit.gpus import match_device, resolve_card


def row(path: str) -> tuple[str, int, int, float, str]:
    with open(path) as f:
        d = json.load(f)
    cfg = TrainConfig.from_json({k: v for k, v in d["config"].items() if k != "alpha" or v is not None})
    env = d.get("environment", {})
    # the card the run measured on: its cuBLAS workspaces (64 MiB on Hopper) are part of the peak
    card = resolve_card(gpu=match_device(env["gpu"], env["gpu_memory_bytes"]).name)
    est = estimate(d["model"], cfg, card)
    measured = d["measured"]["peak_allocated_bytes"]
    stack = f"trl {env.get('trl')}, liger-kernel {env.get('liger-kernel')}, transformers {env.get('transformers')}"
    err = (est.peak_allocated_bytes - measured) / measured
    return path.rsplit("/", 1)[-1], measured, est.peak_allocated_bytes, err, stack


def main(paths: list[str]) -> int:
    print(f"{'run':48} {'measured MiB':>13} {'estimate MiB':>13} {'error':>8}  stack")
    errs = []
    for p in paths:
        name, m, e, err, stack = row(p)
        errs.append(abs(err))
        print(f"{name:48} {m / 2**20:13.1f} {e / 2**20:13.1f} {err:+8.2%}  {stack}")
    if errs:
        print(f"mean |error| {sum(errs) / len(errs):.2%}, worst {max(errs):.2%} over {len(errs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
