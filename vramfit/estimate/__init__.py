"""The analytic estimator: a training configuration in, the peak GPU memory and its breakdown out.

Pure Python; imports neither torch nor transformers. ``estimate(model, cfg, card)`` is the one entry
point: the planner, reports and CI check call it, and the probe compares its output with measurements.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from vramfit.config import DTYPE_BYTES, TrainConfig, validate
from vramfit.errors import InputError
from vramfit.estimate import allocator, profile
from vramfit.estimate.activations import layer_activations, shared_per_token
from vramfit.estimate.adapters import (
    adapter_autocast_copy_bytes,
    adapter_bytes,
    resolve_targets,
    trainable_dtype,
    trainable_tensors,
)
from vramfit.estimate.alloc import block
from vramfit.estimate.logits import logits_bytes
from vramfit.estimate.optimizers import OPTIMIZERS, OptimizerBytes, OptimizerSpec, optimizer_bytes
from vramfit.estimate.phases import Parts, activation_parts, build_phases
from vramfit.estimate.result import COMPONENTS, PHASES, Breakdown, Estimate, NonTorch, Phase, Verdict
from vramfit.estimate.weights import dequantized_weight_bytes, weight_bytes
from vramfit.models.spec import ArchSpec

__all__ = [
    "estimate",
    "OPTIMIZERS",
    "OptimizerSpec",
    "Estimate",
    "Breakdown",
    "Phase",
    "Verdict",
    "NonTorch",
    "COMPONENTS",
    "PHASES",
    "resolve_attn",
    "check_card",
]

# Used when no card is given: the middle of the 0.3-0.7 GiB range of DESIGN.md (a card's own value
# comes from vramfit.gpus).
FALLBACK_CUDA_CONTEXT_BYTES = 512 * 1024 * 1024


def resolve_attn(arch: ArchSpec, cfg: TrainConfig) -> str:
    return cfg.attn or arch.default_attn


def check_card(cfg: TrainConfig, attn: str, card) -> None:
    """Reject what the card cannot run (compute capability rules of bitsandbytes and CUDA)."""
    if card is None:
        return
    name = card.name or "this card"
    cc = card.compute_capability
    ccs = f" (compute capability {cc[0]}.{cc[1]})" if cc else ""
    if cfg.compute_dtype == "bf16" and not card.supports_bf16:
        raise InputError(
            "--compute-dtype",
            f"bf16 needs compute capability 8.0+ (Ampere); {name}{ccs} has none: use --compute-dtype fp16",
        )
    if cfg.is_4bit and not card.supports_4bit:
        raise InputError(
            "--quant", f"bitsandbytes nf4/fp4 needs compute capability 6.0+ (Pascal); {name}{ccs} is older"
        )
    if cfg.resolved_quant == "int8" and not card.supports_int8:
        raise InputError(
            "--quant",
            f"LLM.int8 needs compute capability 7.5+ (Turing); {name}{ccs} is older: use --method qlora",
        )
    if attn == "flash_attention_2" and cc is not None and cc < (8, 0):
        raise InputError("--attn", f"flash_attention_2 needs compute capability 8.0+; {name}{ccs}: use sdpa")


def accuracy_notes() -> tuple[str, ...]:
    """The warnings every estimate carries about the estimator itself (its fitted allocator allowance and
    held-out error, the installed stack against the measured one): the same for every configuration, so
    the CLI shows them in one short line unless asked (--verbose); the JSON always has them."""
    return (
        "allocator_required_bytes adds a fitted allowance for the caching allocator's slack "
        f"({allocator.REQUIRED_SLACK.text()}; fitted on H100 and H200 runs); {allocator.HELD_OUT_TEXT}. "
        "Where the allocator places the logits moves the requirement by up to a logits-sized block, so it is "
        f"given as a range from allocator_required_low_bytes ({allocator.LOW_SLACK.text()}): "
        f"{allocator.LOW_HELD_OUT_TEXT}",
        *profile.installed_drift_warnings(),
    )


def _warnings(arch: ArchSpec, cfg: TrainConfig, attn: str, card, paged: int) -> list[str]:
    w = list(accuracy_notes())
    if card is None:
        w.append(f"no card given: CUDA context assumed {FALLBACK_CUDA_CONTEXT_BYTES >> 20} MiB")
    else:
        w.extend(getattr(card, "assumed", ()) or ())
    if cfg.resolved_quant == "int8":
        w.append("int8 (LLM.int8) activations and outlier handling are approximated like 4-bit layers")
    if paged:
        w.append(
            "paged optimizer state is CUDA managed memory: counted as required here, though the driver "
            "can evict it to host memory under pressure (slower steps)"
        )
    if cfg.seq_len > arch.max_position_embeddings:
        w.append(
            f"seq_len {cfg.seq_len} exceeds the model's max_position_embeddings {arch.max_position_embeddings}"
        )
    if attn == "flash_attention_2":
        w.append("flash_attention_2 needs the flash-attn package; modelled like SDPA's flash kernel")
    if arch.attn_logit_softcapping and attn != "eager":
        w.append(f"{arch.name} uses attention logit soft-capping, which only eager attention implements")
    return w


@lru_cache(maxsize=2048)
def _trainable_parts(arch: ArchSpec, method: str, targets: tuple, rank: int, load_dtype: str, optimizer: str):
    """(adapter bytes, trainable params, gradient bytes, optimizer bytes): independent of the batch shape,
    so cached for the planner."""
    cfg = TrainConfig(method=method, targets=targets, rank=rank, load_dtype=load_dtype, optimizer=optimizer)
    t_bytes = DTYPE_BYTES[trainable_dtype(cfg)]
    t_tensors = trainable_tensors(arch, cfg)
    trainable = sum(r * c * n for r, c, n in t_tensors)
    grads = sum(block(r * c * t_bytes) * n for r, c, n in t_tensors)
    spec = OPTIMIZERS[optimizer]
    if method == "full" and spec.bits == 8:
        # transformers' Trainer (create_optimizer) registers every nn.Embedding weight with bitsandbytes'
        # GlobalOptimManager as {"optim_bits": 32}: the (tied) embedding keeps fp32 Adam state.
        embedding, rest = t_tensors[0], t_tensors[1:]
        emb_only = [(embedding[0], embedding[1], 1)]
        rest = rest + ([(embedding[0], embedding[1], embedding[2] - 1)] if embedding[2] > 1 else [])
        a = optimizer_bytes(replace(spec, bits=32), emb_only, t_bytes)
        b = optimizer_bytes(spec, rest, t_bytes)
        opt = OptimizerBytes(
            a.torch_state + b.torch_state, a.paged_state + b.paged_state, max(a.step_temp, b.step_temp)
        )
    else:
        opt = optimizer_bytes(spec, t_tensors, t_bytes)
    return adapter_bytes(arch, cfg), trainable, grads, opt


def estimate(model: ArchSpec | str, cfg: TrainConfig | None = None, card=None) -> Estimate:
    """Estimate the peak memory of training ``model`` with ``cfg`` (and the verdict on ``card``).

    ``card`` is a :class:`vramfit.gpus.Card` (``resolve_card(gpu=..., vram=...)``) or None.
    Raises :class:`~vramfit.errors.InputError` for configurations that cannot run.
    """
    if isinstance(model, str):
        from vramfit.models import resolve_model

        arch = resolve_model(model)
    else:
        arch = model
    cfg = validate(cfg or TrainConfig(), tuple(OPTIMIZERS))
    attn = resolve_attn(arch, cfg)
    check_card(cfg, attn, card)
    if cfg.uses_lora:
        resolve_targets(arch, cfg.targets)  # unknown module names fail here, naming --targets

    w = weight_bytes(arch, cfg)
    adapters, trainable, grads, opt = _trainable_parts(
        arch, cfg.method, cfg.targets, cfg.rank, cfg.load_dtype, cfg.optimizer
    )

    layer = layer_activations(arch, cfg, attn)
    saved, recompute, fwd_t, bwd_t = activation_parts(arch, cfg, layer, shared_per_token(arch, cfg), attn)
    cc = getattr(card, "compute_capability", None) if card is not None else None
    dequant = dequantized_weight_bytes(arch, cfg)

    copies = adapter_autocast_copy_bytes(arch, cfg)
    parts = Parts(
        w=w,
        adapters=adapters,
        grads=grads,
        grads_per_layer=grads // arch.num_layers if cfg.uses_lora else 0,
        opt_state=opt.torch_state,
        opt_temp=opt.step_temp,
        saved=saved,
        recompute=recompute,
        layer_fwd_transient=fwd_t,
        layer_bwd_transient=bwd_t,
        logits=logits_bytes(arch, cfg, cfg.batch_size * cfg.seq_len),
        dequant=dequant,
        workspace=allocator.cublas_workspace_bytes(cc),
        tied_grad_accumulation=(
            2 * block(arch.vocab_size * arch.hidden_size * DTYPE_BYTES[cfg.load_dtype])
            if cfg.method == "full" and arch.tie_word_embeddings
            else 0
        ),
        adapter_copies=copies,
        adapter_copies_backward=copies // arch.num_layers if cfg.gradient_checkpointing else copies,
    )
    phases = build_phases(parts, cfg.grad_accum)
    peak = max(phases, key=lambda p: p.allocated_bytes)
    peak_alloc = peak.allocated_bytes

    context = card.cuda_context_bytes if card is not None else FALLBACK_CUDA_CONTEXT_BYTES
    non_torch = NonTorch(cuda_context=context, paged_optimizer=opt.paged_state)
    fp32_logits = cfg.batch_size * cfg.seq_len * arch.vocab_size * 4
    required_alloc = allocator.allocator_required_bytes(peak_alloc, fp32_logits, dequant)
    required_low = allocator.allocator_required_low_bytes(peak_alloc, fp32_logits, dequant)
    verdict = None
    if card is not None:
        usable = card.usable_bytes
        headroom = usable - (required_alloc + non_torch.total)
        may_fit = usable >= required_low + non_torch.total
        verdict = Verdict(headroom >= 0, card.capacity_bytes, usable, headroom, card.name, may_fit)

    config = cfg.to_json()
    config["attn"] = attn
    return Estimate(
        model=arch.name,
        config=config,
        breakdown=peak.breakdown,
        peak_phase=peak.name,
        phases=phases,
        peak_allocated_bytes=peak_alloc,
        peak_reserved_bytes=allocator.peak_reserved_bytes(peak_alloc, required_alloc, fp32_logits, dequant),
        allocator_required_bytes=required_alloc,
        allocator_required_low_bytes=required_low,
        non_torch=non_torch,
        trainable_params=trainable,
        total_params=arch.total_params,
        warnings=tuple(_warnings(arch, cfg, attn, card, opt.paged_state)),
        verdict=verdict,
        assumptions={**allocator.ASSUMPTIONS, "cuda_context_bytes": context},
    )
