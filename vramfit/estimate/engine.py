"""``engine_estimate``: the estimate of one GPU's share when an engine shards or offloads the run.

``--gpus 1 --offload none`` is the plain estimate (:func:`vramfit.estimate.estimate`). Anything else runs
through FSDP2 (``accelerate launch`` with ``fsdp_version: 2``), whose placement :mod:`.sharding` models;
what the run costs in time comes from the bytes each step moves over the card's PCIe link
(:mod:`vramfit.gpu_links`) and the recompute of gradient checkpointing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.estimate.result import Estimate, Verdict
from vramfit.estimate.sharding import Offload, Units, engine_phases, gathered_config, placement, units
from vramfit.memory import judge_on_card
from vramfit.models.spec import ArchSpec

MAX_GPUS = 8  # one host (NVLink / PCIe peers); more GPUs are more than one machine
CPU_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd")  # optimizers that step on the CPU


def check_engine(cfg: TrainConfig, offload: str, gpus) -> None:
    """What FSDP2 cannot do with this configuration, naming the flag."""
    if offload not in ("none", "cpu"):
        raise InputError("--offload", f"unknown value {offload!r}; accepted: none, cpu")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= MAX_GPUS:
        raise InputError(
            "--gpus", f"must be a whole number from 1 to {MAX_GPUS} (GPUs of one machine), got {gpus!r}"
        )
    if offload == "none" and gpus == 1:
        return
    if cfg.resolved_quant == "int8":
        raise InputError("--quant", "FSDP2 cannot shard LLM.int8 weights (Int8Params); accepted with --offload "
                         "cpu or --gpus > 1: nf4, fp4 (bnb_4bit_quant_storage) or none")  # fmt: skip
    if offload == "cpu" and cfg.optimizer not in CPU_OPTIMIZERS:
        raise InputError("--optimizer", f"{cfg.optimizer} steps on the GPU, but with --offload cpu the optimizer "
                         f"runs on the CPU; accepted: {', '.join(CPU_OPTIMIZERS)}")  # fmt: skip


@dataclass(frozen=True)
class EngineEstimate(Estimate):
    """An :class:`Estimate` of one GPU's share, with the engine's placement and cost (``engine``)."""

    engine: dict = field(default_factory=dict)

    @property
    def required_vram_bytes(self) -> int:
        return self.allocator_required_bytes + self.non_torch.total + self.engine.get("nccl_bytes", 0)

    @property
    def required_vram_low_bytes(self) -> int:
        return self.allocator_required_low + self.non_torch.total + self.engine.get("nccl_bytes", 0)

    def to_json(self) -> dict:
        out = super().to_json()
        out["required_vram_bytes"] = self.required_vram_bytes
        out["required_vram_low_bytes"] = self.required_vram_low_bytes
        out["per_gpu_required_vram_bytes"] = self.required_vram_bytes
        out.update({k: v for k, v in self.engine.items()})
        return out


def step_cost(arch: ArchSpec, cfg: TrainConfig, u: Units, gpus: int, offload: Offload, card_name) -> dict:
    """Bytes one optimizer step moves over PCIe and what that and checkpointing cost in time."""
    from vramfit import gpu_links

    tokens = cfg.batch_size * cfg.seq_len
    n = arch.total_params
    weight_grads = 2 if not cfg.uses_lora else 0  # a frozen base computes no weight gradients
    base_flops = (2 + 2 + weight_grads) * n * tokens  # forward + input gradients (+ weight gradients)
    recompute = 2 * n * tokens if cfg.gradient_checkpointing else 0
    flops = (base_flops + recompute) * cfg.grad_accum
    compute_s = flops / gpu_links.compute_flops(card_name)
    moved = 0
    if offload == "cpu":  # every unit's host piece per forward, again per backward (the tail once)
        host = -(-u.sharded_total // gpus)
        moved = (2 * host - u.tail_unsharded // gpus) * cfg.grad_accum
    link = gpu_links.link_bytes_per_second(card_name)
    gen, lanes, source = gpu_links.link_of(card_name)
    pcie_s = moved / link
    # one process copies each host piece on the compute stream (wait_for_unshard, world_size == 1): the
    # copies add to the step; with several, the all-gather streams overlap them with compute
    step_s = compute_s + pcie_s if gpus == 1 else max(compute_s, pcie_s)
    return {
        "bytes_moved_per_step": moved,
        "pcie_link": f"PCIe {gen}.0 x{lanes}",
        "pcie_link_source": source,
        "pcie_seconds_per_step": round(pcie_s, 3),
        "compute_seconds_per_step": round(compute_s, 3),
        "recompute_factor": round((base_flops + recompute) / base_flops, 3),
        "estimated_slowdown": round(step_s / compute_s, 2) if compute_s else None,
        "assumptions": f"compute at {gpu_links.ASSUMED_MFU:.0%} of the card's dense 16-bit tensor rate at "
        f"{gpu_links.ASSUMED_CLOCK_HZ / 1e9:g} GHz; host copies at {gpu_links.LINK_EFFICIENCY:.0%} of the link",
    }


def engine_estimate(
    arch: ArchSpec,
    cfg: TrainConfig,
    card,
    offload: Offload = "none",
    gpus: int = 1,
    *,
    expandable_segments: bool = False,
) -> Estimate:
    """One GPU's share of ``cfg`` run by FSDP2 over ``gpus`` GPUs with ``offload`` (see module docstring),
    under the caching allocator ``expandable_segments`` says (as :func:`vramfit.estimate.estimate`)."""
    from vramfit.config import validate
    from vramfit.estimate import OPTIMIZERS, allocator_bytes, build_parts, estimate, resolve_attn

    cfg = validate(cfg, tuple(OPTIMIZERS))
    check_engine(cfg, offload, gpus)
    if offload == "none" and gpus == 1:
        return estimate(arch, cfg, card, expandable_segments=expandable_segments)
    run_cfg = gathered_config(cfg)
    base = estimate(arch, run_cfg, card, expandable_segments=expandable_segments)
    parts, _trainable, opt = build_parts(arch, run_cfg, card, resolve_attn(arch, run_cfg))
    u = units(arch, cfg, parts.adapters)
    pl = placement(u, parts, gpus, offload)
    phases = engine_phases(parts, u, pl, cfg)
    peak = max(phases, key=lambda p: p.allocated_bytes)
    low, required, reserved = allocator_bytes(
        arch, cfg, peak.allocated_bytes, parts.dequant, expandable_segments
    )
    engine = _engine_terms(arch, cfg, u, pl, card)
    outside = base.non_torch.total + pl.nccl
    verdict = _verdict(card, low + outside, required + outside)
    config = {**cfg.to_json(), "attn": base.config["attn"]}
    return EngineEstimate(
        model=arch.name, config=config, breakdown=peak.breakdown, peak_phase=peak.name, phases=phases,
        peak_allocated_bytes=peak.allocated_bytes,
        peak_reserved_bytes=reserved,
        allocator_required_bytes=required, allocator_required_low_bytes=low, non_torch=base.non_torch,
        trainable_params=base.trainable_params, total_params=base.total_params,
        warnings=base.warnings + tuple(_warnings(pl, gpus, u)), verdict=verdict, assumptions=base.assumptions,
        engine=engine,
    )  # fmt: skip


def _engine_terms(arch: ArchSpec, cfg: TrainConfig, u: Units, pl, card) -> dict:
    """The engine's keys of the estimate: placement in host memory, NCCL, the cost in time."""
    return {
        "engine": "fsdp2",
        "offload": pl.offload,
        "gpus": pl.gpus,
        "host_memory_bytes": {
            "pinned": pl.host_pinned,
            "pageable": pl.host_pageable,
            "total": pl.host_pinned + pl.host_pageable,
        },  # fmt: skip
        "nccl_bytes": pl.nccl,
        "slowdown": step_cost(arch, cfg, u, pl.gpus, pl.offload, getattr(card, "name", None)),
    }


def _verdict(card, low: int, need: int) -> Verdict | None:
    """Whether one GPU's share fits the card, by the one rule of :func:`vramfit.memory.judge_on_card` (it
    records the requirement the verdict's sentence names)."""
    return None if card is None else judge_on_card(low, need, card)


def _warnings(pl, gpus: int, u: Units) -> list[str]:
    w = [
        "FSDP2 placement modelled from torch's _fully_shard source and accelerate's fsdp2_prepare_model; "
        "measured with CPU offload on one GPU (an H200 under a 4 or 8 GiB card's cap, benchmarks/results/offload): "
        "the QLoRA recipe on four models and r=128 all-linear with accumulation on mistral-7b, peak allocated "
        "0.0 % to 2.6 % under; each step after the first holds 33-82 MiB more than the first (not explained); "
        "the base was quantized on the GPU before the cap in all but one run; several GPUs are not yet measured "
        "(scripts/measure_offload.py)"
    ]
    if pl.offload == "cpu" and not u.tied:
        w.append(
            "untied embeddings: while FSDP2 shards the model, one more embedding-sized tensor in its own dtype "
            "is counted on the GPU than the engine's source explains (measured on mistral-7b; cause not found)"
        )
    if pl.offload == "cpu":
        w.append(
            "host memory counts the offloaded tensors only; the process itself (torch, CUDA libraries, the "
            "loaded base before sharding) needs a few GiB of RAM more"
        )
    if gpus > 1:
        w.append(f"NCCL buffers assumed {pl.nccl >> 20} MiB per GPU (not yet measured)")
    return w
