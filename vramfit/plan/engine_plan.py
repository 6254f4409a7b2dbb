"""``plan`` with ``--offload`` / ``--gpus``: the search runs on one GPU's share (FSDP2), no offload first.

Offloading makes every step stream the base over PCIe, so the plan uses it only when nothing fits
without it: with ``--offload cpu`` the search first runs without offload, and keeps that answer when it
fits, saying what offload would have cost. The pick carries the engine files beside the training code
(:mod:`vramfit.plan.engine_config`).
"""

from __future__ import annotations

from collections.abc import Callable

from vramfit.plan.engine_config import accelerate_yaml, deepspeed_json, launch_command


def _run(plan: Callable, arch, card, fixed: dict, offload: str, gpus: int, common: dict):
    fixed = dict(fixed)
    if (offload != "none" or gpus != 1) and "method" not in fixed and "quant" not in fixed:
        fixed["method"] = "qlora"  # FSDP-QLoRA; FSDP2 cannot shard the int8 base the search would try
    if offload == "cpu":
        fixed.setdefault("optimizer", "adamw_torch")  # the optimizer steps on the CPU
    return plan(arch, card, fixed, offload=offload, gpus=gpus, **common)


def plan_with_engine(plan: Callable, arch, card, fixed: dict, offload: str, gpus: int, common: dict):
    """(PlanResult, extra(json) -> dict of the keys to add to its JSON)."""
    notes: list[str] = []
    result = _run(plan, arch, card, fixed, "none", gpus, common) if offload == "cpu" else None
    used = "none"
    if result is not None and result.fits:
        notes.append("fits without offload: --offload cpu is not needed (offload would stream the base over "
                     "PCIe every step)")  # fmt: skip
    else:
        result, used = _run(plan, arch, card, fixed, offload, gpus, common), offload
    if result.fits and used == "cpu":
        s = result.recommended.estimate.to_json().get("slowdown", {})
        host = result.recommended.estimate.to_json()["host_memory_bytes"]["total"]
        notes.append(f"fits with CPU offload: {host / 2**30:.1f} GiB of host memory (offloaded tensors), about "
                     f"{s.get('estimated_slowdown')} x the step time without offload ({s.get('pcie_link')}, "
                     f"{s.get('bytes_moved_per_step', 0) / 2**30:.1f} GiB moved per step)")  # fmt: skip

    def extra(out: dict) -> dict:
        files = {}
        if result.fits and (used == "cpu" or gpus > 1):
            cfg = result.recommended.config
            files = {"fsdp2.yaml": accelerate_yaml(arch, cfg, gpus, used),
                     "ds_zero3.json": deepspeed_json(cfg, gpus, used)}  # fmt: skip
            notes.append(f"run it with: {launch_command(gpus)}")
        code = dict(out.get("code") or {})
        code["engine_files"] = files
        return {"engine": "fsdp2" if used == "cpu" or gpus > 1 else "single", "offload": used, "gpus": gpus,
                "engine_notes": list(dict.fromkeys(notes)), "code": code}  # fmt: skip

    return result, extra
