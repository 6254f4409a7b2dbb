"""The honest no: when nothing fits, what the smallest configuration needs, why, and what would fit.

Never a pick that does not fit. Instead, with numbers from the estimate's breakdown:

* the smallest configuration of the space (the user's constraints held) and what it needs;
* why: the frozen weights and the CUDA context alone, or what training adds on top;
* the largest registry models whose smallest configuration fits the card with the same constraints;
* the card size that would fit the request, and the smallest cards of the GPU database with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramfit.catalog import card as card_rule
from vramfit.catalog.dtypes import unquantized_dtype
from vramfit.errors import InputError
from vramfit.plan.result import Candidate, ModelFit, NoFit
from vramfit.plan.search import Evaluator
from vramfit.plan.space import Margin, Space, build_space, target_ladder
from vramfit.units import MiB
from vramfit.units import format_bytes as fb

if TYPE_CHECKING:
    from vramfit.config import TrainConfig
    from vramfit.gpus import Card
    from vramfit.models.spec import ArchSpec


def _params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.0f} M"


def _weights_words(space: Space, cfg: TrainConfig) -> str:
    """What the frozen weights are: '1.10 B params of the decoder layers in nf4 ... + ... in bf16'."""
    arch = space.arch
    if not cfg.is_kbit:
        return f"{_params(arch.total_params)} params in {cfg.load_dtype}"
    kept = unquantized_dtype(cfg)  # prepare_model_for_kbit_training upcasts
    return (
        f"{_params(arch.quantizable_params)} params of the decoder layers in {cfg.resolved_quant}"
        f"{' with double quantization' if cfg.is_4bit and cfg.double_quant else ''} + "
        f"{_params(arch.unquantized_params)} params (embeddings, lm_head, norms) in {kept}"
    )


def _training_words(smallest: Candidate) -> str:
    """What training adds at the peak, by component, and what the allocator needs above it."""
    cfg, est = smallest.config, smallest.estimate
    b = est.breakdown
    parts = ", ".join(f"{c} {fb(getattr(b, c))}" for c in ("adapters", "gradients", "optimizer", "activations",
                                                           "logits", "temporaries") if getattr(b, c))  # fmt: skip
    paged = est.non_torch.paged_optimizer
    return (
        f"training at {cfg.seq_len} tokens x micro-batch {cfg.batch_size} adds "
        f"{fb(b.total - b.weights - b.quant_state)} at the peak ({est.peak_phase}: {parts})"
        + (f", {fb(paged)} of paged optimizer state" if paged else "")
        + f"; the allocator needs {fb(est.allocator_required_bytes - est.peak_allocated_bytes)} above the peak"
    )


def _shortfall_words(smallest: Candidate, usable: int) -> list[str]:
    """By how much the smallest configuration misses, with the margin, and whether it may still run."""
    total = smallest.required_bytes + smallest.margin_bytes
    short = total - usable
    if smallest.required_bytes <= usable:
        out = [
            f"the estimate ({fb(smallest.required_bytes)}) fits, but not with the safety margin "
            f"({fb(smallest.margin_bytes)}): short by {fb(short)} (a smaller --margin is a risk you take)"
        ]
    else:
        out = [
            f"needs {fb(smallest.required_bytes)} + margin {fb(smallest.margin_bytes)} = {fb(total)}; "
            f"the card has {fb(usable)} usable: short by {fb(short)}"
        ]
    low = smallest.estimate.required_vram_low_bytes
    if low < smallest.required_bytes and low <= usable:
        out.append(
            f"it may still run: if the caching allocator places the logits well it needs only {fb(low)} "
            "(the low end of the requirement's range); `vramfit probe --emulate-vram` on a bigger GPU tells"
        )
    return out


def reasons(space: Space, smallest: Candidate, usable: int) -> list[str]:
    """Why the smallest configuration does not fit, each line with its numbers."""
    b = smallest.estimate.breakdown
    ctx = smallest.estimate.non_torch.cuda_context
    frozen = b.weights + b.quant_state
    static = (
        f"model weights {fb(b.weights)} ({_weights_words(space, smallest.config)}) + quantization state "
        f"{fb(b.quant_state)} + CUDA context {fb(ctx)}"
    )
    if frozen + ctx > usable:
        out = [f"{static} = {fb(frozen + ctx)} alone exceed the {fb(usable)} the card has usable"]
    else:
        out = [
            f"{static} = {fb(frozen + ctx)} fit in the usable {fb(usable)}, leaving {fb(usable - frozen - ctx)}",
            _training_words(smallest),
        ]
    return out + _shortfall_words(smallest, usable)


def _smallest_for(space: Space, smallest: Candidate, arch: ArchSpec, card: Card, fixed: dict) -> TrainConfig:
    """The smallest configuration's shape on another model (its own first target set unless fixed)."""
    other = build_space(arch, card, fixed, min_seq=space.min_seq, effective_batch=space.effective_batch)
    cfg = smallest.config
    targets = cfg.targets if "targets" in space.fixed else target_ladder(arch)[0]
    return other.config(
        (cfg.method, cfg.resolved_quant, cfg.double_quant, targets, cfg.rank, cfg.gradient_checkpointing,
         cfg.optimizer, cfg.attn),
        other.seqs[0], other.batches[0],
    )  # fmt: skip


def models_that_fit(
    space: Space, smallest: Candidate, card: Card, margin: Margin, fixed: dict, n: int = 3
) -> list[ModelFit]:
    """The largest registry models (by parameters) whose smallest configuration fits, largest first.

    Only what the shipped data estimates: a model whose layer would need a fresh trace is left out, with
    torch installed or not (:func:`vramfit.estimate.traced.shipped_only`)."""
    from vramfit.estimate.traced import shipped_only
    from vramfit.models import list_models

    fits = []
    for arch in sorted(list_models(), key=lambda a: -a.total_params):
        if arch.name == space.arch.name or arch.total_params >= space.arch.total_params:
            continue
        try:
            with shipped_only():
                cfg = _smallest_for(space, smallest, arch, card, fixed)
                e = Evaluator(arch, card, margin)(cfg)
        except InputError:  # a fixed flag this model cannot take (a target module it lacks), or not shipped
            continue
        if e.fits:
            fits.append(ModelFit(arch.name, arch.total_params, e.required_bytes, e.headroom_bytes))
            if len(fits) == n:
                break
    return fits


def card_needed(smallest: Candidate, card: Card) -> int:
    """The capacity (whole MiB) on which the smallest configuration fits with the margin: the same card
    with more memory, its driver reservation assumed for that size as ``resolve_card(gpu, vram)`` does."""
    from vramfit.gpus import assumed_driver_reserve_bytes

    need = smallest.required_bytes + smallest.margin_bytes + card.display_reserve_bytes

    def short(cap_mib: int) -> bool:
        cap = cap_mib * MiB
        return cap - assumed_driver_reserve_bytes(cap) < need

    # cap - reserve(cap) grows with cap (the reservation is a fraction below 1 of it): bisect on whole MiB
    lo = -(-need // MiB)  # no card smaller than the need fits
    hi = 2 * lo + assumed_driver_reserve_bytes(0) // MiB + 1
    while short(hi):  # a few doublings at most
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if short(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo * MiB


def cards_that_fit(smallest: Candidate, n: int = 3) -> list[str]:
    """The smallest cards of the GPU database with room for the smallest configuration (with their own
    CUDA context, driver and display reservations) that can run its quantization and its dtypes."""
    from vramfit.gpus import list_gpus

    cfg = smallest.config
    need = smallest.required_bytes + smallest.margin_bytes - smallest.estimate.non_torch.cuda_context
    ok = []
    for g in list_gpus():
        if card_rule.quant_problem(cfg.resolved_quant, g.compute_capability) is not None:
            continue
        if "bf16" in (cfg.compute_dtype, cfg.load_dtype) and not g.supports_bf16:
            continue  # the configuration computes in bf16: this card would need fp16 (another plan)
        if g.usable_bytes - g.cuda_context_bytes >= need:
            ok.append(g.name)
            if len(ok) == n:
                break
    return ok


def loss_levers(space: Space, smallest: Candidate, card: Card, margin: Margin, fixed: dict) -> list[str]:
    """The smallest configuration with each fused loss of vramfit.trainers (when the user fixed none): on
    big vocabularies the logits are what does not fit, and a fused loss removes them."""
    from vramfit.estimate import estimate
    from vramfit.plan.knobs import loss_changes
    from vramfit.trainers import LOSSES

    if {"trainer", "loss"} & set(fixed) or not LOSSES[smallest.config.resolved_loss].materializes_logits:
        return []
    expandable = bool(smallest.estimate.assumptions.get("expandable_segments", False))
    out = []
    for _knob, change, changes in loss_changes(smallest.config):
        if LOSSES[changes["loss"]].materializes_logits:
            continue
        try:
            e = estimate(space.arch, smallest.config.with_(**changes), card, expandable_segments=expandable)
        except InputError:
            continue
        need = e.required_vram_bytes + margin.bytes_for(e.required_vram_bytes)
        verdict = "fits" if need <= card.usable_bytes else "still short"
        out.append(
            f"with a fused loss ({change}: {LOSSES[changes['loss']].what}) it needs {fb(need)} with the margin: "
            f"{verdict} (--trainer {changes['trainer']} --loss {changes['loss']})"
        )
    return out


def explain(space: Space, smallest: Candidate, card: Card, margin: Margin, fixed: dict) -> NoFit:
    return NoFit(
        smallest=smallest,
        reasons=tuple(
            reasons(space, smallest, card.usable_bytes) + loss_levers(space, smallest, card, margin, fixed)
        ),
        models_that_fit=tuple(models_that_fit(space, smallest, card, margin, fixed)),
        card_needed_bytes=card_needed(smallest, card),
        cards_that_fit=tuple(cards_that_fit(smallest)),
    )


__all__ = ["explain", "reasons", "models_that_fit", "card_needed", "cards_that_fit"]
