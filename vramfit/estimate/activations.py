"""Activations: the tensors autograd keeps from forward to backward, per decoder layer.

Korthikanti et al. 2022 (arXiv 2205.05198, sec. 4.1) count a GPT layer's saved tensors; here the same
count is done for the layer transformers actually runs (RMSNorm, RoPE, GQA, SwiGLU/GeGLU, SDPA or
eager attention) with the dtypes the reference recipe produces. Three facts decide most of it:

* After ``prepare_model_for_kbit_training`` the embedding is fp32, so the residual stream is fp32 and
  every bitsandbytes layer returns fp32 (``Linear4bit.forward`` ends with ``.to(inp_dtype)``).
* A frozen linear saves nothing but its weight: bitsandbytes' ``MatMul4Bit`` keeps only the packed
  weight (``ctx.tensors = (None, B)``, bitsandbytes 0.45+); a frozen ``nn.Linear`` needs only its weight
  for the input gradient. What a LoRA layer keeps is its own input (cast to the compute dtype by
  autocast) and, with dropout, the dropout mask (1 byte per value).
* Gradient checkpointing (transformers, non-reentrant by default) keeps each layer's input and
  recomputes one layer at a time during backward.

All figures are bytes *per token* unless a name says otherwise; ``b * s`` tokens per micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramfit.catalog import ATTNS, QUANTS
from vramfit.catalog.dtypes import FP32_BYTES as FP32
from vramfit.catalog.dtypes import dtypes
from vramfit.config import TrainConfig
from vramfit.estimate.adapters import resolve_targets
from vramfit.models.spec import ArchSpec

MASK_BYTES = 1  # torch native_dropout keeps a bool mask
INPUT_TENSOR_BYTES = 3 * 8  # input_ids, labels, attention_mask: int64 per token


@dataclass(frozen=True)
class LayerActivations:
    """Saved bytes of one decoder layer, split for the report."""

    per_token: dict  # name -> bytes per token
    quadratic_per_s2: int  # bytes per sequence and per s^2 (eager attention scores, all heads), one layer
    transient_per_token: int  # extra live bytes at the layer's forward peak (not saved)
    backward_per_token: int  # activation gradients in flight while this layer runs backward
    saved_per_token: int = 0  # sum of per_token
    kept_under_checkpointing: int = 0  # bytes per token that gradient checkpointing cannot drop
    scores: ScoreMoments | None = None  # attention that materializes the s x s scores (eager)
    # in flight inside a k-bit linear's backward (beside its dequantized weight), a moment of its own
    matmul_backward_per_token: int = 0

    def quadratic_bytes(self, seq_len: int) -> int:
        """Bytes of one sequence that grow with the square of its length, for one layer."""
        return self.quadratic_per_s2 * seq_len * seq_len

    def saved_bytes(self, batch: int, seq_len: int) -> int:
        """What the layer keeps for backward, for one micro-batch."""
        return self.saved_per_token * batch * seq_len + self.quadratic_bytes(seq_len) * batch

    def forward_transient_bytes(self, batch: int, seq_len: int) -> int:
        """Live beside the saved tensors at the layer's forward peak."""
        s2 = self.scores.forward_per_s2 if self.scores else 0
        return self.transient_per_token * batch * seq_len + s2 * seq_len * seq_len * batch

    def backward_transient_bytes(self, batch: int, seq_len: int) -> int:
        """Live beside the saved tensors at the layer's backward peak: the activation gradients, or
        (materialized scores) the moment of softmax's backward when that is larger."""
        T = batch * seq_len
        out = self.backward_per_token * T
        if self.scores:
            at_softmax = self.scores.softmax_backward_per_token * T
            at_softmax += self.scores.softmax_backward_per_s2 * seq_len * seq_len * batch
            out = max(out, at_softmax - self.saved_bytes(batch, seq_len))
        return out


@dataclass(frozen=True)
class ScoreMoments:
    """The two moments of attention that materializes the s x s scores (bytes per token / per s^2)."""

    forward_per_s2: int  # the raw scores and the masked fp32 scores before softmax
    softmax_backward_per_token: int
    softmax_backward_per_s2: int


_CACHE: dict = {}  # the planner evaluates the same layer under thousands of sequence lengths


def layer_activations(arch: ArchSpec, cfg: TrainConfig, attn: str) -> LayerActivations:
    """One decoder layer's activations for ``cfg`` (independent of sequence length and batch)."""
    key = (arch, cfg.method, cfg.quant, cfg.load_dtype, cfg.compute_dtype, cfg.kbit_upcast, cfg.targets,
           cfg.rank, cfg.dropout > 0, attn)  # fmt: skip
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        if arch.inventory is not None:  # traced from the model's own step
            from vramfit.estimate.traced import traced_layer_activations

            hit = _CACHE[key] = traced_layer_activations(arch, cfg, attn)
        else:
            hit = _CACHE[key] = _layer_activations(arch, cfg, attn)
    return hit


def _layer_activations(arch: ArchSpec, cfg: TrainConfig, attn: str) -> LayerActivations:
    d = dtypes(cfg)
    c, hb = d.compute, d.hidden
    h, i, q, kv = arch.hidden_size, arch.intermediate_size, arch.q_size, arch.kv_size
    terms = _norm_terms(arch, cfg)
    terms["attention"], quad = _attention_core(arch, c, attn)
    terms["linear_inputs"], int8_kept = _linear_inputs(arch, cfg)
    # MLP element-wise part: act(gate) keeps gate; gate_act * up keeps both factors (SwiGLU / GeGLU).
    terms["mlp"] = 3 * d.mlp * i if arch.gated_mlp else d.mlp * i

    # Live but not kept while the layer runs forward: the MLP product (input of down_proj), one
    # autocast copy of a linear input, the fp32 RoPE outputs before SDPA's cast.
    transient = d.mlp * i + c * max(h, i) + (hb * (q + 2 * kv) if hb != c else 0)
    # Backward, at the MLP's element-wise backward (mul: two gradients beside the incoming one, then the
    # activation's): the incoming gradient of the residual stream and three MLP-sized gradients. The saved
    # factors are freed only as their nodes finish, so they are all still counted. A trace of the model's
    # own step (models/trace.py, llama-3.2-1b and qwen2.5-0.5b with and without the kbit upcast) finds
    # exactly 3 x mlp x i beyond the incoming gradient at the layer's backward peak.
    backward = max(hb, FP32) * h + 3 * d.mlp * i
    # Inside a k-bit linear's backward (bitsandbytes MatMul4Bit.backward: grad_output @ dequantize_4bit(B),
    # the dequantized weight freed on return) the element-wise gradients do not exist yet: the incoming
    # gradient, its cast to the compute dtype and the input gradient of the widest input (down_proj).
    in_matmul = max(hb, FP32) * h + c * h + c * max(h, i)
    scores = _score_moments(arch, c, terms["attention"], quad) if quad else None
    return LayerActivations(
        terms, quad, transient, backward, sum(terms.values()), int8_kept, scores, in_matmul
    )


def _norm_terms(arch: ArchSpec, cfg: TrainConfig) -> dict[str, int]:
    """RMSNorm (LlamaRMSNorm): x.to(fp32) is kept for pow() and the product with rsqrt (+ rsqrt, 4 B/token).
    With a trainable weight (full) the normalized tensor is kept for the weight's gradient too."""
    hb, h, q, kv = dtypes(cfg).hidden, arch.hidden_size, arch.q_size, arch.kv_size
    full = not cfg.uses_lora
    terms = {"norms": arch.norms_per_layer * (FP32 * h + FP32 + (hb * h if full else 0))}
    if arch.qk_norm:  # Qwen3: RMSNorm over head_dim on q and k (per head)
        terms["qk_norms"] = (
            FP32 * (q + kv) + FP32 * (arch.num_heads + arch.num_kv_heads) + ((q + kv) * hb if full else 0)
        )
    return terms


def _attention_core(arch: ArchSpec, c: int, attn: str) -> tuple[int, int]:
    """(bytes per token, bytes per s^2 per sequence) the attention core keeps; ``c``: compute dtype bytes."""
    q, kv, nh = arch.q_size, arch.kv_size, arch.num_heads
    if not ATTNS[attn].keeps_scores:
        # SDPA (flash / memory-efficient) and flash_attention_2 keep q, k, v and the output in the compute
        # dtype plus an fp32 logsumexp per head: O(s), never the s x s scores.
        return c * (q + 2 * kv) + c * q + FP32 * nh, 0
    # eager: repeat_kv expands k and v to every head; softmax runs in fp32 and its output is kept:
    # q, repeated k and v (cast), output; per (sequence, head, query, key): the fp32 softmax output + its
    # compute-dtype copy for the matmul, + the tanh output of Gemma-2's attention soft-capping
    per_score = FP32 + c + (c if arch.attn_logit_softcapping else 0)
    return c * (q + 2 * q) + c * q, nh * per_score


def _score_moments(arch: ArchSpec, c: int, attention_per_token: int, quad_per_s2: int) -> ScoreMoments:
    """Eager attention's two moments beyond what it keeps.

    Forward: the raw scores (compute dtype) and the masked fp32 scores before softmax. Backward: the
    backward of softmax(x, dtype=fp32).to(compute) is a moment of its own, after the MLP's: the layer's
    MLP and linear inputs are freed, and so is the compute-dtype copy of the probabilities (its matmul ran
    backward). Alive: the attention's own saved tensors, the fp32 probabilities, and three fp32
    score-sized tensors of softmax's backward (the gradient cast to fp32, softmax's fp32 input gradient
    and a temporary of the same size; a GPU trace of tinyllama at 4096 tokens shows the three beside the
    probabilities at the peak), with the residual stream's gradients.
    """
    nh = arch.num_heads
    return ScoreMoments(
        forward_per_s2=nh * (c + FP32),
        softmax_backward_per_token=attention_per_token + 2 * FP32 * arch.hidden_size,
        softmax_backward_per_s2=(quad_per_s2 - nh * c) + 3 * FP32 * nh,  # probabilities (fp32, + tanh) + 3
    )


def _linear_inputs(arch: ArchSpec, cfg: TrainConfig) -> tuple[int, int]:
    """(bytes per token the layer's linears keep, of which gradient checkpointing cannot drop)."""
    d = dtypes(cfg)
    c, hb = d.compute, d.hidden
    targeted = {m.name for m in resolve_targets(arch, cfg.targets)} if cfg.uses_lora else set()
    in_dtype = {"attn_in": hb, "o": c, "mlp_in": hb, "down": d.mlp}
    keeps_input = QUANTS[cfg.resolved_quant].keeps_linear_input
    lin = kept = 0
    for g, names in _INPUT_GROUPS.items():
        mods = [arch.linear_by_name[n] for n in names if n in arch.linear_by_name]
        width, x_b = mods[0].in_features, in_dtype[g]
        if not cfg.uses_lora:
            # each trainable linear keeps its input for the weight gradient; under autocast an input in
            # another dtype is cast once per module (autocast caches only leaf parameters' casts)
            lin += c * width * (1 if x_b == c else len(mods))
            continue
        if keeps_input:
            # bitsandbytes MatMul8bitLt keeps its input A as given (ctx.tensors = (CAt, subA, A)); the
            # modules of a group get the same tensor. It is a ctx attribute, not save_for_backward, so
            # gradient checkpointing's saved-tensor hooks never see it: it stays for every layer.
            lin += x_b * width
            kept += x_b * width
        lin += _lora_inputs([m for m in mods if m.name in targeted], width, x_b, c, cfg, keeps_input)
    return lin, kept


_INPUT_GROUPS = {  # modules that read the same input tensor
    "attn_in": ("q_proj", "k_proj", "v_proj", "qkv_proj"),
    "o": ("o_proj",),
    "mlp_in": ("gate_proj", "up_proj", "gate_up_proj"),
    "down": ("down_proj",),
}


def _lora_inputs(lora_mods: list, width: int, x_b: int, c: int, cfg: TrainConfig, shared: bool) -> int:
    """What the LoRA branches of one input group keep per token (``shared``: the base already keeps
    the group's input)."""
    if not lora_mods:
        return 0
    n = len(lora_mods)
    if cfg.dropout > 0:  # a dropout per module: its mask and its (cast) output for lora_A
        out = n * (MASK_BYTES + c) * width
    elif x_b == c:  # lora_A keeps the module input itself: one tensor shared by the group
        out = 0 if shared else c * width
    else:  # one autocast copy per module
        out = n * c * width
    return out + n * c * cfg.rank  # lora_B keeps lora_A's output


def checkpoint_bytes_per_token(arch: ArchSpec, cfg: TrainConfig) -> int:
    """What gradient checkpointing keeps per layer: the layer's input hidden states."""
    return dtypes(cfg).hidden * arch.hidden_size


def shared_per_token(arch: ArchSpec, cfg: TrainConfig) -> int:
    """Saved once for all layers: RoPE cos/sin (hidden dtype), input ids / labels / mask, final norm."""
    hb = dtypes(cfg).hidden
    return 2 * hb * arch.head_dim + INPUT_TENSOR_BYTES + final_norm_per_token(arch)


def final_norm_per_token(arch: ArchSpec) -> int:
    """The final RMSNorm's saved fp32 input and rsqrt: freed by its backward, before the last layer's."""
    return FP32 * arch.hidden_size + FP32


def eager_mask_bytes(cfg: TrainConfig, attn: str, seq_len: int) -> int:
    """transformers builds one (b, 1, s, s) additive mask for attention that materializes the scores
    (eager), in the hidden dtype; SDPA and flash attention take is_causal instead."""
    if not ATTNS[attn].keeps_scores:
        return 0
    return dtypes(cfg).hidden * seq_len * seq_len
