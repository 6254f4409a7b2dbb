"""Probe benchmarks and calibration points, run on a GPU machine (see scripts/device_setup.sh).

    python -m benchmarks.probe_bench --out DIR SCENARIO [SCENARIO ...]

Scenarios (each writes DIR/<scenario>.json with the environment and the exact command):

  verdict      time to a verdict: `probe` of mistral-7b with the reference recipe (build included)
  findmin      time of `probe --find-min` for mistral-7b (the allocator_required search)
  builder      the random-weight builder vs a plain from_pretrained of a saved random checkpoint with the
               same config (qwen2.5-0.5b): load peak, final size and the whole probe's peaks
  calib        measured vs estimated, component by component, for a few configurations (find-min on)
  fixture      a small real snapshot (tiny llama) for the CPU attribution tests
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time

from vramfit.config import TrainConfig

CALIB = {
    "mistral-7b_seq512_gc": ("mistral-7b", {}),
    "mistral-7b_seq512_nogc": ("mistral-7b", {"gradient_checkpointing": False}),
    "llama-3.2-1b_seq512_gc": ("llama-3.2-1b", {}),
    "llama-3.2-1b_seq512_nogc": ("llama-3.2-1b", {"gradient_checkpointing": False}),
    "qwen2.5-0.5b_seq512_gc": ("qwen2.5-0.5b", {}),
    "qwen2.5-0.5b_seq512_nogc": ("qwen2.5-0.5b", {"gradient_checkpointing": False}),
}

TINY = dict(model_type="llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            tie_word_embeddings=False, torch_dtype="bfloat16")  # fmt: skip


def _timed_probe(model, cfg, **kw) -> tuple[dict, float]:
    from vramfit.probe import probe

    t = time.perf_counter()
    r = probe(model, cfg, **kw)
    return r.to_json(), round(time.perf_counter() - t, 2)


def scenario_verdict(out: str) -> dict:
    res, wall = _timed_probe("mistral-7b", TrainConfig())
    return {"wall_seconds_to_verdict": wall, "result": res}


def scenario_findmin(out: str) -> dict:
    res, wall = _timed_probe("mistral-7b", TrainConfig(), find_min_cap=True, record=False)
    return {"wall_seconds_find_min": wall, "result": res}


def _load_peak(model: str, weights: str | None) -> dict:
    """In this process: build (or from_pretrained) the QLoRA base and read the allocator's counters."""
    import torch

    from vramfit.models import resolve_model
    from vramfit.probe.builder import build_model

    torch.cuda.init()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    build_model(resolve_model(model), TrainConfig(), "cuda", weights=weights)
    torch.cuda.synchronize()
    return {"seconds": round(time.perf_counter() - t, 2), "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
            "allocated_bytes": torch.cuda.memory_allocated(), "peak_reserved_bytes": torch.cuda.max_memory_reserved()}  # fmt: skip


def scenario_builder(out: str, model: str = "qwen2.5-0.5b") -> dict:
    import subprocess

    import torch

    from vramfit.models import resolve_model
    from vramfit.probe.builder import build_model

    spec = resolve_model(model)
    with tempfile.TemporaryDirectory() as ckpt:
        m = build_model(spec, TrainConfig(method="full", quant="none"), "cpu")  # random bf16, unquantized
        m.save_pretrained(ckpt)
        del m
        files = sorted(os.listdir(ckpt))
        loads = {}
        for name, w in (("builder", None), ("from_pretrained", ckpt)):
            here = os.path.dirname(os.path.abspath(__file__))
            code = f"import json,sys; sys.path.insert(0, {here!r}); from probe_bench import _load_peak; print(json.dumps(_load_peak({model!r}, {w!r})))"
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            loads[name] = json.loads(p.stdout.strip().splitlines()[-1])
        probes = {}
        for name, w in (("builder", None), ("from_pretrained", ckpt)):
            res, wall = _timed_probe(model, TrainConfig(), weights=w, record=False)
            m = res["measured"]
            probes[name] = {"wall_seconds": wall, "peak_allocated_bytes": m["peak_allocated_bytes"],
                            "peak_reserved_bytes": m["peak_reserved_bytes"], "phases": m["phases"]}  # fmt: skip
    del torch
    rel = {
        k: abs(loads["builder"][k] - loads["from_pretrained"][k]) / loads["from_pretrained"][k]
        for k in ("peak_allocated_bytes", "allocated_bytes")
    }
    rel["probe_peak_allocated_bytes"] = (
        abs(probes["builder"]["peak_allocated_bytes"] - probes["from_pretrained"]["peak_allocated_bytes"])
        / probes["from_pretrained"]["peak_allocated_bytes"]
    )
    return {"model": model, "checkpoint_files": files, "load": loads, "probe": probes, "relative_difference": rel,
            "within_1_percent": all(v <= 0.01 for v in rel.values())}  # fmt: skip


def scenario_calib(out: str, names: list[str] | None = None) -> dict:
    results = {}
    for name, (model, changes) in CALIB.items():
        if names and name not in names:
            continue
        res, wall = _timed_probe(model, TrainConfig(**changes), find_min_cap=True)
        results[name] = {"wall_seconds": wall, "result": res}
        with open(os.path.join(out, f"calib_{name}.json"), "w") as f:
            json.dump({"command": _command(), "wall_seconds": wall, "result": res}, f, indent=1)
    return {"configurations": sorted(results)}


def scenario_fixture(out: str) -> dict:
    from vramfit.models import from_hf_config

    spec = from_hf_config(TINY, name="tiny-llama")
    path = os.path.join(out, "probe_snapshot_tiny_llama.json")
    res, wall = _timed_probe(spec, TrainConfig(seq_len=64), steps=2, compact_out=path,
                             snapshot_path=os.path.join(out, "probe_snapshot_tiny_llama.pickle"))  # fmt: skip
    with open(path) as f:
        fixture = json.load(f)
    fixture["measured"] = res["measured"]
    fixture["environment"] = res["environment"]
    fixture["command"] = _command()
    fixture["config"] = res["config"]
    fixture["hf_config"] = TINY
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    return {"wall_seconds": wall, "fixture": path, "bytes": os.path.getsize(path)}


def _command() -> str:
    """The command line as run, with the output folder written as $OUT (it is the machine's own)."""
    argv = list(sys.argv)
    if "--out" in argv[:-1]:
        argv[argv.index("--out") + 1] = "$OUT"
    return "python3 " + " ".join(a if a == "$OUT" else shlex.quote(a) for a in argv)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", help="calib: configuration names")
    ap.add_argument("scenarios", nargs="+", choices=["verdict", "findmin", "builder", "calib", "fixture"])
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    from vramfit.environment import environment

    for s in a.scenarios:
        t = time.perf_counter()
        try:
            data = scenario_calib(a.out, a.only) if s == "calib" else globals()[f"scenario_{s}"](a.out)
        except Exception as e:  # keep going: one broken scenario must not lose the others' numbers
            import traceback

            traceback.print_exc()
            data = {"error": repr(e)}
        data.update(command=_command(), scenario=s, seconds=round(time.perf_counter() - t, 2),
                    environment=environment())  # fmt: skip
        with open(os.path.join(a.out, f"{s}.json"), "w") as f:
            json.dump(data, f, indent=1)
        print(
            f"== {s}: {data.get('seconds')} s",
            {k: v for k, v in data.items() if k not in ("result", "environment")},
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
