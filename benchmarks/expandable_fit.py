"""Fit, and validate held out by family, the one fitted figure of ``vramfit.estimate.expandable``.

    python3 benchmarks/expandable_fit.py            # writes vramfit/estimate/expandable_fit.json

allocator_required (expandable segments) = peak allocated + pages x 20 MiB. ``pages`` (the partly used large
pages at the peak) is the least whole number with which no fitted run's requirement is under its measured
``--find-min`` figure by more than FLOOR, computed on the *measured* peak (so that a peak the estimator
misses does not bend it). Evaluation adds it to the *estimated* peak, what vramfit prints: in sample and
leaving one model family out at a time. Reads ``benchmarks/results/expandable/*_grid_es_*.json``.
"""

from __future__ import annotations

import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vramfit.estimate import expandable  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "expandable")
FLOOR = -0.005
MAX_PAGES = 200


def points(results: str = RESULTS) -> list[dict]:
    from accuracy.runs import FAMILY  # noqa: PLC0415

    from vramfit.config import TrainConfig
    from vramfit.estimate import estimate
    from vramfit.models import resolve_model

    out = []
    for path in sorted(glob.glob(os.path.join(results, "*_grid_es_*.json"))):
        r = json.load(open(path))["result"]
        m = r["measured"]
        spec = resolve_model(r["model"])
        cfg = TrainConfig.from_json(
            {k: v for k, v in r["config"].items() if k != "attn"} | {"attn": r["config"].get("attn")}
        )
        est = estimate(spec, cfg, expandable_segments=True)
        out.append({"name": os.path.basename(path)[len("h200_grid_es_"):-5], "family": FAMILY[spec.family],
                    "measured_peak": m["peak_allocated_bytes"], "peak": est.peak_allocated_bytes,
                    "required": m["allocator_required_bytes"]})  # fmt: skip
    return out


def fit(pts: list[dict]) -> int:
    for n in range(MAX_PAGES):
        if all((p["measured_peak"] + n * expandable.LARGE_PAGE) / p["required"] - 1 >= FLOOR for p in pts):
            return n
    return MAX_PAGES


def error(p: dict, pages: int) -> float:
    return expandable.required_bytes(p["peak"], pages) / p["required"] - 1


def held_out(pts: list[dict]) -> list[tuple[dict, float]]:
    out = []
    for fam in sorted({p["family"] for p in pts}):
        n = fit([p for p in pts if p["family"] != fam])
        out += [(p, error(p, n)) for p in pts if p["family"] == fam]
    return out


def main() -> int:
    pts = points()
    n = fit(pts)
    ho = held_out(pts)
    errs = [e for _, e in ho]
    data = {
        "pages": n,
        "runs": len(pts),
        "source": "H200, torch 2.11.0, transformers 5.17.0, peft 0.21.0, bitsandbytes 0.50.2; "
        "benchmarks/results/expandable/",
        "command": "python3 benchmarks/expandable_fit.py",
        "in_sample": {"errors": {p["name"]: round(error(p, n), 4) for p in pts}},
        "held_out": {"mean_abs": round(sum(abs(e) for e in errs) / len(errs), 4), "worst": round(max(errs, key=abs), 4),
                     "most_negative": round(min(errs), 4),
                     "errors": {p["name"]: round(e, 4) for p, e in ho},
                     "families": sorted({p["family"] for p in pts})},
    }  # fmt: skip
    with open(expandable.FIT_PATH, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
