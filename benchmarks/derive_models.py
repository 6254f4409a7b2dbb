"""Write vramfit/data/derived_models.json: the inventory and traced layer terms of every registry model
whose model_type is not a built-in family, so that they are estimated without torch and offline.

    python -m benchmarks.derive_models        # needs torch + transformers + peft (the probe extra)

For each such model: the inventory of the model transformers builds on the meta device, and the trace of one
decoder layer (vramfit/models/trace.py) under the trace keys the estimator asks for most: QLoRA (nf4) and
LoRA (bf16) on the first LoRA target set of the planner's ladder and on all-linear, rank 16,
full fine-tuning; SDPA and eager attention; bf16 and fp16 compute. Other keys are traced when torch is
installed and refused with a clear message when it is not. The file records the versions it ran with.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from vramfit.config import TrainConfig
from vramfit.estimate.traced import trace_key
from vramfit.models.hf_config import SUPPORTED_MODEL_TYPES
from vramfit.models.inventory import inventory_from_config
from vramfit.models.registry import ENTRIES
from vramfit.models.shipped import DATA_FILE, config_digest, inventory_to_dict, key_text

OUT = Path(__file__).resolve().parent.parent / "vramfit" / "data" / DATA_FILE
RANKS = (16,)  # the recipe; other ranks are traced when torch is installed
ATTNS = ("sdpa", "eager")
COMPUTE = ("bf16", "fp16")


def configs_for(inv) -> list[TrainConfig]:
    leaves = {m.leaf for m in inv.linears if m.layer is not None}
    first = ("q_proj", "v_proj") if {"q_proj", "v_proj"} <= leaves else ("qkv_proj",)
    out = []
    for compute in COMPUTE:
        for method in ("qlora", "lora"):
            for targets in (first, ("all-linear",)):
                for rank in RANKS:
                    out.append(TrainConfig(method=method, targets=targets, rank=rank, compute_dtype=compute))
        out.append(TrainConfig(method="full", compute_dtype=compute))
    return out


def derive(entry) -> dict:
    from vramfit.models.trace import trace_layer

    inv = inventory_from_config(entry.config, entry.name)
    traces = {}
    for cfg in configs_for(inv):
        for attn in ATTNS:
            key = trace_key(cfg, attn)
            t = trace_layer(entry.config, key)
            traces[key_text(key)] = {
                "saved_per_token": t.saved_per_token,
                "saved_per_s2": t.saved_per_s2,
                "fwd_transient_per_token": t.fwd_transient_per_token,
                "bwd_transient_per_token": t.bwd_transient_per_token,
                "transformers_version": t.transformers_version,
                "torch_version": t.torch_version,
            }
    return {"name": entry.name, "hf_id": entry.hf_id, "inventory": inventory_to_dict(inv), "traces": traces}


def main() -> int:
    import peft
    import torch
    import transformers

    models, failed = {}, {}
    for e in ENTRIES:
        if e.config["model_type"] in SUPPORTED_MODEL_TYPES:
            continue
        t0 = time.perf_counter()
        try:
            models[config_digest(e.config)] = derive(e)
        except Exception as err:  # noqa: BLE001 -- reported, and the model is left out of the data
            failed[e.name] = f"{type(err).__name__}: {err}"
            print(f"{e.name}: NOT DERIVED ({failed[e.name]})")
            continue
        print(
            f"{e.name}: {len(models[config_digest(e.config)]['traces'])} traces, {time.perf_counter() - t0:.0f} s"
        )
    data = {
        "written_by": "python -m benchmarks.derive_models",
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "peft": peft.__version__,
        },
        "models": models,
        "not_derived": failed,
    }
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    tmp.replace(OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
