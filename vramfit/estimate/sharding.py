"""Per-GPU memory when an engine shards the run over several GPUs or offloads it to the CPU (FSDP2).

What FSDP2 keeps where, read from torch 2.11-2.13 ``torch/distributed/fsdp/_fully_shard/`` and accelerate
1.15 ``utils/fsdp_utils.py`` (``fsdp2_prepare_model``), as accelerate applies it:

* **Units** (``fsdp2_prepare_model``): ``fully_shard`` on every decoder layer (TRANSFORMER_BASED_WRAP), on
  the input embedding (untied), on the tail ``[final norm, lm_head]`` (with the embedding when tied) with
  ``reshard_after_forward=False``, and on the root.
* **Sharded parameters** (``FSDPParam._init_sharded_param``): each parameter is chunked on dim 0 into
  ``world_size`` pieces padded to the first one; a rank keeps its piece in the parameter's own dtype. With
  ``CPUOffloadPolicy`` the piece is copied to the CPU and pinned (``padded_sharded_param.cpu().pin_memory()``).
* **Unsharded units**: before a unit runs, its pieces are all-gathered into full tensors in the
  ``MixedPrecisionPolicy.param_dtype`` (accelerate sets param_dtype = reduce_dtype = the compute dtype,
  ``set_mixed_precision``); so fp32 norms, embeddings and LoRA weights run in bf16 and autocast makes no
  copies of them. With one process ``wait_for_unshard`` copies each piece into its full tensor directly
  (``world_size == 1``), so one unit is alive at a time. With several, forward keeps the previous
  all-gather output until the next copy-out (``comm_ctx.all_gather_state``, "[Note: Overlapping all-gather
  copy-in and all-gather]") and backward prefetches the next unit (``_backward_prefetch``): two units' worth.
* **Gradients** (``foreach_reduce``): a unit's unsharded gradients (reduce dtype) are copied into a
  reduce-scatter input of the same size, reduced to the rank's piece and cast back to the parameter dtype;
  with offload the piece goes to the CPU (``.to(cpu, non_blocking=True)``: pinned) and the optimizer steps
  there (CPUOffloadPolicy docstring: "the optimizer step runs on CPU with CPU optimizer states").
* **bitsandbytes 4-bit**: accelerate shards a ``Params4bit`` only when it is stored in a floating dtype
  (``bnb_4bit_quant_storage``; uint8 ones are left unsharded on every GPU, ``incompatible_params4bit``);
  the ``QuantState`` (absmax, codes) hangs off the module, not a parameter: every GPU keeps all of it.
* **NCCL** (several GPUs): buffers outside PyTorch's allocator, per channel and peer: the Simple
  protocol's ``NCCL_BUFFSIZE`` (4 MiB default), LL128 and LL (NCCL docs, "Environment Variables").

Pure Python. The terms are applied to the single-GPU phases of :mod:`vramfit.estimate.phases`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramfit.catalog import DTYPES
from vramfit.config import TrainConfig
from vramfit.estimate.alloc import block
from vramfit.estimate.phases import Parts, training_phases
from vramfit.estimate.result import Breakdown, Phase
from vramfit.estimate.weights import four_bit_weight_bytes
from vramfit.models.spec import ArchSpec
from vramfit.units import MiB

Offload = Literal["none", "cpu"]
Engine = Literal["single", "fsdp2", "deepspeed-zero3"]

# NCCL (docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html): NCCL_BUFFSIZE 4 MiB (Simple protocol);
# LL128 ~4.6 MiB and LL 256 KiB per connection (src/include/comm.h DEFAULT_LL_BUFFSIZE /
# DEFAULT_LL128_BUFFSIZE); send and receive per peer; NCCL_MIN_NCHANNELS for PCIe peers is commonly 2.
# NOTE: an assumption until measured on two GPUs (issue of the multi-GPU measurements).
NCCL_BUFFERS_PER_CONNECTION = 4 * MiB + 4_718_592 + 256 * 1024
NCCL_CHANNELS = 2


@dataclass(frozen=True)
class Units:
    """What FSDP2 shards, in bytes (see module docstring)."""

    layer_unsharded: int  # one decoder layer all-gathered (compute dtype), LoRA included
    embed_unsharded: int  # the input embedding unit (0 when tied: it is in the tail)
    tail_unsharded: int  # final norm + lm_head (+ the tied embedding)
    sharded_total: int  # every parameter in its own dtype, before sharding (world size 1)
    largest_layer_param: int  # a layer's biggest parameter in its own dtype (a host piece in flight)
    embed_own: int  # the embedding in its own dtype (the first unit fetched, the last one backward)
    head_own: int  # lm_head in its own dtype (0 when tied: it is the embedding)
    tied: bool  # the embedding is in the tail unit (alive through all of forward)


def _unq(arch: ArchSpec, cfg: TrainConfig) -> int:
    from vramfit.catalog.dtypes import unquantized_dtype

    return DTYPES[unquantized_dtype(cfg)].bytes


def units(arch: ArchSpec, cfg: TrainConfig, adapters: int) -> Units:
    """The units of ``arch`` under ``cfg`` (``adapters``: LoRA bytes of the whole model, own dtype)."""
    c, own = DTYPES[cfg.compute_dtype].bytes, _unq(arch, cfg)
    L, h = arch.num_layers, arch.hidden_size
    lin = arch.layer_linears
    if cfg.is_4bit:  # packed codes stored as the compute dtype: numel / 2 bytes either way
        lin_bytes = sum(four_bit_weight_bytes(m.weight_numel) for m in lin)
        lin_own = lin_bytes
    else:
        lin_bytes = sum(block(m.weight_numel * c) for m in lin)
        lin_own = sum(block(m.weight_numel * own) for m in lin)
    small = arch.norms_per_layer * h + (2 * arch.head_dim if arch.qk_norm else 0)
    small += sum(m.out_features for m in lin if m.bias)
    a_dtype = 4 if cfg.uses_lora else c
    lora_layer = adapters // L if L else 0
    layer = lin_bytes + block(small * c) + lora_layer * c // a_dtype
    layer_own = lin_own + block(small * own) + lora_layer
    embed = block(arch.embedding_params * c)
    head = block((arch.lm_head_params or 0) * c) + block(h * c)
    tied = arch.tie_word_embeddings or not arch.lm_head_params
    biggest = max(m.weight_numel for m in lin)
    total_own = L * layer_own + block(arch.embedding_params * own) + block((arch.lm_head_params or 0) * own)
    return Units(
        layer_unsharded=layer,
        embed_unsharded=0 if tied else embed,
        tail_unsharded=head + (embed if tied else 0),
        sharded_total=total_own + block(h * own),
        largest_layer_param=four_bit_weight_bytes(biggest) if cfg.is_4bit else block(biggest * own),
        embed_own=block(arch.embedding_params * own),
        head_own=0 if tied else block((arch.lm_head_params or 0) * own),
        tied=tied,
    )


@dataclass(frozen=True)
class Placement:
    """Where the engine keeps each part, per GPU (bytes); host memory per process."""

    gpus: int
    offload: Offload
    resident_params: int  # sharded parameters kept on the GPU (0 when offloaded)
    resident_grads: int
    resident_optimizer: int
    host_pinned: int  # sharded parameters and gradients in pinned host memory
    host_pageable: int  # optimizer state on the CPU
    nccl: int  # non-torch NCCL buffers


def placement(u: Units, p: Parts, gpus: int, offload: Offload) -> Placement:
    shard = lambda n: -(-n // gpus)  # noqa: E731  (padded chunks: the first is the largest)
    off = offload == "cpu"
    params, grads, opt = shard(u.sharded_total), shard(p.grads), shard(p.opt_state)
    return Placement(
        gpus=gpus,
        offload=offload,
        resident_params=0 if off else params,
        resident_grads=0 if off else grads,
        resident_optimizer=0 if off else opt,
        host_pinned=params + grads if off else 0,
        host_pageable=opt if off else 0,
        nccl=NCCL_CHANNELS * 2 * (gpus - 1) * NCCL_BUFFERS_PER_CONNECTION if gpus > 1 else 0,
    )


def _forward_backward(p: Parts, u: Units, pl: Placement, cfg: TrainConfig) -> tuple[Breakdown, Breakdown]:
    """The largest moment of forward and of backward beyond what stays resident (module docstring)."""
    lg, W = p.logits, pl.gpus
    live = 1 if W == 1 else 2  # unsharded units alive at once (module docstring)
    off = pl.offload == "cpu"
    # with offload each host piece is copied to the GPU in its own dtype, cast to the compute dtype and
    # copied into its unsharded tensor (FSDPParam.all_gather_inputs, wait_for_unshard): while the unit
    # unshards, its largest parameter is there twice (own-dtype piece + compute-dtype tensor)
    fetch_layer = u.largest_layer_param if off else 0
    fetch_embed = u.embed_own if off else 0
    fetch_head = u.head_own if off else 0  # the untied lm_head, fetched when the loss starts
    tail_fwd = u.tail_unsharded if u.tied else 0  # the tied embedding is unsharded from forward's start
    unit_grads = (
        p.grads_per_layer * DTYPES[cfg.compute_dtype].bytes // 4 if cfg.uses_lora else p.grads_per_layer
    )
    if W > 1:
        unit_grads *= 2  # the reduce-scatter input beside the unsharded gradients
    g_prev = accumulated_grads(p, pl, cfg)
    ws = p.workspace
    unshard = Breakdown(weights=live * u.layer_unsharded + tail_fwd, gradients=g_prev, activations=p.saved,
                        temporaries=fetch_layer + ws)  # fmt: skip
    fwd_layer = Breakdown(weights=live * u.layer_unsharded + tail_fwd, gradients=g_prev,
                          activations=p.saved + p.layer_fwd_transient, temporaries=p.dequant + ws)  # fmt: skip
    fwd_loss = Breakdown(weights=u.tail_unsharded, gradients=g_prev, activations=p.saved,
                         logits=lg.forward_peak, temporaries=ws)  # fmt: skip
    unshard_tail = Breakdown(weights=u.tail_unsharded, gradients=g_prev, activations=p.saved,
                             temporaries=fetch_head + ws)  # fmt: skip
    bwd_loss = Breakdown(weights=u.tail_unsharded, gradients=g_prev, activations=p.saved,
                         logits=lg.backward_peak, temporaries=ws)  # fmt: skip
    bwd_layer = Breakdown(weights=live * u.layer_unsharded, gradients=g_prev + unit_grads,
                          activations=p.saved + p.recompute + p.layer_bwd_transient, temporaries=p.dequant + ws)  # fmt: skip
    bwd_end = Breakdown(weights=u.embed_unsharded, gradients=pl.resident_grads, temporaries=fetch_embed + ws)
    # the first unit: the embedding's host piece on the GPU in its own dtype beside its compute-dtype copy
    # (all_gather_inputs: ``.to(device)`` then ``_to_dtype_if_needed``); tied, that unit is the whole tail
    fwd_start = Breakdown(
        weights=u.embed_unsharded + tail_fwd, gradients=g_prev, temporaries=fetch_embed + ws
    )
    return (
        max(unshard, fwd_layer, unshard_tail, fwd_loss, fwd_start, key=_total),
        max(unshard, bwd_layer, bwd_loss, bwd_end, key=_total),
    )


def accumulated_grads(p: Parts, pl: Placement, cfg: TrainConfig) -> int:
    """What the earlier micro-batches of an accumulated step leave on the GPU. ``accelerator.accumulate``
    runs every micro-batch but the last under ``no_sync``, which for FSDP2 is
    ``set_requires_gradient_sync(False)`` (accelerate ``Accelerator.no_sync``, whatever the process count):
    FSDP2 then skips the reduce-scatter and keeps each unit's *unsharded* gradients, in the parameters'
    compute dtype, on the GPU until the last micro-batch reduces them (``FSDPParamGroup.post_backward``);
    with offload nothing reaches the host before that."""
    if cfg.grad_accum <= 1:
        return 0
    unsharded = p.grads * DTYPES[cfg.compute_dtype].bytes // 4 if cfg.uses_lora else p.grads
    return max(pl.resident_grads, unsharded)


def _prepare_temporaries(u: Units, pl: Placement) -> Breakdown:
    """What ``prepare`` holds beyond the resident pieces while fully_shard places the units."""
    # fully_shard moves one unit at a time to the GPU (_move_states_to_device) and makes its padded piece
    # there (_init_sharded_param), which offload then copies to the host
    # (the unit in its own dtype + its padded piece: 1 + 1/W of it)
    biggest_unit = max(u.layer_unsharded, u.tail_unsharded, u.embed_own)
    # NOTE: measured (H200, mistral-7b, benchmarks/results/offload): an untied model's prepare held one
    # more own-dtype embedding-sized tensor than the source reading above explains: counted, and warned
    held = u.head_own if pl.offload == "cpu" else 0
    return Breakdown(temporaries=biggest_unit + -(-biggest_unit // pl.gpus) + held)


def engine_phases(p: Parts, u: Units, pl: Placement, cfg: TrainConfig) -> tuple[Phase, ...]:
    """The phases of :func:`vramfit.estimate.phases.build_phases` with FSDP2's placement (module docstring)."""
    base = Breakdown(weights=pl.resident_params, quant_state=p.w.quant_state)
    fwd, bwd = _forward_backward(p, u, pl, cfg)
    opt = Breakdown(optimizer=pl.resident_optimizer)
    step_temp = 0 if pl.offload == "cpu" else -(-p.opt_temp // pl.gpus)
    step = base + Breakdown(
        gradients=pl.resident_grads, optimizer=pl.resident_optimizer, temporaries=step_temp + p.workspace
    )
    load = Breakdown()  # the engine's processes load the base on the CPU
    return training_phases(load, base + _prepare_temporaries(u, pl), base + fwd, base + bwd, step, opt)


def _total(b: Breakdown) -> int:
    return b.total


def gathered_config(cfg: TrainConfig) -> TrainConfig:
    """The configuration whose activations FSDP2 computes: with every parameter all-gathered in the
    compute dtype, the fp32 upcast of ``prepare_model_for_kbit_training`` no longer reaches the
    activations (the residual stream and lm_head run in the compute dtype)."""
    return cfg.with_(kbit_upcast=False) if cfg.is_kbit else cfg
