"""Speed of the estimator and the CLI. Prints figures; asserts nothing (targets are in the README).

    python -m benchmarks.speed            # estimate + CLI (+ planner, when benchmarks/speed_plan.py exists)

Targets: one library estimate well under 1 ms; `vramfit estimate` end to end <= 0.3 s median on a
2-core machine; importing the CLI imports neither torch nor transformers.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time


def bench_estimate(n: int = 2000) -> None:
    from vramfit.config import TrainConfig
    from vramfit.estimate import estimate
    from vramfit.models import resolve_model

    arch = resolve_model("mistral-7b")
    cfg = TrainConfig()
    estimate(arch, cfg)  # warm caches
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            estimate(arch, cfg)
        runs.append((time.perf_counter() - t) / n)
    print(
        f"library estimate (mistral-7b, recipe): median {statistics.median(runs) * 1e6:.0f} us per call ({n} calls x 5)"
    )


def bench_cli(n: int = 15) -> None:
    cmd = [sys.executable, "-m", "vramfit", "estimate", "--model", "mistral-7b", "--json"]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    print(
        f"`vramfit estimate --model mistral-7b --json` end to end: median {statistics.median(times):.3f} s, "
        f"min {min(times):.3f} s ({n} runs)"
    )
    code = "import sys, vramfit.cli.main as m; m.build_parser(); print(sorted(k for k in ('torch','transformers','matplotlib','pandas') if k in sys.modules))"
    heavy = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    print(f"heavy modules imported by the CLI: {heavy}")


if __name__ == "__main__":
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    bench_estimate()
    bench_cli()
    from benchmarks.speed_plan import bench_plan

    bench_plan()
