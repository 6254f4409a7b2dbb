"""MoE layers traced with the memory of torch's grouped_mm kernel (vramfit/models/moe_trace.py)."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from vramfit.models.trace import TraceKey, trace_layer  # noqa: E402

H, INTER, E = 64, 128, 8  # hidden, intermediate (I below), experts
GRANITEMOE = dict(model_type="granitemoe", vocab_size=512, hidden_size=H, intermediate_size=INTER, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
                  num_local_experts=E)  # fmt: skip
QLORA = TraceKey("qlora", "nf4", "bf16", "bf16", True, ("q_proj", "v_proj"), 16, False, "sdpa")


def _sentinel_mask_bytes() -> int:
    """transformers' grouped_mm_experts_forward masks expert-parallel sentinel rows: older versions always
    (a bool per routed token, kept by masked_fill's backward), newer ones only under expert parallelism."""
    import transformers.integrations.moe as moe

    return 0 if "if self._is_expert_parallel" in inspect.getsource(moe.grouped_mm_experts_forward) else 1


def _per_routed_token() -> int:
    """What backward keeps per (token, expert) pair in granitemoe's router and grouped_mm experts under
    QLoRA, read from the code (modeling_granitemoe.py::GraniteMoeTopKRouter, integrations/moe.py::
    grouped_mm_experts_forward): the experts are fused 3-D parameters, not quantized, upcast to fp32 and
    frozen, so each grouped_mm keeps only its weight. Per pair: topk's int64 indices, softmax's fp32 output,
    the int64 gather index ``perm // top_k``, the sort permutation and its inverse (int64 each), the up
    projection's output (2I, fp32; silu's input and mul's ``up`` are views of it), silu's output (I), the
    down projection's output (H) and its fp32 routing weight (both kept by the weighting mul)."""
    fp32, i64 = 4, 8
    return 4 * i64 + 2 * fp32 + fp32 * (2 * INTER + INTER + H) + _sentinel_mask_bytes()


def test_routed_tokens_keep_what_the_kernel_keeps():
    """One more expert per token adds exactly one routed pair's saved tensors to each token (the stand-in
    for torch's grouped_mm saves no input of a frozen expert; transformers' CPU fallback saved both)."""
    t2 = trace_layer({**GRANITEMOE, "num_experts_per_tok": 2}, QLORA)
    t4 = trace_layer({**GRANITEMOE, "num_experts_per_tok": 4}, QLORA)
    assert t4.saved_per_token - t2.saved_per_token == 2 * _per_routed_token()


def test_frozen_experts_get_no_weight_gradient_in_backward():
    """Backward allocates no gradient for frozen expert weights: its transient does not grow with the
    number of experts (the CPU fallback's zeros_like(weight) grew by E x the weights)."""
    t8 = trace_layer({**GRANITEMOE, "num_experts_per_tok": 2}, QLORA)
    t16 = trace_layer({**GRANITEMOE, "num_experts_per_tok": 2, "num_local_experts": 2 * E}, QLORA)
    assert t16.bwd_transient_per_token == t8.bwd_transient_per_token
    assert t16.saved_per_token == t8.saved_per_token


def test_full_fine_tuning_allocates_the_expert_weight_gradients():
    """With trainable experts, grouped_mm's backward allocates each weight's gradient: E more experts add
    their gate_up_proj (2I x H) and down_proj (H x I) gradients, bf16, to the backward transient."""
    full = TraceKey("full", "none", "bf16", "bf16", False, (), 16, False, "sdpa")
    t8 = trace_layer({**GRANITEMOE, "num_experts_per_tok": 2}, full)
    t16 = trace_layer({**GRANITEMOE, "num_experts_per_tok": 2, "num_local_experts": 2 * E}, full)
    grown = (t16.bwd_transient_per_token - t8.bwd_transient_per_token) * 64  # the trace's 64 tokens
    assert grown == E * (2 * INTER * H + H * INTER) * 2


def test_the_estimate_says_in_what_dtype_the_experts_stay():
    from vramfit.config import TrainConfig
    from vramfit.estimate import estimate
    from vramfit.models import from_hf_config

    spec = from_hf_config({**GRANITEMOE, "num_experts_per_tok": 2}, name="moe")
    (qlora,) = [w for w in estimate(spec, TrainConfig(seq_len=64)).warnings if w.startswith("MoE")]
    assert "bitsandbytes does not quantize them" in qlora and "in fp32 after prepare_model_for_kbit" in qlora
    full = TrainConfig(seq_len=64, method="full", quant="none")
    (msg,) = [w for w in estimate(spec, full).warnings if w.startswith("MoE")]
    assert "in bf16" in msg and "bitsandbytes" not in msg and "frozen" not in msg
