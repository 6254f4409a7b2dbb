"""Where the numbers come from: the measuring environment, when the results were committed, the commands
that produced them, and the versions the predictions were computed with."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .runs import ROOT, Run


def provenance(runs: list[Run], results: Path) -> dict:
    envs = [r.result["environment"] for r in runs]
    keys = ("gpu", "driver", "cuda", "compute_capability", "torch", "transformers", "peft", "bitsandbytes")
    keys += ("accelerate", "python", "vramfit")
    env = {k: sorted({str(e.get(k) or "not installed") for e in envs}) for k in keys}
    dates = set()
    for r in runs:
        try:
            out = subprocess.run(
                ["git", "log", "--diff-filter=A", "--format=%cs", "--", str(r.path)],
                cwd=ROOT, capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
            dates.update(out.stdout.split())
        except (OSError, subprocess.SubprocessError):
            pass
    grids = sorted({str(json.loads(r.path.read_text()).get("grid")) for r in runs} - {"None"})
    calib = sorted({r.command for r in runs if r.name.startswith("calib")})
    return {
        "env": env,
        "dates": sorted(dates),
        "grid_commands": grids,
        "calib_commands": calib,
        "results": _rel(results),
    }


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


def tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("vramfit", "accelerate", "transformers", "fitcheck-llm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
