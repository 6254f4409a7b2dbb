"""The allocator model against --find-min on every configuration of the grid: one uncapped run each.

    python -m benchmarks.replay_check --out DIR --part K/N [--jobs 12] [--gpu-gib 130]

Runs ``vramfit probe FLAGS --json`` (uncapped, snapshot on) for part K of N of the configurations of grids
1-5 of ``accuracy_grid.py``, several at a time, and writes ``DIR/replay_K.json``: per configuration only
what the comparison needs (the peaks, and ``raw.simulated``: the run's own allocator trace replayed
through ``vramfit.probe.allocsim``, whether its segments were reproduced and the smallest cap under which
the replay does not run out of memory), with the GPU, the library versions and the command. A whole
result per run would be 150 KB; these are 200 bytes. Merge the parts with ``--merge OUT.json DIR/replay_*.json``.
``benchmarks/accuracy_report.py`` compares them with the committed find-min results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks.accuracy_grid import GRID, GRID2, GRID3, GRID4, GRID5, run_one, run_packed

ALL = {name: flags for grid in (GRID, GRID2, GRID3, GRID4, GRID5) for name, flags in grid.items()}


def summary(entry: dict) -> dict:
    out = {"name": entry["name"], "command": entry["command"], "returncode": entry["returncode"]}
    result = entry.get("result")
    if not result:
        out["stderr"] = (entry.get("stderr") or "")[-600:]
        return out
    m = result["measured"]
    out.update(
        peak_allocated_bytes=m["peak_allocated_bytes"],
        peak_reserved_bytes=m["peak_reserved_bytes"],
        simulated=(m.get("raw") or {}).get("simulated"),
        environment=result.get("environment"),
    )
    return out


def parse_part(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part: expected K/N such as 1/2, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--part: K must be between 1 and N, got {text!r}")
    return k, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out")
    ap.add_argument("--part", type=parse_part, default=(1, 1), metavar="K/N")
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--gpu-gib", type=float, default=130)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--stop-after", type=float, default=None, help="start no run after this many seconds")
    ap.add_argument("--merge", nargs="+", metavar=("OUT_JSON", "PART_JSON"))
    a = ap.parse_args()
    if a.merge:
        if len(a.merge) < 2:
            ap.error("--merge needs the output file and at least one part")
        entries, meta = [], []
        for path in a.merge[1:]:
            with open(path) as f:
                d = json.load(f)
            entries += d["entries"]
            meta.append({k: d[k] for k in ("command", "wall_seconds")})
        with open(a.merge[0], "w") as f:
            json.dump({"parts": meta, "entries": sorted(entries, key=lambda e: e["name"])}, f, indent=1)
        return 0
    if not a.out:
        ap.error("--out is required (or --merge)")
    k, n = a.part
    names = sorted(ALL)[k - 1 :: n]
    t = time.perf_counter()
    done = run_packed(names, lambda name: run_one(name, ALL[name], a.timeout), int(a.gpu_gib * 2**30),
                      a.jobs, a.stop_after, t)  # fmt: skip
    argv = ["$OUT" if x == a.out else x for x in sys.argv[1:]]
    data = {"command": "python -m benchmarks.replay_check " + " ".join(argv),
            "wall_seconds": round(time.perf_counter() - t, 1), "entries": [summary(e) for e in done]}  # fmt: skip
    with open(os.path.join(a.out, f"replay_{k}.json"), "w") as f:
        json.dump(data, f)
    bad = [e["name"] for e in data["entries"] if not e.get("simulated")]
    print(f"{len(data['entries'])} runs in {data['wall_seconds']} s; without a replay: {bad}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
