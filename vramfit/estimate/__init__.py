"""The analytic estimator: a training configuration in, the peak GPU memory and its breakdown out.

Pure Python; imports neither torch nor transformers. ``estimate(model, cfg, card)`` is the one entry
point: the planner, reports and CI check call it, and the probe compares its output with measurements.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from vramfit.catalog import ATTNS, DTYPES, OPTIMIZERS, QUANTS, OptimizerSpec
from vramfit.catalog import card as card_rule
from vramfit.catalog.dtypes import trainable_dtype
from vramfit.config import TrainConfig, validate
from vramfit.estimate import allocator, profile
from vramfit.estimate.activations import final_norm_per_token, layer_activations, shared_per_token
from vramfit.estimate.adapters import (
    adapter_autocast_copy_bytes,
    full_tensors,
    lora_tensors,
    resolve_targets,
    tensors_bytes,
)
from vramfit.estimate.alloc import block
from vramfit.estimate.losses import batch_shape, loss_bytes, packed_mask_bytes, slack_logits_bytes
from vramfit.estimate.optimizers import OptimizerBytes, trainer_optimizer_bytes
from vramfit.estimate.phases import Parts, activation_parts, build_phases
from vramfit.estimate.result import COMPONENTS, PHASES, Breakdown, Estimate, NonTorch, Phase, Verdict
from vramfit.estimate.weights import dequantized_weight_bytes, weight_bytes
from vramfit.memory import judge_on_card
from vramfit.models.spec import ArchSpec
from vramfit.trainers import loss_warnings

if TYPE_CHECKING:
    from vramfit.gpus import Card

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

# Used when no card is given, an assumption every such estimate states in its warnings (a card's own
# value comes from vramfit.gpus; measured contexts: reports/cuda_context/, docs/MEMORY.md).
FALLBACK_CUDA_CONTEXT_BYTES = 512 * 1024 * 1024


def resolve_attn(arch: ArchSpec, cfg: TrainConfig) -> str:
    return cfg.attn or arch.default_attn


def check_card(cfg: TrainConfig, attn: str, card: Card | None) -> None:
    """Reject what the card cannot run: the one card rule (:mod:`vramfit.catalog.card`)."""
    if card is not None:
        card_rule.check_card(cfg, attn, card.compute_capability, card.name or "this card")


def _allocator_warning(expandable_segments: bool) -> str:
    if expandable_segments:
        from vramfit.estimate import expandable

        return (
            "allocator_required_bytes assumes expandable segments (expandable_segments:True): the allocated "
            f"peak plus {expandable.load_fit().text()}"
        )
    return allocator.slack_warning()


def accuracy_notes(expandable_segments: bool | None = None) -> tuple[str, ...]:
    """The warnings every estimate carries about the estimator itself (its allocator model with its fitted
    figures and held-out error, the installed stack against the measured one): the same for every
    configuration, so the CLI shows them in one short line unless asked (--verbose); the JSON always has
    them. ``expandable_segments`` None: the notes of either allocator."""
    kinds = (False, True) if expandable_segments is None else (expandable_segments,)
    return (*(_allocator_warning(k) for k in kinds), *profile.installed_drift_warnings())


def _warnings(
    arch: ArchSpec,
    cfg: TrainConfig,
    attn: str,
    card: Card | None,
    paged: int,
    expandable_segments: bool = False,
) -> list[str]:
    w = list(accuracy_notes(expandable_segments))
    if arch.inventory is not None:
        from vramfit.estimate.from_model import model_warnings

        w.extend(model_warnings(arch.inventory, cfg))
    w.extend(loss_warnings(cfg.trainer, cfg.loss))
    if card is None:
        w.append(f"no card given: CUDA context assumed {FALLBACK_CUDA_CONTEXT_BYTES >> 20} MiB")
    else:
        w.extend(getattr(card, "assumed", ()) or ())
    if QUANTS[cfg.resolved_quant].estimate_note:
        w.append(QUANTS[cfg.resolved_quant].estimate_note)
    if paged:
        w.append(
            "paged optimizer state is CUDA managed memory: counted as required here, though the driver "
            "can evict it to host memory under pressure (slower steps)"
        )
    if cfg.seq_len > arch.max_position_embeddings:
        w.append(
            f"seq_len {cfg.seq_len} exceeds the model's max_position_embeddings {arch.max_position_embeddings}"
        )
    if ATTNS[attn].estimate_note:
        w.append(ATTNS[attn].estimate_note)
    if arch.attn_logit_softcapping and not ATTNS[attn].softcapping:
        only = ", ".join(a.name for a in ATTNS.values() if a.softcapping)
        w.append(f"{arch.name} uses attention logit soft-capping, which only {only} attention implements")
    return w


def _trainable_parts(arch: ArchSpec, cfg: TrainConfig) -> tuple[int, int, int, OptimizerBytes]:
    """(adapter bytes, trainable params, gradient bytes, optimizer bytes)."""
    targets = cfg.targets if cfg.uses_lora else None
    return _trainable_parts_of(arch, targets, cfg.rank, trainable_dtype(cfg), cfg.optimizer)


@lru_cache(maxsize=2048)
def _trainable_parts_of(
    arch: ArchSpec, targets: tuple[str, ...] | None, rank: int, dtype: str, optimizer: str
) -> tuple[int, int, int, OptimizerBytes]:
    """:func:`_trainable_parts` from what it depends on (``targets`` None: full fine-tuning): independent
    of the batch shape, so cached for the planner."""
    tensors = lora_tensors(arch, targets, rank) if targets is not None else full_tensors(arch)
    t_bytes = DTYPES[dtype].bytes
    trainable = sum(r * c * n for r, c, n in tensors)
    grads = tensors_bytes(tensors, t_bytes)  # one gradient per trainable tensor, in its dtype
    opt = trainer_optimizer_bytes(OPTIMIZERS[optimizer], tensors, t_bytes, full=targets is None)
    adapters = grads if targets is not None else 0  # the adapters are in the trainable dtype
    return adapters, trainable, grads, opt


def build_parts(
    arch: ArchSpec, cfg: TrainConfig, card: Card | None, attn: str
) -> tuple[Parts, int, OptimizerBytes]:
    """The ingredients of every phase, the trainable parameters and the optimizer's bytes."""
    adapters, trainable, grads, opt = _trainable_parts(arch, cfg)
    shape = batch_shape(cfg)  # the activations' (batch, seq): one row of all tokens when padding-free
    layer = layer_activations(arch, shape, attn)
    saved, recompute, fwd_t, bwd_t = activation_parts(arch, shape, layer, shared_per_token(arch, shape), attn)
    saved += packed_mask_bytes(cfg, attn)
    copies = adapter_autocast_copy_bytes(arch, cfg)
    tied = not cfg.uses_lora and arch.tie_word_embeddings
    parts = Parts(
        w=weight_bytes(arch, cfg),
        adapters=adapters,
        grads=grads,
        grads_per_layer=grads // arch.num_layers if cfg.uses_lora else 0,
        opt_state=opt.torch_state,
        opt_temp=opt.step_temp,
        saved=saved,
        recompute=recompute,
        layer_fwd_transient=fwd_t,
        layer_bwd_transient=bwd_t,
        logits=loss_bytes(arch, shape, cfg.batch_size * cfg.seq_len),
        dequant=dequantized_weight_bytes(arch, cfg),
        workspace=allocator.cublas_workspace_bytes(card.compute_capability if card is not None else None),
        tied_grad_accumulation=(
            2 * block(arch.vocab_size * arch.hidden_size * DTYPES[cfg.load_dtype].bytes) if tied else 0
        ),
        adapter_copies=copies,
        adapter_copies_backward=copies // arch.num_layers if cfg.gradient_checkpointing else copies,
        layer_matmul_transient=layer.matmul_backward_per_token * shape.batch_size * shape.seq_len,
        final_norm=final_norm_per_token(arch) * shape.batch_size * shape.seq_len,
    )
    return parts, trainable, opt


def _checked_inputs(
    model: ArchSpec | str, cfg: TrainConfig | None, card: Card | None
) -> tuple[ArchSpec, TrainConfig, str]:
    """The model resolved, the configuration validated and held against the card, and its attention."""
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
    return arch, cfg, attn


def allocator_bytes(
    arch: ArchSpec, cfg: TrainConfig, peak_alloc: int, dequant: int, expandable_segments: bool
) -> tuple[int, int, int]:
    """(low, high) of what the allocator needs for an allocated peak of ``peak_alloc``, and what it
    reserves uncapped."""
    fp32_logits = slack_logits_bytes(arch, cfg)
    if expandable_segments:
        from vramfit.estimate import expandable

        high = expandable.required_bytes(peak_alloc, expandable.gap_sources(arch, cfg))
        low = peak_alloc  # below the allocated peak nothing runs
    else:
        high = allocator.allocator_required_bytes(peak_alloc, fp32_logits, dequant)
        low = allocator.allocator_required_low_bytes(peak_alloc, fp32_logits, dequant)
    return low, high, allocator.peak_reserved_bytes(peak_alloc, high, fp32_logits, dequant)


def estimate(
    model: ArchSpec | str,
    cfg: TrainConfig | None = None,
    card: Card | None = None,
    *,
    expandable_segments: bool = False,
) -> Estimate:
    """Estimate the peak memory of training ``model`` with ``cfg`` (and the verdict on ``card``).

    ``card`` is a :class:`vramfit.gpus.Card` (``resolve_card(gpu=..., vram=...)``) or None.
    ``expandable_segments``: the run uses ``expandable_segments:True`` (:mod:`.expandable`); otherwise
    PyTorch's default caching allocator, whose requirement is a fitted range.
    Raises :class:`~vramfit.errors.InputError` for configurations that cannot run.
    """
    arch, cfg, attn = _checked_inputs(model, cfg, card)
    parts, trainable, opt = build_parts(arch, cfg, card, attn)
    phases = build_phases(parts, cfg.grad_accum)
    peak = max(phases, key=lambda p: p.allocated_bytes)
    low, high, reserved = allocator_bytes(arch, cfg, peak.allocated_bytes, parts.dequant, expandable_segments)
    context = card.cuda_context_bytes if card is not None else FALLBACK_CUDA_CONTEXT_BYTES
    non_torch = NonTorch(cuda_context=context, paged_optimizer=opt.paged_state)
    outside = non_torch.total  # the card must hold the allocator's requirement and this
    verdict = judge_on_card(low + outside, high + outside, card) if card is not None else None
    return Estimate(
        model=arch.name,
        config={**cfg.to_json(), "attn": attn},
        breakdown=peak.breakdown,
        peak_phase=peak.name,
        phases=phases,
        peak_allocated_bytes=peak.allocated_bytes,
        peak_reserved_bytes=reserved,
        allocator_required_bytes=high,
        allocator_required_low_bytes=low,
        non_torch=non_torch,
        trainable_params=trainable,
        total_params=arch.total_params,
        warnings=tuple(_warnings(arch, cfg, attn, card, opt.paged_state, expandable_segments)),
        verdict=verdict,
        assumptions={
            **allocator.ASSUMPTIONS,
            "cuda_context_bytes": context,
            "expandable_segments": expandable_segments,
        },  # fmt: skip
    )
