"""One rank of an engine trial: ``accelerate launch --config_file F -m vramfit.probe.engine_child TRIAL OUT``.

Every rank builds the model of the trial (random weights, as :mod:`vramfit.probe.builder`), applies
LoRA as the recipe does, and hands model and optimizer to ``Accelerator.prepare``, which applies FSDP2
(``fully_shard`` per decoder layer, the embedding, the tail and the root) as the launch config says. It
then trains ``steps`` steps with a plain loop and writes ``OUT/rank<R>.json``: the GPU peaks per phase,
the host memory of the process (RSS, its high-water mark, pinned bytes) and the step times.

With CPU offload the base is loaded on the CPU (a card that cannot hold the base cannot load it there
either); bitsandbytes quantizes it on the CPU and FSDP2 copies each unit to the GPU when it runs. The
4-bit weights are stored in the compute dtype (``bnb_4bit_quant_storage``) so that FSDP2 can shard them
(accelerate's ``fsdp2_prepare_model`` leaves uint8-stored ``Params4bit`` out of sharding).
"""

from __future__ import annotations

import json
import os
import sys
import time

from vramfit.config import TrainConfig
from vramfit.models.shipped import arch_from_dict
from vramfit.models.spec import ArchSpec


def host_memory() -> dict:
    """RSS and its high-water mark of this process (/proc/self/status), bytes."""
    out = {"rss_bytes": None, "rss_peak_bytes": None}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out["rss_bytes" if key == "VmRSS" else "rss_peak_bytes"] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def pinned_bytes(model) -> int:
    """Bytes of the model's parameters and gradients that live in pinned host memory (FSDP2's sharded
    parameters under CPUOffloadPolicy(pin_memory=True))."""
    total = 0
    for p in model.parameters():
        for t in (p, p.grad):
            if t is None:
                continue
            local = t.to_local() if hasattr(t, "to_local") else t
            if local.device.type == "cpu" and local.is_pinned():
                total += local.numel() * local.element_size()
    return total


def fsdp_units(model) -> int:
    """How many modules FSDP2's ``fully_shard`` made into units (0: the engine did not shard)."""
    from torch.distributed.fsdp import FSDPModule

    return sum(isinstance(m, FSDPModule) for m in model.modules())


def offload_policy(model) -> str | None:
    """The offload policy FSDP2 applied to the model's units (``CPUOffloadPolicy``, ``OffloadPolicy``)."""
    for m in model.modules():
        state = getattr(m, "_get_fsdp_state", None)
        group = state()._fsdp_param_group if state is not None else None
        if group is not None:
            return type(group.offload_policy).__name__
    return None


def _build(spec: ArchSpec, cfg: TrainConfig, load_device: str):
    from transformers import BitsAndBytesConfig

    from vramfit.probe import builder

    if not cfg.is_4bit:
        return builder.build_model(spec, cfg, device=load_device)
    q = builder.quantization_config(cfg)
    storage = builder.torch_dtype(cfg.compute_dtype)
    config = builder.hf_config(spec, cfg)
    cls = builder.causal_lm_class(config)
    dtype = builder.torch_dtype(cfg.load_dtype)
    bnb = BitsAndBytesConfig(**{**q.to_dict(), "bnb_4bit_quant_storage": storage})
    state = builder.random_state_dict(cls, config, dtype, load_device)
    model = cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype, quantization_config=bnb,
                                device_map={"": load_device}, attn_implementation=cfg.attn or spec.default_attn)  # fmt: skip
    model.config.use_cache = False
    return model


def _quant_states_to(model, device) -> None:
    """bitsandbytes keeps each 4-bit weight's QuantState on its Linear4bit module, where FSDP2 (which
    moves parameters only) does not see it: it must be on the device the matmul runs on."""
    for m in model.modules():
        qs = getattr(m, "quant_state", None)
        if qs is not None and hasattr(qs, "to"):
            qs.to(device)
        w = getattr(m, "weight", None)
        if getattr(w, "quant_state", None) is not None:
            w.quant_state.to(device)


def count_layer_runs(model) -> list[int]:
    """A one-element counter of decoder-layer bodies run: a forward hook on each layer's attention (inside
    the layer's checkpointed ``forward``), so a step that recomputes in backward counts every layer twice."""
    runs = [0]

    def hook(*_):
        runs[0] += 1

    for name, m in model.named_modules():
        if name.endswith("self_attn"):
            m.register_forward_hook(hook)
    return runs


def _peak(torch, device: str) -> dict:
    if device != "cuda":
        return {"peak_allocated_bytes": None, "peak_reserved_bytes": None}
    free, total = torch.cuda.mem_get_info()
    return {
        "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
        "peak_reserved_bytes": torch.cuda.max_memory_reserved(),
        # the device's memory in use outside this process's allocator now: CUDA context, NCCL buffers (and
        # other processes on a shared GPU)
        "outside_allocator_bytes": total - free - torch.cuda.memory_reserved(),
    }


def _phase(torch, device: str, name: str, t0: float, model=None) -> dict:
    out = {
        "name": name,
        "seconds": round(time.perf_counter() - t0, 3),
        **_peak(torch, device),
        **host_memory(),
    }
    if model is not None:
        out["pinned_param_bytes"] = pinned_bytes(model)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return out


def _accelerator(grad_accum: int = 1):
    """The Accelerator of the launch config. Without CUDA, accelerate runs the processes as MULTI_CPU (gloo)
    and applies no FSDP (state.py enables FSDP for GPU-like distributed types only): there the plugin the
    launcher's FSDP_* variables describe is set on the state by hand, so that ``prepare`` runs the same
    ``fsdp2_prepare_model`` (fully_shard over gloo) as on GPUs."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if torch.cuda.is_available():
        return Accelerator(gradient_accumulation_steps=grad_accum)
    acc = Accelerator(cpu=True, gradient_accumulation_steps=grad_accum)
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and acc.num_processes > 1:
        plugin = FullyShardedDataParallelPlugin()
        acc.state.fsdp_plugin = plugin
        acc.state.distributed_type = DistributedType.FSDP
    return acc


def _cap(torch, acc, device: str, cap_bytes: int | None) -> None:
    """The emulated card: ``set_per_process_memory_fraction`` of the rank's GPU."""
    if device == "cuda" and cap_bytes:
        total = torch.cuda.get_device_properties(acc.device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total), acc.device)


def _accumulated_step(acc, model, opt, spec: ArchSpec, cfg: TrainConfig, g):
    """One optimizer step of ``grad_accum`` micro-batches, as the emitted train.py runs it
    (``accelerator.accumulate``, :mod:`vramfit.plan.emit.fsdp`); the last micro-batch's loss."""
    import torch

    for _ in range(cfg.grad_accum):
        with acc.accumulate(model):
            ids = torch.randint(0, spec.vocab_size, (cfg.batch_size, cfg.seq_len), generator=g).to(acc.device)
            loss = model(input_ids=ids, labels=ids).loss
            acc.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
    return loss


def _start_trace(device: str, entries) -> bool:
    """With ``snapshot_entries``: record the steps' allocator events (vramfit.probe.snapshot)."""
    if device != "cuda" or not entries:
        return False
    from vramfit.probe import snapshot

    snapshot.start(int(entries))
    return True


def _save_trace(acc, out_dir: str) -> None:
    """The steps' trace in vramfit's compact form, one gzipped JSON per rank."""
    import gzip

    from vramfit.probe import snapshot

    compact = snapshot.compact(snapshot.take(), acc.device.index or 0)
    snapshot.stop()
    os.makedirs(out_dir, exist_ok=True)
    with gzip.open(os.path.join(out_dir, f"rank{acc.process_index}.trace.json.gz"), "wt") as f:
        json.dump(compact, f)


def run(trial: dict) -> dict:
    import torch

    from vramfit.probe.recipe import prepare_model

    spec = arch_from_dict(trial["spec"])
    cfg = TrainConfig.from_json(trial["config"])
    steps, offload = int(trial.get("steps", 3)), trial.get("offload", "none")
    acc = _accelerator(cfg.grad_accum)
    device = acc.device.type
    phases, t0 = [], time.perf_counter()
    # NOTE: the engine's processes hold the base on the CPU before fully_shard. load "cpu" loads and
    # quantizes it there under the cap, as the emitted script does; "gpu" (faster: bitsandbytes quantizes
    # on the GPU) quantizes it there and moves it to the host before the cap is set, so the load is not
    # part of what the capped run measures
    on_cpu = trial.get("load") == "cpu" or device != "cuda"
    if on_cpu:
        _cap(torch, acc, device, trial.get("cap_bytes"))
    model = _build(spec, cfg, "cpu" if on_cpu else str(acc.device))
    if not on_cpu:
        model = model.to("cpu")
        torch.cuda.empty_cache()
        _cap(torch, acc, device, trial.get("cap_bytes"))
    phases.append(_phase(torch, device, "load", t0))
    model = prepare_model(model, spec, cfg)
    # from_pretrained leaves the model in eval mode, where transformers' checkpointed layers run without
    # checkpointing and dropout is the identity (the Trainer calls train(); a plain loop must)
    model.train()
    runs = count_layer_runs(model)
    # NOTE: no list of the parameters may outlive prepare: fully_shard moves each one to the GPU before it
    # shards and offloads it, and a reference kept here would keep that GPU copy alive (the emitted script
    # passes the list inline too)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=False)
    model, opt = acc.prepare(model, opt)
    _quant_states_to(model, acc.device)
    phases.append(_phase(torch, device, "prepare", t0, model))
    g = torch.Generator().manual_seed(acc.process_index)
    step_seconds, oom, runs_per_step = [], None, []
    trace = _start_trace(device, trial.get("snapshot_entries"))
    try:
        for step in range(steps):
            runs[0] = 0
            ts = time.perf_counter()
            loss = _accumulated_step(acc, model, opt, spec, cfg, g)
            if device == "cuda":
                torch.cuda.synchronize()
            step_seconds.append(round(time.perf_counter() - ts, 4))
            runs_per_step.append(runs[0])
            phases.append(_phase(torch, device, f"step {step + 1}", t0, model))
    except torch.OutOfMemoryError as e:
        oom = str(e).strip().splitlines()[0][:300]
    if trace:
        _save_trace(acc, trial["out_dir"])
    return {
        "rank": acc.process_index,
        "world_size": acc.num_processes,
        "device": device,
        "distributed_type": str(acc.distributed_type),
        "fsdp_units": fsdp_units(model),
        "offload_policy": offload_policy(model),
        "phases": phases,
        "peak_allocated_bytes": max((p["peak_allocated_bytes"] or 0 for p in phases), default=0) or None,
        "peak_reserved_bytes": max((p["peak_reserved_bytes"] or 0 for p in phases), default=0) or None,
        "host_rss_peak_bytes": host_memory()["rss_peak_bytes"],
        "pinned_param_bytes": max(p.get("pinned_param_bytes", 0) for p in phases),
        "step_seconds": step_seconds,
        "training": model.training,
        # 2 per layer: checkpointing recomputed every layer in backward; 1: it did not run
        "layer_runs_per_layer": [round(n / spec.num_layers, 2) for n in runs_per_step],
        "oom": oom,
        "cap_bytes": trial.get("cap_bytes"),
        "offload": offload,
        "load": "cpu" if on_cpu else "gpu",
        "allocator_conf": {v: os.environ.get(v) for v in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")},
        "loss_finite": bool(torch.isfinite(loss).item()) if oom is None else None,
    }


def main(argv: list[str]) -> int:
    trial_path, out_dir = argv
    with open(trial_path) as f:
        trial = json.load(f) | {"out_dir": out_dir}
    try:
        result = run(trial)
    except Exception as e:  # out of memory before the steps (prepare): a result, not a crash
        if "out of memory" not in str(e).lower():
            raise
        result = {"rank": int(os.environ.get("RANK", "0")), "oom": str(e).strip().splitlines()[0][:300],
                  "oom_phase": "prepare", "cap_bytes": trial.get("cap_bytes")}  # fmt: skip
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"rank{result['rank']}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
