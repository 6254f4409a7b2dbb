"""Fit, and validate held out by family, the two fitted figures of ``vramfit.estimate.expandable``.

    python -m benchmarks.expandable_fit            # writes vramfit/data/expandable_fit.json

allocator_required (expandable segments) = peak allocated + pages x 20 MiB + b x largest dequantized weight
(the page: ``EXPANDABLE_PAGE["large"]``; the weight: ``dequantized_weight_bytes``, 0 without a k-bit base).
``pages`` (whole pages) and ``b`` (steps of STEP) are the pair with the least mean |error| for which no
fitted run's requirement is under its measured ``--find-min`` figure by more than FLOOR, computed on the
*measured* peak (so that a peak the estimator misses does not bend them). Evaluation adds them to the
*estimated* peak, what vramfit prints: in sample and leaving one model family out at a time. Reads
``benchmarks/results/expandable/*_grid_es_*.json``.
"""

from __future__ import annotations

import glob
import json
import os
from importlib import resources

from benchmarks.accuracy.runs import FAMILY
from vramfit.config import TrainConfig
from vramfit.estimate import estimate, expandable
from vramfit.estimate.weights import dequantized_weight_bytes
from vramfit.models import resolve_model

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "expandable")
COMMAND = "python -m benchmarks.expandable_fit"
FLOOR = -0.005
MAX_PAGES = 32
STEP, MAX_B = 0.1, 6.0


def points(results: str = RESULTS) -> list[dict]:
    out = []
    for path in sorted(glob.glob(os.path.join(results, "*_grid_es_*.json"))):
        with open(path) as f:
            r = json.load(f)["result"]
        m, spec = r["measured"], resolve_model(r["model"])
        cfg = TrainConfig.from_json(r["config"])
        est = estimate(spec, cfg, expandable_segments=True)
        out.append({"name": os.path.basename(path)[len("h200_grid_es_"):-5], "family": FAMILY[spec.family],
                    "measured_peak": m["peak_allocated_bytes"], "peak": est.peak_allocated_bytes,
                    "dequant": dequantized_weight_bytes(spec, cfg),
                    "required": m["allocator_required_bytes"]})  # fmt: skip
    return out


def _err(p: dict, peak: int, n: int, b: float) -> float:
    return expandable.required_bytes(peak, p["dequant"], n, b) / p["required"] - 1


def fit(pts: list[dict]) -> tuple[int, float]:
    best: tuple[float, int, float] | None = None
    for n in range(MAX_PAGES + 1):
        for k in range(round(MAX_B / STEP) + 1):
            errs = [_err(p, p["measured_peak"], n, k * STEP) for p in pts]
            score = sum(abs(e) for e in errs)
            if min(errs) >= FLOOR and (best is None or score < best[0]):
                best = (score, n, round(k * STEP, 4))
    if best is None:
        raise SystemExit(f"no pages <= {MAX_PAGES}, b <= {MAX_B} keeps every run above {FLOOR:+.1%}")
    return best[1], best[2]


def held_out(pts: list[dict]) -> list[tuple[dict, float]]:
    out = []
    for fam in sorted({p["family"] for p in pts}):
        n, b = fit([p for p in pts if p["family"] != fam])
        out += [(p, _err(p, p["peak"], n, b)) for p in pts if p["family"] == fam]
    return out


def summary(errs: list[float]) -> dict:
    return {"mean_abs": round(sum(abs(e) for e in errs) / len(errs), 4), "worst": round(max(errs, key=abs), 4),
            "most_negative": round(min(errs), 4)}  # fmt: skip


def main() -> int:
    pts = points()
    n, b = fit(pts)
    ho = held_out(pts)
    inside = [_err(p, p["peak"], n, b) for p in pts]
    data = {
        "about": "allocator_required under expandable_segments:True = peak allocated + pages x 20 MiB + "
        "per_dequantized_weight x the largest dequantized weight; errors on the estimated peak",
        "pages": n,
        "per_dequantized_weight": b,
        "runs": len(pts),
        "floor": FLOOR,
        "source": "H200, torch 2.11.0, transformers 5.17.0, peft 0.21.0, bitsandbytes 0.50.2; "
        "benchmarks/results/expandable/",
        "command": COMMAND,
        "in_sample": summary(inside) | {"errors": {p["name"]: round(e, 4) for p, e in zip(pts, inside, strict=True)}},
        "held_out": summary([e for _, e in ho]) | {"errors": {p["name"]: round(e, 4) for p, e in ho},
                                                   "families": sorted({p["family"] for p in pts})},
    }  # fmt: skip
    path = resources.files("vramfit").joinpath("data").joinpath(expandable.FIT_NAME)
    with open(str(path), "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
