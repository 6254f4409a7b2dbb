"""``vramfit probe --offload cpu`` / ``--gpus N``: measure a run through the real engine, beside its estimate.

The run is launched with ``accelerate launch`` and the accelerate FSDP2 config that ``plan`` emits
(:mod:`vramfit.probe.launch`), one process per GPU, each under ``set_per_process_memory_fraction`` at what
the card leaves PyTorch (usable - CUDA context), as the single-GPU probe caps its child. Each rank reports
its peaks per phase, host RSS and pinned bytes, the memory outside PyTorch's allocator (NCCL, CUDA context),
its step times and whether checkpointing recomputed (:mod:`vramfit.probe.engine_child`). ``find_min``
bisects for the smallest cap (per GPU) under which the run still trains.
"""

from __future__ import annotations

from vramfit.config import TrainConfig
from vramfit.estimate.engine import engine_estimate
from vramfit.models.spec import ArchSpec
from vramfit.probe.emulate import CAP_GRANULE, cap_for_card
from vramfit.probe.launch import LaunchFailed, launch_trial
from vramfit.probe.measuring import as_measured

ESTIMATE_KEYS = ("peak_allocated_bytes", "peak_phase", "allocator_required_bytes", "per_gpu_required_vram_bytes",
                 "host_memory_bytes", "nccl_bytes", "slowdown", "breakdown", "warnings")  # fmt: skip


def trial(arch: ArchSpec, cfg: TrainConfig, run: dict, steps: int, cap: int | None) -> dict:
    """Every rank's result under ``cap`` (``ranks``, ``oom``), or the launch's failure (``error``); the launch
    is stopped after ``run["timeout"]`` seconds (default :data:`vramfit.probe.DEFAULT_TIMEOUT`)."""
    from vramfit.probe import DEFAULT_TIMEOUT

    try:
        ranks = launch_trial(arch, cfg, gpus=run["gpus"], offload=run["offload"], steps=steps, cap_bytes=cap,
                             timeout=run.get("timeout", DEFAULT_TIMEOUT), expandable_segments=run.get("expandable_segments"),
                             load=run.get("load", "gpu"), port=run.get("port", 29517),
                             trace_to=run.get("trace_to"))  # fmt: skip
    except LaunchFailed as e:
        return {"error": str(e)[-2000:]}
    return {"ranks": ranks, "oom": any(r.get("oom") for r in ranks)}


def find_min(arch: ArchSpec, cfg: TrainConfig, run: dict, steps: int, lo: int, hi: int, n: int) -> dict:
    """``n`` bisection steps between a cap known to fail (``lo``) and one that trains (``hi``)."""
    tried = []
    for _ in range(n):
        mid = (lo + hi) // 2 // CAP_GRANULE * CAP_GRANULE
        if mid <= lo or mid >= hi:
            break
        t = trial(arch, cfg, {**run, "trace_to": None}, steps, mid)
        ok = "ranks" in t and not t["oom"]
        tried.append({"cap_bytes": mid, "trained": ok})
        lo, hi = (lo, mid) if ok else (mid, hi)
    return {"min_cap_bytes": hi, "tried": tried}


def measured_peak(ranks: list[dict]) -> int | None:
    """The largest rank's allocated peak after the load (the load is not part of the capped run)."""
    peaks = [max((p["peak_allocated_bytes"] or 0 for p in r["phases"] if p["name"] != "load"), default=0)
             for r in ranks if r.get("phases")]  # fmt: skip
    return (max(peaks) or None) if peaks else None


def device_capability(device: str) -> tuple[int, int] | None:
    """The compute capability of this process's GPU (None on the CPU): the measuring GPU's."""
    if device != "cuda":
        return None
    import torch

    return tuple(torch.cuda.get_device_capability())


def probe_engine(arch: ArchSpec, cfg: TrainConfig, card, run: dict, steps: int = 3, device: str = "cuda",
                 find_min_steps: int = 0) -> dict:  # fmt: skip
    """The measurement of ``cfg`` on ``card`` through FSDP2 as ``run`` says (``gpus``, ``offload``, and
    optionally ``expandable_segments`` and ``load``), with the estimate beside it (see module docstring)."""
    run = {"gpus": 1, "offload": "cpu", **run}
    beside = as_measured(card, device_capability(device))  # the measuring GPU's cuBLAS workspaces
    est = engine_estimate(arch, cfg, beside, offload=run["offload"], gpus=run["gpus"],
                          expandable_segments=bool(run.get("expandable_segments"))).to_json()  # fmt: skip
    cap = cap_for_card(card) if device == "cuda" and card is not None else None
    row = {**{k: v for k, v in run.items() if k not in ("port", "trace_to")}, "cap_bytes": cap, "config": cfg.to_json(),
           "estimate": {**{k: est.get(k) for k in ESTIMATE_KEYS}, "phases": est["phases"]}}  # fmt: skip
    t = trial(arch, cfg, run, steps, cap)
    if "error" in t:
        return {**row, "error": t["error"]}
    row["measured"] = t["ranks"]
    row["oom"] = t["oom"]
    peak = measured_peak(t["ranks"]) if device == "cuda" else None
    if peak and not t["oom"]:
        row["measured_peak_allocated_bytes"] = peak
        row["error_peak_allocated"] = round(est["peak_allocated_bytes"] / peak - 1, 4)
        if find_min_steps and cap:
            row["find_min"] = find_min(arch, cfg, run, steps, peak - CAP_GRANULE, cap, find_min_steps)
    return row
