"""Combine the components into the live memory of each phase of a training run.

The peak is the largest phase, not the sum of each component's maximum: the logits' peak (end of
forward) and the gradients' peak (end of backward) do not coincide.

    load ──> prepare ──> [ forward ──> backward ──> optimizer ]  step 1: no optimizer state yet
                         [ forward ──> backward ──> optimizer ]  steady: state from step 1 stays

With gradient accumulation, micro-batches after the first run forward and backward with the
gradients of the previous ones alive; with ``grad_accum == 1`` the Trainer frees them
(``zero_grad(set_to_none=True)``) after every optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramfit.estimate.activations import LayerActivations, checkpoint_bytes_per_token, eager_mask_bytes
from vramfit.estimate.logits import LogitsBytes
from vramfit.estimate.result import Breakdown, Phase
from vramfit.estimate.weights import WeightBytes


@dataclass(frozen=True)
class Parts:
    """Every ingredient the phases are made of (bytes)."""

    w: WeightBytes
    adapters: int
    grads: int
    grads_per_layer: int
    opt_state: int
    opt_temp: int
    saved: int  # activations kept through forward (checkpoints when checkpointing)
    recompute: int  # one layer's saved activations rebuilt in backward (checkpointing only)
    layer_fwd_transient: int
    layer_bwd_transient: int
    logits: LogitsBytes
    dequant: int  # one layer's weight dequantized (bitsandbytes backward / matmul)
    workspace: int  # cuBLAS
    tied_grad_accumulation: int = 0  # full fine-tuning, tied embeddings: see build_phases
    # autocast's cached compute-dtype copies of the LoRA weights (adapters.adapter_autocast_copy_bytes):
    # all of them from the last layer's forward to the loss; in backward, all of them again when nothing
    # is recomputed (the matmuls saved them), one layer's when checkpointing recomputes the layer
    adapter_copies: int = 0
    adapter_copies_backward: int = 0
    # one layer's gradients inside a k-bit linear's backward, beside the dequantized weight
    # (LayerActivations.matmul_backward_per_token x tokens)
    layer_matmul_transient: int = 0
    final_norm: int = (
        0  # the final norm's saved tensors, part of ``saved``, freed before the last layer's backward
    )


def activation_parts(arch, cfg, layer: LayerActivations, shared: int, attn: str) -> tuple[int, int, int, int]:
    """(saved, recompute, fwd_transient, bwd_transient) of one micro-batch."""
    b, s = cfg.batch_size, cfg.seq_len
    T = b * s
    per_layer = layer.saved_bytes(b, s)
    mask = eager_mask_bytes(cfg, attn, s) * b
    if cfg.gradient_checkpointing:
        kept = checkpoint_bytes_per_token(arch, cfg) + layer.kept_under_checkpointing
        saved = arch.num_layers * kept * T + shared * T + mask
        recompute = per_layer
    else:
        saved = arch.num_layers * per_layer + shared * T + mask
        recompute = 0
    return saved, recompute, layer.forward_transient_bytes(b, s), layer.backward_transient_bytes(b, s)


def build_phases(p: Parts, grad_accum: int) -> tuple[Phase, ...]:
    w = p.w
    base = Breakdown(weights=w.weights, quant_state=w.quant_state, adapters=p.adapters)
    g_prev = p.grads if grad_accum > 1 else 0

    load = Breakdown(weights=w.load_weights, quant_state=w.quant_state, temporaries=w.largest_linear_load)
    upcasting = Breakdown(
        weights=w.weights, quant_state=w.quant_state, temporaries=w.largest_unquantized_load
    )
    prepare = upcasting if upcasting.total > base.total else base

    fwd, bwd = _forward_backward(p, g_prev)
    fwd, bwd = base + fwd, base + bwd
    opt = Breakdown(optimizer=p.opt_state)
    step = base + Breakdown(gradients=p.grads, optimizer=p.opt_state, temporaries=p.opt_temp + p.workspace)
    return training_phases(load, prepare, fwd, bwd, step, opt)


def training_phases(
    load: Breakdown, prepare: Breakdown, fwd: Breakdown, bwd: Breakdown, step: Breakdown, opt: Breakdown
) -> tuple[Phase, ...]:
    """The phases of a run in order: the first step has no optimizer state yet, the steady ones do."""
    return (
        Phase("load", load),
        Phase("prepare", prepare),
        Phase("forward (step 1)", fwd),
        Phase("backward (step 1)", bwd),
        Phase("optimizer (step 1)", step),
        Phase("forward (steady)", fwd + opt),
        Phase("backward (steady)", bwd + opt),
        Phase("optimizer (steady)", step),
    )


def _forward_backward(p: Parts, g_prev: int) -> tuple[Breakdown, Breakdown]:
    """The largest moment of forward and of backward, without the base model and optimizer state
    (added for the steady step); ``g_prev``: the gradients of earlier micro-batches."""
    lg = p.logits
    # Moments inside forward and backward, without optimizer state (added for the steady step).
    fwd_at_loss = Breakdown(
        gradients=g_prev,
        activations=p.saved + p.adapter_copies,
        logits=lg.forward_peak + lg.head_weight_copy,
        temporaries=p.workspace,
    )
    fwd_in_last_layer = Breakdown(
        gradients=g_prev,
        activations=p.saved + p.adapter_copies + p.layer_fwd_transient,
        temporaries=p.dequant + p.workspace,
    )
    bwd_at_loss = Breakdown(
        gradients=g_prev,
        activations=p.saved + (p.adapter_copies if p.recompute == 0 else 0),
        logits=lg.backward_peak + lg.head_weight_copy,
        temporaries=p.workspace,
    )
    # The last layer's backward has two moments: its element-wise MLP backward (the most gradients in
    # flight) and a k-bit linear's backward (its dequantized weight, fewer gradients); the final norm's
    # saved tensors are gone by then (its backward ran first).
    in_layer = p.saved - p.final_norm + p.recompute + p.adapter_copies_backward
    bwd_in_last_layer = Breakdown(
        gradients=g_prev + p.grads_per_layer,
        activations=in_layer + p.layer_bwd_transient,
        temporaries=p.workspace,
    )
    bwd_in_kbit_matmul = Breakdown(
        gradients=g_prev + p.grads_per_layer,
        activations=in_layer + p.layer_matmul_transient,
        temporaries=p.dequant + p.workspace,
    )
    # With tied embeddings the weight's gradient from lm_head exists when the embedding's arrives, last in
    # backward, and is accumulated out of place: the incoming and the summed vocabulary x hidden tensors
    # are alive beside every other gradient (measured: 2 x V x h x 2 B at the end of backward, full
    # fine-tuning of llama-3.2-1b; untied TinyLlama shows none).
    bwd_at_end = Breakdown(gradients=p.grads, activations=p.tied_grad_accumulation, temporaries=p.workspace)
    return (
        max(fwd_at_loss, fwd_in_last_layer, key=_total),
        max(bwd_at_loss, bwd_in_last_layer, bwd_in_kbit_matmul, bwd_at_end, key=_total),
    )


def _total(b: Breakdown) -> int:
    return b.total
