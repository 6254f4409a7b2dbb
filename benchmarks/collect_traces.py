"""Record the allocator trace of uncapped probe runs, to check vramfit's synthesized allocation sequence.

    python -m benchmarks.collect_traces --out DIR [--jobs 8] NAME [NAME ...]

NAME is a configuration of a grid file (``benchmarks/grids/*.toml``). Each run is one uncapped probe (three
steps, as the grid's) whose compact trace (every allocator event with its stream, the Python stack that
asked, and the probe's phase markers; ``vramfit.probe.snapshot.compact``) is written gzipped to
``DIR/<NAME>.trace.json.gz``; all of them are then packed into ``DIR/traces-N.tar`` of at most 15 MiB each (few
files come back from a GPU machine, where many would not). ``benchmarks/trace_sensitivity.py`` reads them.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.grid import GRIDS_DIR, load_configs
from vramfit.check import CheckConfig


def config_of(name: str) -> CheckConfig:
    """The configuration ``name`` of a grid file (benchmarks/grids/*.toml; ``fm_NAME`` means NAME)."""
    for path in sorted(GRIDS_DIR.glob("*.toml")):
        configs = load_configs(path)
        for key in (name, name.removeprefix("fm_")):
            if key in configs:
                return configs[key]
    raise SystemExit(f"collect_traces: no configuration named {name!r} in benchmarks/grids/")


def record(name: str, out: str, expandable: bool | None = None) -> str:
    from vramfit.models import resolve_model
    from vramfit.probe import probe

    c = config_of(name)
    raw = os.path.join(out, f"{name}.trace.json")
    t = time.perf_counter()
    res = probe(resolve_model(c.model), c.config, None, compact_out=raw, expandable_segments=expandable)
    with open(raw, "rb") as f, gzip.open(raw + ".gz", "wb") as g:
        shutil.copyfileobj(f, g)
    os.remove(raw)
    m = res.measured
    return (
        f"{name}: {time.perf_counter() - t:.0f} s, peak allocated {m.peak_allocated_bytes >> 20} MiB, "
        f"reserved {m.peak_reserved_bytes >> 20} MiB"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument(
        "--expandable-segments", action="store_true", help="record under expandable_segments:True"
    )
    ap.add_argument("names", nargs="+")
    a = ap.parse_args()
    for n in a.names:
        config_of(n)  # fails early on an unknown name
    os.makedirs(a.out, exist_ok=True)

    def one(n: str) -> str:
        try:
            return record(n, a.out, True if a.expandable_segments else None)
        except Exception as e:  # one failed run must not lose the others
            return f"{n}: failed: {type(e).__name__}: {e}"

    with ThreadPoolExecutor(a.jobs) as ex:
        for line in ex.map(one, a.names):
            print(line, flush=True)
    pack(a.out, a.names)
    return 0


def pack(out: str, names: list[str], limit: int = 15 << 20) -> None:
    """The traces into ``traces-1.tar``, ``traces-2.tar``, ... of at most ``limit`` bytes each."""
    paths = [os.path.join(out, f"{n}.trace.json.gz") for n in names]
    paths = [p for p in paths if os.path.exists(p)]
    part, size, tar = 0, 0, None
    for path in paths:
        n = os.path.getsize(path) + 1024
        if tar is None or size + n > limit:
            if tar is not None:
                tar.close()
            part, size = part + 1, 0
            tar = tarfile.open(os.path.join(out, f"traces-{part}.tar"), "w")
        tar.add(path, arcname=os.path.basename(path))
        size += n
        os.remove(path)
    if tar is not None:
        tar.close()


if __name__ == "__main__":
    sys.exit(main())
