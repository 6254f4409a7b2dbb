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

from vramfit.config import DTYPE_BYTES, TrainConfig
from vramfit.estimate.adapters import resolve_targets
from vramfit.estimate.weights import unquantized_dtype
from vramfit.models.spec import ArchSpec

MASK_BYTES = 1  # torch native_dropout keeps a bool mask
FP32 = 4
INPUT_TENSOR_BYTES = 3 * 8  # input_ids, labels, attention_mask: int64 per token


@dataclass(frozen=True)
class Dtypes:
    compute: int  # bytes of the autocast dtype (4 when training in fp32: no autocast)
    hidden: int  # residual stream
    autocast: bool
    base_out: int  # dtype of a frozen base linear's output
    mlp: int  # dtype of the MLP's intermediate tensors


def dtypes(cfg: TrainConfig) -> Dtypes:
    compute = DTYPE_BYTES[cfg.compute_dtype]
    autocast = compute < FP32
    hidden = DTYPE_BYTES[unquantized_dtype(cfg)]
    if cfg.is_kbit:
        base_out = hidden  # bitsandbytes returns the input's dtype
    else:
        base_out = compute if autocast else hidden  # autocast'ed nn.Linear
    # LoRA output (compute dtype under autocast) added to the base output promotes to the wider one.
    mlp = max(base_out, compute) if cfg.uses_lora else base_out
    return Dtypes(compute, hidden, autocast, base_out, mlp)


@dataclass(frozen=True)
class LayerActivations:
    """Saved bytes of one decoder layer, split for the report."""

    per_token: dict  # name -> bytes per token
    quadratic_per_s2: int  # bytes per sequence and per s^2 (eager attention scores, all heads), one layer
    transient_per_token: int  # extra live bytes at the layer's forward peak (not saved)
    backward_per_token: int  # activation gradients in flight while this layer runs backward
    saved_per_token: int = 0  # sum of per_token
    kept_under_checkpointing: int = 0  # bytes per token that gradient checkpointing cannot drop

    def quadratic_bytes(self, seq_len: int) -> int:
        """Bytes of one sequence that grow with the square of its length, for one layer."""
        return self.quadratic_per_s2 * seq_len * seq_len


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
    nh = arch.num_heads
    full = cfg.method == "full"
    terms: dict[str, int] = {}

    # RMSNorm (LlamaRMSNorm): x.to(fp32) is kept for pow() and the product with rsqrt (+ rsqrt, 4 B/token).
    # With a trainable weight (full) the normalized tensor is kept for the weight's gradient too.
    norm = FP32 * h + FP32 + (hb * h if full else 0)
    terms["norms"] = arch.norms_per_layer * norm
    if arch.qk_norm:  # Qwen3: RMSNorm over head_dim on q and k (per head)
        terms["qk_norms"] = FP32 * (q + kv) + FP32 * (nh + arch.num_kv_heads) + ((q + kv) * hb if full else 0)

    # Attention core. SDPA (flash / memory-efficient) and flash_attention_2 keep q, k, v and the output in
    # the compute dtype plus an fp32 logsumexp per head: O(s), never the s x s scores.
    quad = 0
    if attn in ("sdpa", "flash_attention_2"):
        terms["attention"] = c * (q + 2 * kv) + c * q + FP32 * nh
    else:  # eager: repeat_kv expands k and v to every head; softmax runs in fp32 and its output is kept
        terms["attention"] = c * (q + 2 * q) + c * q  # q, repeated k and v (cast), output
        # per (sequence, head, query, key): fp32 softmax output + its compute-dtype copy for the matmul,
        # + tanh output for Gemma-2's attention soft-capping
        per_score = FP32 + c + (c if arch.attn_logit_softcapping else 0)
        quad = nh * per_score

    # Linear layers.
    targeted = {m.name for m in resolve_targets(arch, cfg.targets)} if cfg.uses_lora else set()
    groups = {  # modules that read the same input tensor
        "attn_in": ("q_proj", "k_proj", "v_proj", "qkv_proj"),
        "o": ("o_proj",),
        "mlp_in": ("gate_proj", "up_proj", "gate_up_proj"),
        "down": ("down_proj",),
    }
    in_dtype = {"attn_in": hb, "o": c, "mlp_in": hb, "down": d.mlp}
    lin = int8_kept = 0
    for g, names in groups.items():
        mods = [arch.linear_by_name[n] for n in names if n in arch.linear_by_name]
        width = mods[0].in_features
        x_b = in_dtype[g]
        if full:
            # each trainable linear keeps its input for the weight gradient; under autocast an input in
            # another dtype is cast once per module (autocast caches only leaf parameters' casts)
            lin += c * width * (1 if x_b == c else len(mods))
            continue
        int8_keeps_input = cfg.resolved_quant == "int8"
        if int8_keeps_input:
            # bitsandbytes MatMul8bitLt keeps its input A as given (ctx.tensors = (CAt, subA, A)); the
            # modules of a group get the same tensor. It is a ctx attribute, not save_for_backward, so
            # gradient checkpointing's saved-tensor hooks never see it: it stays for every layer.
            lin += x_b * width
            int8_kept += x_b * width
        lora_mods = [m for m in mods if m.name in targeted]
        if not lora_mods:
            continue
        if cfg.dropout > 0:  # a dropout per module: its mask and its (cast) output for lora_A
            lin += len(lora_mods) * (MASK_BYTES + c) * width
        elif x_b == c:  # lora_A keeps the module input itself: one tensor shared by the group
            lin += 0 if int8_keeps_input else c * width
        else:  # one autocast copy per module
            lin += len(lora_mods) * c * width
        lin += len(lora_mods) * c * cfg.rank  # lora_B keeps lora_A's output
    terms["linear_inputs"] = lin

    # MLP element-wise part: act(gate) keeps gate; gate_act * up keeps both factors (SwiGLU / GeGLU).
    terms["mlp"] = 3 * d.mlp * i if arch.gated_mlp else d.mlp * i

    # Live but not kept while the layer runs forward: the MLP product (input of down_proj), one
    # autocast copy of a linear input, the fp32 RoPE outputs before SDPA's cast.
    transient = d.mlp * i + c * max(h, i) + (hb * (q + 2 * kv) if hb != c else 0)
    # Backward: gradients of the residual stream (2 x fp32/hidden) and of the MLP intermediates.
    backward = 2 * max(hb, FP32) * h + 3 * d.mlp * i
    return LayerActivations(terms, quad, transient, backward, sum(terms.values()), int8_kept)


def checkpoint_bytes_per_token(arch: ArchSpec, cfg: TrainConfig) -> int:
    """What gradient checkpointing keeps per layer: the layer's input hidden states."""
    return dtypes(cfg).hidden * arch.hidden_size


def shared_per_token(arch: ArchSpec, cfg: TrainConfig) -> int:
    """Saved once for all layers: RoPE cos/sin (hidden dtype), input ids / labels / mask, final norm."""
    hb = dtypes(cfg).hidden
    return 2 * hb * arch.head_dim + INPUT_TENSOR_BYTES + FP32 * arch.hidden_size + FP32


def eager_mask_bytes(cfg: TrainConfig, attn: str, seq_len: int) -> int:
    """transformers builds one (b, 1, s, s) additive mask for eager attention, in the hidden dtype."""
    if attn != "eager":
        return 0
    return dtypes(cfg).hidden * seq_len * seq_len
