"""Compare the probe results of scripts/probe_coverage.sh with the estimate; append the table to
reports/coverage.md.

    python -m benchmarks.coverage_measured $OUT/coverage [--report reports/coverage.md]

For each ``<type>.json`` the probe wrote, the same config (benchmarks/coverage_configs/<type>.json) is
estimated with the same recipe and the two peaks allocated are set side by side with the relative error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vramfit.config import TrainConfig
from vramfit.estimate import estimate
from vramfit.models import resolve_model

CONFIGS = Path(__file__).resolve().parent / "coverage_configs"
REPORT = Path(__file__).resolve().parent.parent / "reports" / "coverage.md"
MARK = "## Measured on a GPU"


def rows(results: Path) -> list[str]:
    out = []
    for f in sorted(results.glob("*.json")):
        t = f.stem
        try:
            probe = json.loads(f.read_text())
        except (ValueError, OSError):
            out.append(f"| {t} | | | | probe wrote no JSON (see {t}.err) |")
            continue
        measured = probe.get("peak_allocated_bytes")
        targets = ("qkv_proj",) if t == "phi3" else ("q_proj", "v_proj")
        e = estimate(resolve_model(str(CONFIGS / f"{t}.json")), TrainConfig(seq_len=512, targets=targets))
        est = e.peak_allocated_bytes
        err = f"{(est - measured) / measured:+.1%}" if measured else ""
        gpu = (
            probe.get("environment", {}).get("gpu_name", "")
            if isinstance(probe.get("environment"), dict)
            else ""
        )
        out.append(f"| {t} | {est / 2**20:.0f} | {measured / 2**20 if measured else 0:.0f} | {err} | {gpu} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--report", type=Path, default=REPORT)
    a = ap.parse_args(argv)
    text = a.report.read_text().split(MARK)[0].rstrip() + "\n\n"
    table = [
        MARK,
        "",
        "Peak allocated, reference QLoRA recipe at 512 tokens, configs of benchmarks/coverage_configs/ "
        "(`scripts/probe_coverage.sh`).",
        "",
        "| model type | estimate (MiB) | probe (MiB) | error | GPU |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    tmp = a.report.with_suffix(".tmp")
    tmp.write_text(text + "\n".join(table + rows(a.results)) + "\n")
    tmp.replace(a.report)
    print(f"appended the measured table to {a.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
