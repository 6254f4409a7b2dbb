"""Fit, and validate held out by family, the three fitted figures of ``vramfit.estimate.expandable``.

    python -m benchmarks.expandable_fit            # writes vramfit/data/expandable_fit.json

allocator_required (expandable segments) = peak allocated + pages x 20 MiB + b x largest dequantized
attention weight + h x one hidden state (the page: ``EXPANDABLE_PAGE["large"]``; the sizes: ``expandable.gap_sources``).
``pages`` (whole pages), ``b`` and ``h`` (steps of STEP and H_STEP) are the triple with the least mean |error|
for which no fitted run's requirement is under its measured ``--find-min`` figure by more than FLOOR,
computed on the *measured* peak (so that a peak the estimator misses does not bend them). Evaluation adds them
to the *estimated* peak, what vramfit prints: in sample and leaving one model family out at a time. The
same fit with the largest dequantized weight overall in place of the attention weight (the form before) is
evaluated alike and its figures written beside, as ``alternatives``. Reads
``benchmarks/results/expandable/*_grid_es_*.json`` and the new architectures' runs of
``benchmarks/results/coverage/`` (4-layer configs of ``benchmarks/coverage_configs/``, each its own family).
"""

from __future__ import annotations

import glob
import json
import os
from importlib import resources

import numpy as np

from benchmarks.accuracy.runs import FAMILY
from vramfit.config import TrainConfig
from vramfit.estimate import estimate, expandable
from vramfit.estimate.weights import dequantized_weight_bytes
from vramfit.models import resolve_model
from vramfit.probe.measuring import measured_card

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "expandable")
COVERAGE = os.path.join(HERE, "results", "coverage")  # the new architectures, probed likewise
COVERAGE_CONFIGS = os.path.join(HERE, "coverage_configs")
COMMAND = "python -m benchmarks.expandable_fit"
FLOOR = -0.005
MAX_PAGES = 32
STEP, MAX_B = 0.1, 6.0
H_STEP, MAX_H = 0.5, 20.0


def points(results: str = RESULTS, coverage: str | None = COVERAGE) -> list[dict]:
    """Every committed --find-min run under expandable segments: the grid's (``results``; family: the
    model's) and the new architectures' 4-layer configs (``coverage``; family: the model type)."""
    out = []
    for path in sorted(glob.glob(os.path.join(results, "*_grid_es_*.json"))):
        with open(path) as f:
            r = json.load(f)["result"]
        spec = resolve_model(r["model"])
        out.append(_point(os.path.basename(path)[len("h200_grid_es_") : -5], FAMILY[spec.family], spec, r))
    for path in sorted(glob.glob(os.path.join(coverage, "*.json"))) if coverage else ():
        with open(path) as f:
            r = json.load(f)
        t = os.path.basename(path)[:-5]
        out.append(_point(f"coverage_{t}", t, resolve_model(os.path.join(COVERAGE_CONFIGS, f"{t}.json")), r))
    return out


def _point(name: str, family: str, spec, r: dict) -> dict:
    m, cfg = r["measured"], TrainConfig.from_json(r["config"])
    assert r["environment"]["allocator_expandable_segments"] is True, name
    est = estimate(spec, cfg, measured_card(r["environment"]), expandable_segments=True)
    return {"name": name, "family": family, "measured_peak": m["peak_allocated_bytes"],
            "peak": est.peak_allocated_bytes, "gaps": expandable.gap_sources(spec, cfg),
            "largest_weight": dequantized_weight_bytes(spec, cfg),
            "required": m["allocator_required_bytes"]}  # fmt: skip


def _gaps(p: dict, weight: str) -> expandable.GapSources:
    """The run's gap sources, with the weight term read from ``weight``: "attention" (the model's form) or
    "largest" (the largest dequantized weight overall, the alternative)."""
    g = p["gaps"]
    return g if weight == "attention" else expandable.GapSources(p["largest_weight"], g.hidden_state)


def _err(p: dict, peak: int, c: expandable.Coefficients, weight: str = "attention") -> float:
    return expandable.required_bytes(peak, _gaps(p, weight), c) / p["required"] - 1


def _grid() -> np.ndarray:
    """Every (pages, b, h) tried, one row each."""
    axes = np.meshgrid(np.arange(MAX_PAGES + 1), np.arange(round(MAX_B / STEP) + 1) * STEP,
                       np.arange(round(MAX_H / H_STEP) + 1) * H_STEP, indexing="ij")  # fmt: skip
    return np.stack([a.ravel() for a in axes], 1)


def fit(pts: list[dict], weight: str = "attention") -> expandable.Coefficients:
    grid = _grid()
    x = np.array(
        [[expandable.LARGE_PAGE, _gaps(p, weight).attention_weight, p["gaps"].hidden_state] for p in pts]
    )
    gap = np.array([p["required"] - p["measured_peak"] for p in pts], float)
    errs = (grid @ x.T.astype(float) - gap) / np.array([p["required"] for p in pts], float)
    ok = errs.min(axis=1) >= FLOOR
    if not ok.any():
        raise SystemExit(
            f"no pages <= {MAX_PAGES}, b <= {MAX_B}, h <= {MAX_H} keeps every run above {FLOOR:+.1%}"
        )
    score = np.where(ok, np.abs(errs).mean(axis=1), np.inf)
    n, b, h = grid[int(score.argmin())]
    return expandable.Coefficients(int(n), round(float(b), 4), round(float(h), 4))


def held_out(pts: list[dict], weight: str = "attention") -> list[tuple[dict, float]]:
    out = []
    for fam in sorted({p["family"] for p in pts}):
        c = fit([p for p in pts if p["family"] != fam], weight)
        out += [(p, _err(p, p["peak"], c, weight)) for p in pts if p["family"] == fam]
    return out


def summary(errs: list[float]) -> dict:
    return {"mean_abs": round(sum(abs(e) for e in errs) / len(errs), 4), "worst": round(max(errs, key=abs), 4),
            "most_negative": round(min(errs), 4)}  # fmt: skip


def main() -> int:
    pts = points()
    c = fit(pts)
    ho = held_out(pts)
    inside = [_err(p, p["peak"], c) for p in pts]
    alt = fit(pts, "largest")
    data = {
        "about": "allocator_required under expandable_segments:True = peak allocated + pages x 20 MiB + "
        "per_attention_weight x the largest dequantized attention weight + per_hidden_state x one hidden state "
        "(tokens x hidden size in the compute dtype); errors on the estimated peak",
        "pages": c.pages,
        "per_attention_weight": c.per_attention_weight,
        "per_hidden_state": c.per_hidden_state,
        "runs": len(pts),
        "floor": FLOOR,
        "source": "H200, torch 2.11.0, transformers 5.17.0, peft 0.21.0, bitsandbytes 0.50.2; "
        "benchmarks/results/expandable/",
        "command": COMMAND,
        "in_sample": summary(inside) | {"errors": {p["name"]: round(e, 4) for p, e in zip(pts, inside, strict=True)}},
        "held_out": summary([e for _, e in ho]) | {"errors": {p["name"]: round(e, 4) for p, e in ho},
                                                   "families": sorted({p["family"] for p in pts})},
        "alternatives": {
            "largest_weight": {
                "about": "the same fit with the largest dequantized weight overall in place of the attention weight",
                "pages": alt.pages, "per_dequantized_weight": alt.per_attention_weight,
                "per_hidden_state": alt.per_hidden_state,
                "in_sample": summary([_err(p, p["peak"], alt, "largest") for p in pts]),
                "held_out": summary([e for _, e in held_out(pts, "largest")]),
            },
        },
    }  # fmt: skip
    path = resources.files("vramfit").joinpath("data").joinpath(expandable.FIT_NAME)
    with open(str(path), "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
