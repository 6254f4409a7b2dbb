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
from vramfit.probe.measuring import measured_card

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
        # the top level of a probe's JSON is the estimate beside it; the measurement is under "measured"
        m = probe.get("measured") or {}
        measured, required = m.get("peak_allocated_bytes"), m.get("allocator_required_bytes")
        env = probe.get("environment") if isinstance(probe.get("environment"), dict) else {}
        card = measured_card(env)
        targets = ("qkv_proj",) if t == "phi3" else ("q_proj", "v_proj")
        cfg = TrainConfig(seq_len=512, targets=targets)
        e = estimate(resolve_model(str(CONFIGS / f"{t}.json")), cfg, card, expandable_segments=True)
        est, est_req = e.peak_allocated_bytes, e.allocator_required_bytes
        err = f"{(est - measured) / measured:+.1%}" if measured else ""
        err_req = f"{(est_req - required) / required:+.1%}" if required else ""
        out.append(
            f"| {t} | {est / 2**20:.0f} | {(measured or 0) / 2**20:.0f} | {err} | {est_req / 2**20:.0f} | "
            f"{(required or 0) / 2**20:.0f} | {err_req} | {env.get('gpu', '')} |"
        )
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
        "Peak allocated and the requirement under expandable segments (find-min), reference QLoRA recipe at 512 tokens, configs of benchmarks/coverage_configs/ "
        "(`scripts/probe_coverage.sh`).",
        "",
        "| model type | peak estimate (MiB) | peak probe (MiB) | error | required estimate, expandable segments (MiB) | "
        "required, find-min (MiB) | error | GPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    tmp = a.report.with_suffix(".tmp")
    tmp.write_text(text + "\n".join(table + rows(a.results)) + "\n")
    tmp.replace(a.report)
    print(f"appended the measured table to {a.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
