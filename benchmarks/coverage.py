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
import re
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


_HEAD_DIM_FIELD = re.compile(
    r"(?:^|_)head_dim$|^rotary_dim$"
)  # per-head widths: head_dim, qk_rope_head_dim, ...


def small_config(model_type: str) -> dict:
    """The overrides every type gets, under the names the config class reads (its own keys and those its
    ``attribute_map`` aliases: ``hidden_size`` -> ``d_model``), plus the per-head widths scaled with the head."""
    from transformers import AutoConfig

    obj = AutoConfig.for_model(model_type)
    base, aliases = obj.to_dict(), set(type(obj).attribute_map)
    cfg = {"model_type": model_type}
    for k, v in SMALL.items():
        if k in base or k in aliases or k in ("num_hidden_layers", "hidden_size", "vocab_size"):
            cfg[k] = v
    for alias, v in (("n_layer", 2), ("n_embd", 64), ("n_head", 4), ("n_positions", 512), ("num_layers", 2)):
        if alias in base:
            cfg[alias] = v
    cfg.update(_head_dims(obj, base, SMALL["hidden_size"] // SMALL["num_attention_heads"]))
    experts = False
    for k in ("num_local_experts", "num_experts", "n_routed_experts"):
        experts |= isinstance(base.get(k), int) and base[k] > 0
        if isinstance(base.get(k), int) and base[k] > 4:
            cfg[k] = 4
    # routed to 2 of them, also where the defaults leave it unset (DeepSeek-V2: None)
    if isinstance(base.get("num_experts_per_tok"), int) or (experts and "num_experts_per_tok" in base):
        cfg["num_experts_per_tok"] = 2
    if isinstance(base.get("n_group"), int) and base["n_group"] > 1:  # expert groups: within the 4 experts
        cfg["n_group"], cfg["topk_group"] = 1, 1
    if isinstance(base.get("layer_types"), list):
        cfg["layer_types"] = base["layer_types"][:2]
    return cfg


def _head_dims(obj, base: dict, head: int) -> dict:
    """Every per-head width of the defaults (``head_dim``, ``rotary_dim``, ``qk_rope_head_dim``,
    ``v_head_dim``...) scaled by the same factor as the head (the default head width -> ``head``, even), so that
    the parts of a head still add up and a rotary width still fits its head."""
    hidden, heads = getattr(obj, "hidden_size", None), getattr(obj, "num_attention_heads", None)
    default = base.get("head_dim")
    if not isinstance(default, int) and isinstance(hidden, int) and isinstance(heads, int) and heads:
        default = hidden // heads
    if not isinstance(default, int) or default <= 0:
        return {}
    out = {}
    for k, v in base.items():
        if _HEAD_DIM_FIELD.search(k) and isinstance(v, int) and not isinstance(v, bool) and v > 0:
            out[k] = max(2, 2 * round(v * head / default / 2))
    return out


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
        note = ""
        try:
            e = estimate(spec, TrainConfig(seq_len=SEQ, targets=targets))
        except InputError as err:
            if err.flag != "--dropout":  # peft adapts these targets only without dropout: so estimated
                raise
            e, note = estimate(spec, TrainConfig(seq_len=SEQ, targets=targets, dropout=0.0)), "LoRA dropout 0"
        path = "formula" if spec.inventory is None else "model"
        return {
            "type": model_type,
            "ok": True,
            "path": path,
            "peak": e.peak_allocated_bytes,
            "targets": targets,
            "note": note,
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
        "them, else all-linear (with LoRA dropout 0 where peft puts those targets on fused expert parameters, "
        "which it adapts only without dropout: the row says so). The peak is the estimate's peak allocated "
        "memory; measured columns, where "
        "present, come from `scripts/probe_coverage.sh` on a GPU.",
        "",
        "| model type | estimated | path | peak (MiB) | reason, note |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for r in rows:
        if r["ok"]:
            lines.append(
                f"| {r['type']} | yes | {r['path']} | {r['peak'] / 2**20:.1f} | {r.get('note', '')} |"
            )
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
