"""Measure a grid of configurations with the probe, several at a time, on one GPU machine.

    python -m benchmarks.accuracy_grid --out DIR [--jobs 6] [--only NAME ...]

Writes DIR/grid.json: one entry per configuration with the exact `vramfit probe` command, its wall time and
its JSON result (environment included). Runs share the GPU, so each result's CUDA context (read
device-wide) is not valid and is dropped; peaks, phases and the attribution are per process and are.
Split into benchmarks/results/probe/ with `--split DIR/grid.json`.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.grid import load_grid


def _without_seq_len(flags: str) -> tuple[str, int]:
    """'--model m --seq-len 1024 --rank 8' -> ('--model m --rank 8', 1024)."""
    m = re.search(r" --seq-len (\d+)", flags)
    return flags[: m.start()] + flags[m.end() :], int(m.group(1))


# name -> vramfit probe flags, from benchmarks/grids/*.toml (each file says what its batch covers).
GRID, GRID2, GRID3, GRID4, GRID5 = (load_grid(f"grid{k}") for k in range(1, 6))

# --find-min on runs already measured, the ones whose reserved memory is furthest above their allocated
# peak: is the smallest cap that works their reserved peak there too? Run with --jobs 1 (each search
# runs its own parallel trials, sized for the whole GPU).
GRID_FM = {
    f"fm_{name}": flags + " --find-min"
    for name, flags in {
        "gemma-2-2b_default": GRID["gemma-2-2b_default"],
        "qwen3-0.6b_qv_r8_b8_s256_nogc": GRID3["qwen3-0.6b_qv_r8_b8_s256_nogc"],
        "smollm2-135m_alllinear_r32_b2_s1024": GRID3["smollm2-135m_alllinear_r32_b2_s1024"],
        "llama-3.2-1b_s4096_b1": GRID2["llama-3.2-1b_s4096_b1"],
        "smollm2-1.7b_eager_s2048_b2": GRID2["smollm2-1.7b_eager_s2048_b2"],
        "qwen2.5-0.5b_lora_attention_s512_adamw": GRID3["qwen2.5-0.5b_lora_attention_s512_adamw"],
        "qwen3-8b_s1024_b2": GRID2["qwen3-8b_s1024_b2"],
        "phi-3.5-mini_alllinear_s4096": GRID2["phi-3.5-mini_alllinear_s4096"],
        "llama-2-7b_alllinear_r32_b2_s1024": GRID3["llama-2-7b_alllinear_r32_b2_s1024"],
        "tinyllama-1.1b_alllinear_r32_b2_s1024": GRID3["tinyllama-1.1b_alllinear_r32_b2_s1024"],
        "qwen2.5-3b_lora_adamw_b4_s512": GRID2["qwen2.5-3b_lora_adamw_b4_s512"],
        "smollm2-135m_full_adamw_s1024": GRID["smollm2-135m_full_adamw_s1024"],
        # second round: the reserved peak overstated the requirement in 7 of the first 9, by up to 1 GiB
        "mistral-7b_recipe_s4096": GRID5["mistral-7b_recipe_s4096"],
        "qwen2.5-1.5b_recipe_s1024": GRID5["qwen2.5-1.5b_recipe_s1024"],
        "gemma-2-2b_recipe_s2048": GRID5["gemma-2-2b_recipe_s2048"],
        "llama-3.2-3b_recipe_b4": GRID5["llama-3.2-3b_recipe_b4"],
        "phi-3-mini_recipe_s4096": GRID5["phi-3-mini_recipe_s4096"],
        "qwen3-1.7b_recipe_s2048": GRID5["qwen3-1.7b_recipe_s2048"],
        "llama-2-7b_recipe_s512": GRID5["llama-2-7b_recipe_s512"],
        "tinyllama_int8_lora": GRID["tinyllama_int8_lora"],
    }.items()
}
# One uncapped run of every configuration with a find-min result, its trace replayed through the allocator
# model (vramfit.probe.allocsim): does the model's smallest cap match what the capped runs found?
GRID_SIM = {
    **{f"sim_{name[3:]}": flags.replace(" --find-min", "") for name, flags in GRID_FM.items()},
    **{f"sim_calib_{m}_seq512{gc}": f"--model {m} --seq-len 512" + (" --no-gradient-checkpointing" if gc else "")
       for m in ("llama-3.2-1b", "mistral-7b", "qwen2.5-0.5b") for gc in ("", "_nogc")},
}  # fmt: skip
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "probe")
# The allocator model places the requirement within a few MiB of what find-min finds (grid sim):
# Two capped trials at its figure and 8 MiB below settle a right guess in one round.
FM_PARALLEL = 2
FM_FLAGS = f" --find-min --resolution 8MiB --parallel {FM_PARALLEL}"
# Searched again on another GPU, to see whether a requirement measured on one holds on the other.
FM_REPEAT = ("gemma-2-2b_default", "llama-3.2-1b_s4096_b1", "smollm2-135m_alllinear_r32_b2_s1024",
             "gemma-2-2b_recipe_s2048")  # fmt: skip


def _fm_rest(results: str = RESULTS) -> dict[str, str]:
    """--find-min on every configuration of grids 1-5 that has no find-min result in ``results`` yet (a
    device call cut short leaves the rest to the next one), and on FM_REPEAT until it has two. With an
    empty folder: all 151, so the same command, repeated and split into that folder, measures the grid
    from scratch."""
    rest = {}
    for grid in (GRID, GRID2, GRID3, GRID4, GRID5):
        for name, flags in grid.items():
            done = len(glob.glob(os.path.join(results, f"*_grid_fm_{name}.json")))
            if done < (2 if name in FM_REPEAT else 1):
                rest[f"fm_{name}"] = flags + FM_FLAGS
    return rest


GRID_FM_REST = _fm_rest()
# How smooth is the requirement? Six configurations (benchmarks/grids/sens.toml), each at its sequence length
# and a few tokens either side: the tensors change by under 2 %, so any larger jump of the requirement is the allocator's
# placement, which no smooth formula follows. Uncapped runs; the requirement is the allocator model's
# replay of each trace (within 8 MiB of --find-min in 65 of 93 searches). Split into
# benchmarks/results/sensitivity/ (not read as accuracy results).
_SENS_BASE = {name: _without_seq_len(flags) for name, flags in load_grid("sens").items()}
SENS_DELTAS = (-16, -8, -4, 0, 4, 8, 16)
SENS_REPEATS = 2  # more runs at each configuration's own length: how much one configuration varies
GRID_SENS = {
    **{f"sens_{name}_s{s + d}": f"{flags} --seq-len {s + d}" for name, (flags, s) in _SENS_BASE.items()
       for d in SENS_DELTAS},
    **{f"sens_{name}_s{s}_rep{k}": f"{flags} --seq-len {s}" for name, (flags, s) in _SENS_BASE.items()
       for k in range(1, SENS_REPEATS + 1)},
}  # fmt: skip
# --find-min under expandable segments (PYTORCH_ALLOC_CONF=expandable_segments:True in every trial's
# environment) on every configuration of grids 1-5, plus the runs whose peak allocated a tight requirement
# exposes: LLM.int8 LoRA of a 7B model with adamw_torch. No snapshot (the search needs none; traces come
# from collect_traces.py --expandable-segments). Split into benchmarks/results/expandable/.
ES_FLAGS = " --expandable-segments --find-min --resolution 8MiB --parallel 2 --no-snapshot"
ES_EXTRA = {
    "mistral-7b_int8_lora_adamw": "--model mistral-7b --method lora --quant int8 --optimizer adamw_torch"
}
GRID_ES = {
    f"es_{name}": flags + ES_FLAGS
    for grid in (GRID, GRID2, GRID3, GRID4, GRID5, ES_EXTRA)
    for name, flags in grid.items()
}
# Five or six configurations of each of the eight families (mostly the quicker ones), the Phi-3-mini run
# at 1024 tokens and the two peak-allocated gaps among them: what one device call of under 10 minutes
# measures (--grid es1). The rest of GRID_ES is --grid es with --done-in benchmarks/results/expandable.
ES_SUBSET = (
    "llama-2-7b_qv_r8_b8_s256_nogc",
    "llama-2-7b_eager_s2048_paged32",
    "llama-2-7b_int8_lora_qv",
    "llama-2-7b_alllinear_r8_s1024",
    "llama-2-7b_fp4_nodq_mlp_r64_s2048_adafactor",
    "llama-3.2-1b_s4096_b1",
    "llama-3.2-1b_full_adamw8",
    "llama-3.2-1b_recipe_s128",
    "llama-3.2-1b_eager_s1024_nogc",
    "llama-3.2-1b_recipe_s1024",
    "llama-3.2-3b_nf4_nodq_eager_s1024",
    "llama-3-8b_recipe_s2048",
    "mistral-7b_qv_r8_b8_s256_nogc",
    "mistral-7b_eager_b4",
    "mistral-7b_s2048",
    "mistral-7b-v0.3_alllinear_r4_paged8",
    "mistral-7b_recipe_s128",
    "mistral-7b_int8_lora_adamw",
    "qwen2.5-1.5b_qv_r8_b8_s256_nogc",
    "qwen2.5-1.5b_recipe_s128",
    "qwen2.5-0.5b_fp4_dq_b4_s1024",
    "qwen2.5-3b_qv_r8_b8_s256_nogc",
    "qwen2.5-0.5b_lora_fp16_sgd",
    "qwen2.5-1.5b_recipe_s2048",
    "qwen3-0.6b_lora_attention_s512_adamw",
    "qwen3-0.6b_recipe_b4",
    "qwen3-0.6b_s2048_adamw8",
    "qwen3-4b_attention_r128_s2048",
    "qwen3-4b_lora_attention_s512_adamw",
    "phi-3-mini_qv_r8_b8_s256_nogc",
    "phi-3-mini_qkv_o",
    "phi-3-mini_eager_s2048_b2",
    "phi-3-mini_recipe_s1024",
    "phi-3-mini_lora_attention_s512_adamw",
    "gemma-2-2b_fp16_s1024",
    "gemma-2-2b_recipe_s128",
    "gemma-2-2b_recipe_s256",
    "gemma-2-2b_default",
    "gemma-2-2b_qv_r8_b8_s256_nogc",
    "smollm2-135m_adafactor_nogc",
    "tinyllama-1.1b_lora_attention_s512_adamw",
    "tinyllama_full_adamw8",
    "tinyllama-1.1b_recipe_s2048",
    "smollm2-135m_s4096_b2",
    "smollm2-360m_full_paged8_b4",
)
GRID_ES1 = {f"es_{n}": GRID_ES[f"es_{n}"] for n in ES_SUBSET}
GRIDS = {"1": GRID, "2": GRID2, "3": GRID3, "4": GRID4, "5": GRID5, "fm": GRID_FM, "sim": GRID_SIM,
         "fmrest": GRID_FM_REST, "sens": GRID_SENS, "es": GRID_ES, "es1": GRID_ES1, "esx": ES_EXTRA}  # fmt: skip
CONTEXT_BYTES = 900 << 20  # a CUDA context and what its kernels load, per process (reports/cuda_context/)


def gpu_bytes_needed(name: str) -> int | None:
    """What a run of ``name`` holds on the GPU at once, from its committed uncapped run: one process, or
    FM_PARALLEL capped trials side by side for a find-min (each capped near the requirement)."""
    base = name.removeprefix("es_").removeprefix("fm_")
    paths = sorted(glob.glob(os.path.join(RESULTS, f"*_grid_{base}.json")))
    if not paths:
        return None
    with open(paths[0]) as f:
        m = json.load(f)["result"]["measured"]
    one = (
        m["peak_reserved_bytes"]
        + ((m.get("non_torch_bytes") or {}).get("paged_optimizer") or 0)
        + CONTEXT_BYTES
    )
    return one * (FM_PARALLEL if name.startswith(("fm_", "es_")) else 1)


def run_one(name: str, flags: str, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "vramfit", "probe", *shlex.split(flags), "--json"]
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # recorded as a failed entry, so a later call runs it again
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        return {"name": name, "command": "vramfit probe " + flags + " --json",
                "wall_seconds": round(time.perf_counter() - t, 1), "returncode": None,
                "stderr": f"timed out after {timeout} s (--timeout)\n" + err[-4000:]}  # fmt: skip
    entry = {"name": name, "command": "vramfit probe " + flags + " --json",
             "wall_seconds": round(time.perf_counter() - t, 1), "returncode": p.returncode}  # fmt: skip
    try:
        entry["result"] = json.loads(p.stdout)
        nt = entry["result"].get("measured", {}).get("non_torch_bytes")
        if isinstance(nt, dict):
            nt["cuda_context"] = None  # device-wide reading, other runs were on the GPU too
    except json.JSONDecodeError:
        entry["stderr"] = p.stderr[-4000:]
    return entry


COMMITTED_TIMELINE_POINTS = 300  # the probe keeps 2000; a committed result keeps this many


def thin_timeline(result: dict, max_points: int = COMMITTED_TIMELINE_POINTS) -> dict:
    """The result with its allocated-memory timeline downsampled to ``max_points``, keeping each bucket's
    maximum (so the peak stays); nothing else changes."""
    m = result.get("measured") or {}
    tl = m.get("timeline") or []
    if len(tl) <= max_points:
        return result
    bucket = -(-len(tl) // max_points)
    thin = [max(tl[i : i + bucket], key=lambda p: p["allocated_bytes"]) for i in range(0, len(tl), bucket)]
    return {**result, "measured": {**m, "timeline": thin}}


def gpu_tag(env: dict) -> str:
    """``h100``, ``h200``, ...: the file-name prefix of a result measured on ``env["gpu"]``."""
    m = re.search(r"\b([A-Z]\d{2,4})\b", env.get("gpu") or "")
    return m.group(1).lower() if m else "gpu"


def split(path: str, dest: str) -> None:
    data = json.load(open(path))
    for e in data["entries"]:
        if "result" not in e:
            continue
        e["result"] = thin_timeline(e["result"])
        out = {"command": e["command"], "wall_seconds": e["wall_seconds"], "grid": data["command"],
               "concurrent_runs": data["jobs"], "result": e["result"]}  # fmt: skip
        tag = gpu_tag(e["result"].get("environment") or {})
        with open(os.path.join(dest, f"{tag}_grid_{e['name']}.json"), "w") as f:
            json.dump(out, f, indent=1)


def run_packed(names, one, budget: int, jobs: int, stop_after: float | None, t0: float) -> list[dict]:
    """Run ``one(name)`` for every name, at most ``jobs`` at a time and never more than ``budget`` bytes of
    GPU memory in use by what runs (:func:`gpu_bytes_needed`; unknown: a quarter of the budget). Largest
    first, so the small ones fill the gaps. After ``stop_after`` seconds no new run starts."""
    need = {n: min(budget, gpu_bytes_needed(n) or budget // 4) for n in names}
    todo = sorted(names, key=lambda n: -need[n])
    cond = threading.Condition()
    used, running, out = 0, 0, []

    def worker(n: str) -> None:
        nonlocal used, running
        try:
            out.append(one(n))
        finally:
            with cond:
                used -= need[n]
                running -= 1
                cond.notify_all()

    threads = []
    with cond:
        while todo:
            if stop_after is not None and time.perf_counter() - t0 > stop_after:
                break
            n = next((n for n in todo if used + need[n] <= budget), None)
            if running >= jobs or n is None:
                cond.wait(timeout=5)
                continue
            todo.remove(n)
            used += need[n]
            running += 1
            th = threading.Thread(target=worker, args=(n,))
            th.start()
            threads.append(th)
    for th in threads:
        th.join()
    if todo:
        print(f"not started (--stop-after): {' '.join(todo)}", file=sys.stderr)
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out")
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--timeout", type=int, default=420)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="1")
    ap.add_argument("--gpu-gib", type=float, help="pack runs by their committed memory into this many GiB")
    ap.add_argument("--stop-after", type=float, help="with --gpu-gib: start no run after this many seconds")
    ap.add_argument("--split", nargs=2, metavar=("GRID_JSON", "DEST"))
    ap.add_argument(
        "--done-in",
        metavar="DIR",
        help="with --grid fmrest or es: the folder whose results count as done "
        "(fmrest: default benchmarks/results/probe; an empty one measures every configuration)",
    )
    ap.add_argument(
        "--thin", nargs="+", metavar="RESULT_JSON", help="downsample committed results' timelines"
    )
    return ap


def _check(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """The flags that only work together (argparse's error and exit 2 otherwise)."""
    if a.stop_after is not None and not a.gpu_gib:
        ap.error("--stop-after works with --gpu-gib only")
    if a.done_in is not None and a.grid not in ("fmrest", "es"):
        ap.error("--done-in works with --grid fmrest or es only")
    if a.done_in is not None and not os.path.isdir(a.done_in):
        ap.error(f"--done-in: no such folder: {a.done_in}")


def thin_files(paths: list[str]) -> None:
    """--thin: each committed result file (a grid entry or a bare result) with its timeline thinned."""
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        thinned = (
            {**data, "result": thin_timeline(data["result"])} if "result" in data else thin_timeline(data)
        )
        with open(path, "w") as f:
            json.dump(thinned, f, indent=1)


def _selected_grid(a: argparse.Namespace) -> dict[str, str]:
    """The configurations to measure: the grid of --grid, less what --done-in already holds."""
    if a.done_in is not None and a.grid == "fmrest":
        return _fm_rest(a.done_in)
    if a.done_in is not None:  # es: what has no result in that folder yet
        return {
            n: f
            for n, f in GRIDS[a.grid].items()
            if not glob.glob(os.path.join(a.done_in, f"*_grid_{n}.json"))
        }
    return GRIDS[a.grid]


def measure_grid(a: argparse.Namespace, grid: dict[str, str], names: list[str]) -> list[dict]:
    """Run ``names`` of ``grid``, rewriting OUT/gridG.json after every run (a call cut short keeps what it
    measured)."""
    t = time.perf_counter()
    # the output folder is the measuring machine's own: recorded as $OUT, not as its path
    argv = ["$OUT" if x == a.out else x for x in sys.argv[1:]]
    done: list[dict] = []

    def write() -> None:
        data = {"command": "python -m benchmarks.accuracy_grid " + " ".join(argv), "jobs": a.jobs,
                "wall_seconds": round(time.perf_counter() - t, 1), "entries": done}  # fmt: skip
        with open(os.path.join(a.out, f"grid{a.grid}.json.tmp"), "w") as f:
            json.dump(data, f)
        os.replace(os.path.join(a.out, f"grid{a.grid}.json.tmp"), os.path.join(a.out, f"grid{a.grid}.json"))

    lock = threading.Lock()

    def one(n: str) -> dict:
        e = run_one(n, grid[n], a.timeout)
        with lock:
            done.append(e)
            write()
        return e

    if a.gpu_gib:
        return run_packed(names, one, int(a.gpu_gib * 2**30), a.jobs, a.stop_after, t)
    with ThreadPoolExecutor(a.jobs) as ex:
        return list(ex.map(one, names))


def main() -> int:
    ap = _parser()
    a = ap.parse_args()
    _check(ap, a)
    if a.split:
        split(*a.split)
        return 0
    if a.thin:
        thin_files(a.thin)
        return 0
    grid = _selected_grid(a)
    for e in measure_grid(a, grid, a.only or list(grid)):
        m = e.get("result", {}).get("measured", {})
        print(
            e["name"],
            e["returncode"],
            e["wall_seconds"],
            m.get("peak_allocated_bytes"),
            e.get("result", {}).get("peak_allocated_bytes"),
            e.get("stderr", "")[-300:],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
