"""Record the allocator trace of uncapped probe runs, to check vramfit's synthesized allocation sequence.

    python3 benchmarks/collect_traces.py --out DIR [--jobs 8] NAME [NAME ...]

NAME is a configuration of ``accuracy_grid.py`` (any of its grids). Each run is one uncapped probe (three
steps, as the grid's) whose compact trace (every allocator event with its stream, the Python stack that
asked, and the probe's phase markers; ``vramfit.probe.snapshot.compact``) is written gzipped to
``DIR/<NAME>.trace.json.gz``; all of them are then packed into ``DIR/traces-N.tar`` of at most 15 MiB each (few
files come back from a GPU machine, where many would not). ``benchmarks/trace_sensitivity.py`` reads them.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shlex
import shutil
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from accuracy_grid import GRIDS  # noqa: E402


def flags_of(name: str) -> str:
    for grid in GRIDS.values():
        for key in (name, f"fm_{name}"):
            if key in grid:
                return grid[key].split(" --find-min")[0]
    raise SystemExit(f"collect_traces: no configuration named {name!r} in accuracy_grid.py")


def record(name: str, out: str, expandable: bool | None = None) -> str:
    from vramfit.cli.train_flags import add_model_flag, add_train_flags, config_from_args
    from vramfit.models import resolve_model
    from vramfit.probe import probe

    p = argparse.ArgumentParser()
    add_model_flag(p)
    add_train_flags(p)
    args = p.parse_args(shlex.split(flags_of(name)))
    raw = os.path.join(out, f"{name}.trace.json")
    t = time.perf_counter()
    res = probe(
        resolve_model(args.model),
        config_from_args(args),
        None,
        compact_out=raw,
        expandable_segments=expandable,
    )
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
        flags_of(n)
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
