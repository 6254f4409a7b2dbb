"""How much does the allocator requirement move when the tensors change a little? On recorded traces.

    python -m benchmarks.trace_sensitivity [TRACE.json.gz ...]   (default: benchmarks/results/traces/)

Each trace (``collect_traces.py``: every allocator event of an uncapped probe run) is replayed through the
allocator model (``vramfit.probe.allocsim``) as recorded, and again with every request above 1 MiB made
0.3 % and 1 % smaller and larger, the order of events unchanged. That is the accuracy an estimator that
rebuilt the run's allocations would need to have: if the smallest cap that works (``required_cap``) moves
by much more than the peak does, a formula, or a synthesized allocation sequence off by that much, cannot
place the requirement closer than that move. Prints one line per trace: the peak allocated and the
requirement of each replay, and the slack (requirement - peak).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import sys

from vramfit.allocator.constants import SMALL_SIZE
from vramfit.probe import allocsim
from vramfit.units import MiB

TRACES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "traces")
SCALES = (-0.01, -0.003, 0.0, 0.003, 0.01)


def load_requests(path: str) -> tuple[list, bool]:
    """The trace's requests, and whether its uncapped replay reproduces the recorded segments."""
    with gzip.open(path, "rt") as f:
        events = json.load(f)["snapshot"]["events"]
    ok, _ = allocsim.check_against_trace(events)
    return allocsim.requests(events), ok


def scaled(reqs: list, eps: float) -> list:
    if not eps:
        return reqs
    return [(i, int(size * (1 + eps)) if size > SMALL_SIZE else size, ident, *rest)
            for i, size, ident, *rest in reqs]  # fmt: skip


def sensitivity(reqs: list) -> dict[float, tuple[int, int]]:
    """scale -> (peak allocated, requirement) of the replay."""
    out = {}
    for eps in SCALES:
        r = scaled(reqs, eps)
        free = allocsim.replay(r)
        out[eps] = (free.peak_allocated, allocsim.required_cap(r, free))
    return out


def main(argv: list[str]) -> int:
    paths = argv or sorted(glob.glob(os.path.join(TRACES, "*.trace.json.gz")))
    if not paths:
        print(f"no traces given and none in {TRACES}", file=sys.stderr)
        return 2
    print(
        "requirement (MiB) and its change against the trace as recorded; slack = requirement - peak allocated"
    )
    for path in paths:
        reqs, ok = load_requests(path)
        res = sensitivity(reqs)
        peak0, req0 = res[0.0]
        cells = []
        for eps in SCALES:
            peak, req = res[eps]
            cells.append(
                f"{eps * 100:+.1f}%: {req / MiB:6.0f} ({(req / req0 - 1) * 100:+5.1f} %, slack {(req - peak) / MiB:5.0f})"
            )
        name = os.path.basename(path).removesuffix(".trace.json.gz")
        print(f"{name} (replay {'reproduces' if ok else 'DOES NOT reproduce'} the recorded segments)")
        print("   " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
