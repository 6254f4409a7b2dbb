"""One probe trial in its own process: ``python -m vramfit.probe.child TRIAL.json RESULT.json``.

A process per trial gives every trial a fresh CUDA context and allocator (peaks and the allocator cap
cannot leak between trials), lets the runner enforce a timeout and kill a stuck trial, and returns all
GPU memory when it ends. Progress goes to stdout as JSON lines ({"event": ...}); the result is written to
RESULT.json: ``{"measured": ..., "environment": ..., "warnings": [...]}`` or ``{"error": {flag, message}}``
for a problem the user can fix (no GPU, a dtype the card cannot run, an unknown architecture).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import replace

from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.models.shipped import arch_from_dict
from vramfit.models.spec import ArchSpec
from vramfit.probe.result import Measured, Oom

# Trace entries kept in memory while recording (a ring buffer): a 7B QLoRA run of 3 steps makes
# well under this many allocator events; older ones are dropped first when it does not.
DEFAULT_MAX_ENTRIES = 400_000


def _emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom_types = tuple(
        t
        for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
        if t
    )
    return isinstance(exc, oom_types) or "out of memory" in str(exc).lower()


def identity_of(model, trainer) -> dict[int, str]:
    """{storage address: component} of every CUDA tensor the run owns by name (see attribution.py)."""
    out: dict[int, str] = {}

    def put(t, component: str) -> None:
        import torch

        if isinstance(t, torch.Tensor) and t.is_cuda and not getattr(t, "is_paged", False):
            out.setdefault(t.untyped_storage().data_ptr(), component)

    for name, p in model.named_parameters():
        put(p, "adapters" if "lora_" in name else "weights")
        qs = getattr(p, "quant_state", None)  # bitsandbytes Params4bit
        if qs is not None:
            for t in (qs.absmax, qs.code, getattr(qs, "offset", None)):
                put(t, "quant_state")
            if getattr(qs, "state2", None) is not None:
                put(qs.state2.absmax, "quant_state")
                put(qs.state2.code, "quant_state")
        put(getattr(p, "CB", None), "weights")  # bitsandbytes Int8Params
        put(getattr(p, "SCB", None), "quant_state")
        if p.grad is not None:
            put(p.grad, "gradients")
    for _name, b in model.named_buffers():
        put(b, "weights")
    opt = getattr(trainer, "optimizer", None)
    if opt is not None:
        for state in opt.state.values():
            for v in state.values():
                put(v, "optimizer")
    return out


def paged_bytes(trainer) -> int:
    """bitsandbytes paged optimizer state: CUDA managed memory, outside PyTorch's allocator."""
    import torch

    opt = getattr(trainer, "optimizer", None)
    total = 0
    if opt is not None:
        for state in opt.state.values():
            for v in state.values():
                if isinstance(v, torch.Tensor) and getattr(v, "is_paged", False):
                    total += v.numel() * v.element_size()
    return total


def allocator_used() -> dict:
    """What this process's torch actually uses: its version, the allocator variables it saw, and the
    settings torch itself reports (the snapshot's ``allocator_settings``, read before any recording so
    that it is cheap; a segment's ``is_expandable`` as the fallback)."""
    import torch

    from vramfit.allocator_settings import NEW_VARIABLE, OLD_VARIABLE

    out: dict = {"allocator_torch": torch.__version__,
                 "allocator_env": {v: os.environ[v] for v in (NEW_VARIABLE, OLD_VARIABLE) if v in os.environ}}  # fmt: skip
    torch.empty(1, device="cuda")  # the allocator parses its settings on first use
    getter = getattr(torch._C, "_accelerator_getAllocatorSettings", None)
    out["allocator_settings"] = getter() if getter is not None else None
    snap = torch.cuda.memory._snapshot()
    settings = snap.get("allocator_settings") if isinstance(snap, dict) else None
    if isinstance(settings, dict) and "expandable_segments" in settings:
        out["allocator_expandable_segments"] = bool(settings["expandable_segments"])
    else:
        segs = snap.get("segments", []) if isinstance(snap, dict) else []
        out["allocator_expandable_segments"] = any(s.get("is_expandable") for s in segs)
    return out


def gpu_environment(device: str) -> dict:
    from vramfit.environment import environment

    env = environment(query_gpu=device == "cuda")
    from vramfit.environment import package_version
    from vramfit.estimate.profile import MEASURED_TRAINER_STACK

    # the trainer-stack packages, where installed (results record what trained them)
    env.update({k: v for k in MEASURED_TRAINER_STACK if (v := package_version(k)) is not None})
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_bytes=int(props.total_memory), cuda=torch.version.cuda,
                   compute_capability=f"{props.major}.{props.minor}")  # fmt: skip
    return env


def _start_cuda(
    trial: dict, spec: ArchSpec, cfg: TrainConfig, record: bool, warnings: list[str]
) -> tuple[bool, list[int], dict]:
    """Check the card, set the cap, start the snapshot: whether it records, the list the OOM observer
    appends the failed request's size to, and the allocator this process really uses."""
    import torch

    from vramfit.catalog.card import check_card
    from vramfit.probe import snapshot as snap_api

    if not torch.cuda.is_available():
        # no flag: nothing the user typed is wrong, the machine has no GPU
        raise InputError("", "no CUDA GPU is visible to torch; the probe measures GPU memory "
                         "(--device cpu runs the pipeline on the CPU, without memory numbers)")  # fmt: skip
    # the one card rule, with the device's own compute capability (torch.cuda.is_bf16_supported()
    # says True on a T4: it counts emulation, see catalog/card.py)
    check_card(cfg, cfg.attn or spec.default_attn, torch.cuda.get_device_capability(0),
               torch.cuda.get_device_name(0))  # fmt: skip
    torch.cuda.init()
    used = allocator_used()
    cap = trial.get("cap_bytes")
    if cap is not None:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), 0)
    if record:
        reason = snap_api.unsupported_reason()
        if reason:
            warnings.append(f"no memory snapshot: {reason}")
            record = False
        else:
            snap_api.start(int(trial.get("max_entries", DEFAULT_MAX_ENTRIES)))
    requested: list[int] = []
    snap_api.attach_oom_observer(requested.append)
    return record, requested, used


def _train(
    trial: dict, spec: ArchSpec, cfg: TrainConfig, tracker, record: bool, requested: list[int], t_start: float
):
    """Build, prepare and train; returns (oom or None, trainer, callback, seconds from ``t_start`` to the
    model built). An out-of-memory on the GPU is a verdict, anything else raises."""
    from vramfit.probe.builder import build_model
    from vramfit.probe.phases import make_callback
    from vramfit.probe.recipe import SyntheticTokens, prepare_model
    from vramfit.probe.stacks import build_trainer

    device, steps = tracker.device, int(trial.get("steps", 3))
    trainer = model = cb = build_seconds = None
    try:
        tracker.begin("load")
        model = build_model(spec, cfg, device=device, weights=trial.get("weights"))
        build_seconds = time.perf_counter() - t_start
        if record:
            tracker.identity = lambda: identity_of(model, trainer)
        tracker.begin("prepare")
        model = prepare_model(model, spec, cfg)
        data = SyntheticTokens(steps * cfg.batch_size * cfg.grad_accum, cfg.seq_len, spec.vocab_size)
        with tempfile.TemporaryDirectory(prefix="vramfit-probe-") as out_dir:
            cb = make_callback(tracker, model)
            trainer = build_trainer(model, cfg, data, steps, out_dir, device, [cb])
            trainer.train()
    except Exception as e:
        if device != "cuda" or not _is_oom(e):
            raise
        oom = Oom(phase=tracker.current or "load", requested_bytes=requested[-1] if requested else None,
                  message=str(e).strip().splitlines()[0][:300])  # fmt: skip
        return oom, trainer, cb, build_seconds
    return None, trainer, cb, build_seconds


def _device_memory(measured: dict, phases, trainer) -> dict:
    """Peaks, CUDA context and paged state into ``measured``; the raw readings behind them."""
    import torch

    peak = max(phases, key=lambda p: p.peak_allocated_bytes)
    measured.update(peak_allocated_bytes=peak.peak_allocated_bytes, peak_phase=peak.name,
                    peak_reserved_bytes=max(p.peak_reserved_bytes for p in phases))  # fmt: skip
    free, total = torch.cuda.mem_get_info(0)
    reserved_now = torch.cuda.memory_reserved(0)
    paged = paged_bytes(trainer) if trainer is not None else 0
    # NOTE: the context is what the device uses beyond PyTorch's cache and the paged optimizer state,
    # read after the steps (libraries load kernels lazily: cuBLAS, bitsandbytes). It assumes the
    # managed (paged) pages are resident on the GPU, which they are while the card has room.
    measured.update(cuda_context_bytes=(total - free) - reserved_now - paged, paged_optimizer_bytes=paged)
    return {"device_used_bytes": total - free, "reserved_end_bytes": reserved_now, "paged_bytes": paged}


def _attribute(trial: dict, tracker, logits_elements: int, measured: dict, raw: dict, warnings: list[str],
               allocator: dict):  # fmt: skip
    """Take the snapshot, split the peak into components (into ``measured``), replay the trace through the
    model of the allocator the run used (``allocator``: :func:`allocator_used`; into ``raw``); the compact
    snapshot."""
    from vramfit.probe import snapshot as snap_api
    from vramfit.probe.allocator_replay import simulate_allocator
    from vramfit.probe.attribution import attribute, segment_log

    raw_snap = snap_api.take()
    snap_api.stop()
    if trial.get("snapshot_pickle"):
        snap_api.save_pickle(raw_snap, trial["snapshot_pickle"])
    compact = snap_api.compact(raw_snap)
    del raw_snap
    peak = attribute(compact, tracker.markers, logits_elements)
    measured.update(breakdown=peak.breakdown, timeline=tuple(peak.timeline))
    raw.update(trace_peak_allocated_bytes=peak.allocated_bytes, trace_peak_phase=peak.phase,
               trace_events=len(compact["events"]), segments=segment_log(compact, tracker.markers))  # fmt: skip
    full = len(compact["events"]) >= int(trial.get("max_entries", DEFAULT_MAX_ENTRIES))
    # only a trace that holds the whole run can be replayed
    simulated = simulate_allocator(None if full else compact, allocator)
    if simulated is not None:
        raw["simulated"] = simulated
    if peak.allocated_bytes != measured["peak_allocated_bytes"]:
        why = "the bounded trace dropped its oldest events" if full else "block sizes the trace does not show"
        warnings.append(
            f"the snapshot's peak ({peak.allocated_bytes} B, {peak.phase}) differs from the allocator's "
            f"({measured['peak_allocated_bytes']} B): {why}; the breakdown sums to the snapshot's peak"
        )
    return compact


def run_trial(trial: dict) -> dict:
    """Build, prepare and train ``trial["steps"]`` steps; measure every phase. See module docstring."""
    from vramfit.probe.phases import PhaseTracker

    spec, cfg = arch_from_dict(trial["spec"]), TrainConfig.from_json(trial["config"])
    device, cap = trial.get("device", "cuda"), trial.get("cap_bytes")
    record = bool(trial.get("record")) and device == "cuda"
    warnings: list[str] = []
    t_start = time.perf_counter()
    requested: list[int] = []
    allocator: dict = {}
    if device == "cuda":
        record, requested, allocator = _start_cuda(trial, spec, cfg, record, warnings)
    tracker = PhaseTracker(device, on_event=_emit)
    oom, trainer, cb, build_seconds = _train(trial, spec, cfg, tracker, record, requested, t_start)
    tracker.finish()
    phases = tracker.phases()
    measured = dict(device=device, phases=phases, build_seconds=build_seconds, cap_bytes=cap, allocator_required_bytes=None,
                    fits=None if cap is None else oom is None, oom=oom, breakdown=None)  # fmt: skip
    if cb is not None and cb.step_seconds:
        steady = cb.step_seconds[1:] or cb.step_seconds
        measured["step_seconds"] = round(sum(steady) / len(steady), 4)
    raw: dict = {}
    if device == "cuda":
        raw = _device_memory(measured, phases, trainer)
    else:
        measured.update(peak_allocated_bytes=None, peak_reserved_bytes=None, peak_phase=None,
                        cuda_context_bytes=None, paged_optimizer_bytes=None)  # fmt: skip
        warnings.append("--device cpu checks the pipeline only: memory is not measured on the CPU")
    logits_elements = cfg.batch_size * cfg.seq_len * spec.vocab_size
    compact = (
        _attribute(trial, tracker, logits_elements, measured, raw, warnings, allocator) if record else None
    )
    measured["total_seconds"] = round(time.perf_counter() - t_start, 3)
    result = {"measured": Measured(**measured, raw=raw).to_json(), "warnings": warnings,
              "environment": {**gpu_environment(device), **allocator}}  # fmt: skip
    if compact is not None and trial.get("compact_out"):
        with open(trial["compact_out"], "w") as f:
            json.dump(
                {"snapshot": compact, "markers": tracker.markers, "logits_elements": logits_elements}, f
            )
    return result


def main(argv: list[str]) -> int:
    trial_path, result_path = argv
    _emit({"event": "start", "pid": os.getpid()})
    with open(trial_path) as f:
        trial = json.load(f)
    try:
        result = run_trial(trial)
        code = 0
    except InputError as e:
        result, code = {"error": {"flag": e.flag, "message": e.message}}, 3
    with open(result_path, "w") as f:
        json.dump(result, f)
    return code


def trial_config(spec: ArchSpec, cfg: TrainConfig, **options) -> dict:
    """The JSON a child reads: the architecture, the config and the trial's options."""
    from dataclasses import asdict

    return {"spec": asdict(spec), "config": replace(cfg).to_json(), **options}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
