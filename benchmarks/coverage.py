"""Coverage sweep: which causal-LM model types of the installed transformers vramfit estimates.

    python -m benchmarks.coverage                 # writes reports/coverage.md
    python -m benchmarks.coverage --types llama,olmo2,t5 --out /tmp/c.md

For every model type of ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` a small config (2 layers, hidden 64, 4 heads,
vocabulary 512: ``AutoConfig.for_model(model_type)``'s defaults with these overrides) is estimated under
the reference QLoRA recipe at 256 tokens; the row says whether it was and, when not, vramfit's own error.
Each type runs in a child process with a time limit, so one that hangs or crashes cannot stop the sweep.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "reports" / "coverage.md"
SEQ = 256
SMALL = {
    "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512, "max_position_embeddings": 512,
    "pad_token_id": 0,
}  # fmt: skip
TIMEOUT_S = 120


def small_config(model_type: str) -> dict:
    """The overrides every type gets, plus the few keys some types name differently (only where they exist)."""
    from transformers import AutoConfig

    base = AutoConfig.for_model(model_type).to_dict()
    cfg = {"model_type": model_type}
    for k, v in SMALL.items():
        if k in base or k in ("num_hidden_layers", "hidden_size", "vocab_size"):
            cfg[k] = v
    for alias, v in (("n_layer", 2), ("n_embd", 64), ("n_head", 4), ("n_positions", 512), ("num_layers", 2)):
        if alias in base:
            cfg[alias] = v
    for k in ("num_local_experts", "num_experts", "n_routed_experts"):
        if isinstance(base.get(k), int) and base[k] > 4:
            cfg[k] = 4
    if isinstance(base.get("num_experts_per_tok"), int):
        cfg["num_experts_per_tok"] = 2
    if isinstance(base.get("layer_types"), list):
        cfg["layer_types"] = base["layer_types"][:2]
    return cfg


def one(model_type: str) -> dict:
    """Estimate one model type (in this process): the row of the table."""
    from vramfit.config import TrainConfig
    from vramfit.errors import InputError
    from vramfit.estimate import estimate
    from vramfit.models import from_hf_config

    try:
        cfg = small_config(model_type)
        spec = from_hf_config(cfg, name=model_type)
        names = set(spec.linear_by_name)
        targets = ("q_proj", "v_proj") if {"q_proj", "v_proj"} <= names else ("all-linear",)
        e = estimate(spec, TrainConfig(seq_len=SEQ, targets=targets))
        path = "formula" if spec.inventory is None else "model"
        return {
            "type": model_type,
            "ok": True,
            "path": path,
            "peak": e.peak_allocated_bytes,
            "targets": targets,
        }
    except InputError as err:
        return {"type": model_type, "ok": False, "reason": str(err)}
    except Exception as err:  # noqa: BLE001 -- a bug or a transformers failure: recorded as the reason
        return {"type": model_type, "ok": False, "reason": f"{type(err).__name__}: {err}"[:300]}


def run_child(model_type: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.coverage", "--one", model_type]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"type": model_type, "ok": False, "reason": f"timed out after {TIMEOUT_S} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"type": model_type, "ok": False, "reason": f"crashed: {p.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:240]


def write(rows: list[dict], out: Path, seconds: float) -> None:
    import torch
    import transformers

    ok = [r for r in rows if r["ok"]]
    lines = [
        "# Coverage: causal-LM model types of transformers",
        "",
        f"transformers {transformers.__version__}, torch {torch.__version__}; written by "
        f"`python -m benchmarks.coverage` in {seconds:.0f} s.",
        "",
        f"**{len(ok)} of {len(rows)} model types estimated** "
        f"({sum(r.get('path') == 'formula' for r in ok)} by the built-in formulas, "
        f"{sum(r.get('path') == 'model' for r in ok)} read from the model).",
        "",
        f"Each type: a 2-layer config (hidden 64, 4 heads, vocabulary 512; the config class's defaults "
        f"otherwise), the reference QLoRA recipe at {SEQ} tokens, LoRA on q_proj,v_proj where the model has "
        "them, else all-linear. The peak is the estimate's peak allocated memory; measured columns, where "
        "present, come from `scripts/probe_coverage.sh` on a GPU.",
        "",
        "| model type | estimated | path | peak (MiB) | reason |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for r in rows:
        if r["ok"]:
            lines.append(f"| {r['type']} | yes | {r['path']} | {r['peak'] / 2**20:.1f} | |")
        else:
            lines.append(f"| {r['type']} | no | | | {_cell(r['reason'])} |")
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", help="comma-separated model types (default: every causal-LM type)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        import warnings

        warnings.simplefilter("ignore")
        print(json.dumps(one(a.one)))
        return 0
    from vramfit.models.inventory import causal_lm_model_types

    types = a.types.split(",") if a.types else sorted(causal_lm_model_types())
    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(run_child, types))
    write(rows, a.out, time.perf_counter() - t0)
    print(f"{sum(r['ok'] for r in rows)} of {len(rows)} estimated; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
