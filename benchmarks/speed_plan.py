"""Speed of the planner: one search, and `vramfit plan` end to end. Prints figures; asserts nothing.

    python -m benchmarks.speed_plan          # or via benchmarks/speed.py

Targets (issue 5): the search covers >= 10,000 configurations in < 1 s on a 2-core machine; `vramfit
plan` end to end < 0.5 s median. "Configurations" are the points of the search space (shapes x sequence
lengths x micro-batches); each is settled by an estimate, by monotonicity (a bigger one of the same shape
does not fit / a smaller one does) or by dominance (it cannot rank first). The estimate calls are printed
beside them, so both figures can be judged.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time

CASES = (  # (model, card flags): a no-fit, a tight card, an old card, a roomy card, a small model
    ("mistral-7b", {"vram": "4GB"}),
    ("llama-3.2-1b", {"vram": "4GB"}),
    ("llama-3.2-1b", {"gpu": "rtx-2060"}),
    ("mistral-7b", {"vram": "12GB"}),
    ("qwen2.5-0.5b", {"vram": "8GB"}),
)


def bench_search(repeat: int = 5) -> None:
    from vramfit.gpus import resolve_card
    from vramfit.models import resolve_model
    from vramfit.plan import plan

    for model, card_args in CASES:
        arch, card = resolve_model(model), resolve_card(**card_args)
        plan(arch, card)  # warm the registry and caches
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            r = plan(arch, card)
            runs.append((time.perf_counter() - t, r))
        wall, r = sorted(runs, key=lambda x: x[0])[len(runs) // 2]
        s = r.search
        print(
            f"plan {model} on {' '.join(f'--{k} {v}' for k, v in card_args.items())}: "
            f"{s.configurations:,} configurations ({s.estimate_calls} estimates; of {s.shapes} shapes "
            f"{s.dominated} dominated, {s.pruned} pruned) searched in {s.seconds * 1000:.0f} ms = "
            f"{s.configurations_per_second:,.0f} configurations/s ({s.estimate_calls / s.seconds:,.0f} "
            f"estimates/s); whole plan() {wall * 1000:.0f} ms "
            f"({'fits' if r.fits else 'nothing fits'})"
        )


def bench_cli(n: int = 11) -> None:
    # NOTE: with the bytecode cache, as after `pip install` (which compiles it); PYTHONDONTWRITEBYTECODE=1
    # would make every run compile every module from source (~0.1 s more here)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["COLUMNS"] = "120"
    for model, card_args in (CASES[0], CASES[2]):
        flags = [w for k, v in card_args.items() for w in (f"--{k}", v)]
        cmd = [sys.executable, "-m", "vramfit", "plan", "--model", model, *flags]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env)  # writes the bytecode cache
        times = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env)
            times.append(time.perf_counter() - t)
        print(
            f"`vramfit plan --model {model} {' '.join(flags)}` end to end (rich output, bytecode cached): "
            f"median {statistics.median(times):.3f} s, min {min(times):.3f} s ({n} runs)"
        )


def bench_plan() -> None:
    bench_search()
    bench_cli()


if __name__ == "__main__":
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    bench_plan()
