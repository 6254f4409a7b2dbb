"""Kinds of models read from the model itself that once failed: Conv1D linears, aliased config names,
subclassed linears, per-head widths of a small config, peft's refusal of dropout on fused experts.

Real tiny models (built from configs, random weights on fake tensors, no network)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from vramfit.config import TrainConfig  # noqa: E402
from vramfit.errors import InputError  # noqa: E402
from vramfit.estimate import estimate  # noqa: E402
from vramfit.estimate.traced import trace_key  # noqa: E402
from vramfit.models import from_hf_config  # noqa: E402
from vramfit.models.trace import trace_layer  # noqa: E402


def _traced(spec, cfg: TrainConfig):
    """The estimate and the layer trace behind it (the traced step ran: something was kept for backward)."""
    e = estimate(spec, cfg)
    t = trace_layer(spec.hf_config, trace_key(cfg, spec.default_attn))
    assert t.saved_per_token > 0 and e.breakdown.activations > 0
    return e


def test_conv1d_linears_are_quantized_and_adapted_as_linears():
    """GPT-2's Conv1D (weight in x out): bitsandbytes makes it a Linear4bit(in, out), peft wraps that."""
    cfg = {
        "model_type": "gpt2",
        "n_layer": 2,
        "n_embd": 64,
        "n_head": 4,
        "vocab_size": 512,
        "n_positions": 256,
    }
    spec = from_hf_config(cfg, name="gpt2")
    c_fc = spec.inventory.layer_linears(0)
    fc = next(m for m in c_fc if m.leaf == "c_fc")
    assert (fc.in_features, fc.out_features, fc.quantized) == (64, 256, True)
    e = _traced(spec, TrainConfig(seq_len=64, targets=("all-linear",)))
    assert e.breakdown.adapters > 0


def test_aliased_config_names_are_read():
    """MPT names hidden size, heads and layers d_model, n_heads, n_layers (its attribute_map)."""
    spec = from_hf_config({"model_type": "mpt", "d_model": 64, "n_heads": 4, "n_layers": 2, "vocab_size": 512},
                          name="mpt")  # fmt: skip
    assert (spec.hidden_size, spec.num_heads, spec.num_layers, spec.vocab_size) == (64, 4, 2, 512)
    _traced(spec, TrainConfig(seq_len=64, targets=("all-linear",)))


def test_subclassed_linears_are_targets_but_not_quantized():
    """Falcon's FalconLinear subclasses nn.Linear: all-linear adapts it, bitsandbytes replaces only
    ``type(module) is nn.Linear``, so it stays unquantized."""
    cfg = {"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
           "vocab_size": 512}  # fmt: skip
    spec = from_hf_config(cfg, name="falcon")
    qkv = next(m for m in spec.inventory.layer_linears(0) if m.leaf == "query_key_value")
    assert not qkv.quantized
    e = _traced(spec, TrainConfig(seq_len=64, targets=("all-linear",)))
    assert e.trainable_params > 0


def test_the_sweeps_small_config_scales_head_widths_with_the_head():
    """GPT-J's default rotary_dim (64) does not fit a 16-wide head: the small config scales it, and the
    parts of a DeepSeek-V3 head (rope + nope) still add up to its q/k head width."""
    from benchmarks.coverage import small_config

    gptj = small_config("gptj")
    assert gptj["rotary_dim"] <= 16 and gptj["rotary_dim"] % 2 == 0
    ds = small_config("deepseek_v3")
    assert ds["qk_rope_head_dim"] + ds["qk_nope_head_dim"] == ds["qk_head_dim"]
    _traced(from_hf_config(gptj, name="gptj"), TrainConfig(seq_len=64, targets=("q_proj", "v_proj")))


def test_encoder_decoders_with_a_causal_lm_class_are_refused():
    with pytest.raises(InputError, match="encoder-decoder.*vramfit probe"):
        from_hf_config({"model_type": "bart", "d_model": 64, "vocab_size": 512}, name="bart")


DEEPSEEK_V2 = {
    "model_type": "deepseek_v2", "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512,
    "n_routed_experts": 4, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1, "kv_lora_rank": 32,
    "q_lora_rank": None, "qk_rope_head_dim": 16, "qk_nope_head_dim": 16, "v_head_dim": 16, "head_dim": 16,
    "first_k_dense_replace": 1, "max_position_embeddings": 256, "pad_token_id": 0,
}  # fmt: skip


def test_lora_dropout_on_fused_experts_names_the_flag():
    """peft maps the experts' former gate_proj / up_proj / down_proj to the fused expert parameters, which
    lora.ParamWrapper adapts with lora_dropout 0 only: a clear --dropout error, and an estimate without it."""
    spec = from_hf_config(DEEPSEEK_V2, name="deepseek_v2")
    with pytest.raises(InputError, match=r"--dropout: .*fused expert parameters.*accepted: --dropout 0"):
        estimate(spec, TrainConfig(seq_len=64, targets=("all-linear",)))
    _traced(spec, TrainConfig(seq_len=64, targets=("all-linear",), dropout=0.0))
