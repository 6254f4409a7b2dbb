"""Models outside the built-in families, read from the model transformers builds (meta / fake tensors)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from vramfit.config import TrainConfig  # noqa: E402
from vramfit.errors import InputError  # noqa: E402
from vramfit.estimate import estimate  # noqa: E402
from vramfit.estimate.activations import layer_activations  # noqa: E402
from vramfit.models import from_hf_config, list_models  # noqa: E402
from vramfit.models.trace import TraceKey, trace_layer  # noqa: E402

SMALL = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0)  # fmt: skip
NEW_TYPES = {
    "gemma3_text": dict(head_dim=16),
    "smollm3": {},
    "olmo2": {},
    "granite": {},
    "granitemoe": dict(num_local_experts=4, num_experts_per_tok=2),
    "phi3": {},  # Phi-4-mini is a phi3 model (fused qkv_proj / gate_up_proj)
}


@pytest.mark.parametrize("model_type", sorted(NEW_TYPES))
def test_new_architectures_are_estimated_from_the_model(model_type):
    spec = from_hf_config({"model_type": model_type, **SMALL, **NEW_TYPES[model_type]}, name=model_type)
    targets = ("qkv_proj",) if model_type == "phi3" else ("q_proj", "v_proj")
    e = estimate(spec, TrainConfig(seq_len=64, targets=targets))
    assert e.peak_allocated_bytes > e.breakdown.weights > 0
    assert e.breakdown.activations > 0 and e.breakdown.adapters > 0
    if model_type != "phi3":  # phi3 is a built-in family: its formulas are held to the model in test_models
        assert spec.total_params == spec.inventory.total_params


def test_moe_experts_stay_unquantized_and_are_upcast():
    cfg = {"model_type": "granitemoe", **SMALL, "num_local_experts": 8, "num_experts_per_tok": 2}
    spec = from_hf_config(cfg, name="moe")
    inv = spec.inventory
    experts = [p for p in inv.params if p.is_expert]
    assert experts and not any(p.quantized for p in experts)
    w_up = estimate(spec, TrainConfig(seq_len=32)).breakdown.weights
    w_no = estimate(spec, TrainConfig(seq_len=32, kbit_upcast=False)).breakdown.weights
    assert w_up - w_no >= inv.expert_params * 2  # bf16 -> fp32: 2 more bytes per expert value
    e = estimate(spec, TrainConfig(seq_len=32))
    assert any("MoE" in w and "fp32" in w for w in e.warnings)


def test_targets_follow_peft_matching_and_name_the_flag():
    spec = from_hf_config({"model_type": "olmo2", **SMALL}, name="olmo2")
    with pytest.raises(InputError, match="--targets.*no linear module matches 'qkv_proj'"):
        estimate(spec, TrainConfig(targets=("qkv_proj",)))
    full = estimate(spec, TrainConfig(targets=("all-linear",))).trainable_params
    attn = estimate(spec, TrainConfig(targets=("attention",))).trainable_params
    assert full > attn > 0


def test_encoder_decoder_and_unknown_types_point_to_the_probe():
    with pytest.raises(InputError, match="encoder-decoder.*vramfit probe"):
        from_hf_config({"model_type": "t5", "vocab_size": 512, "d_model": 64}, name="t5")
    with pytest.raises(InputError, match="unknown to the installed transformers.*vramfit probe"):
        from_hf_config({"model_type": "no-such-model", **SMALL}, name="x")


# ---- the traced layer held to the hand-written formulas, on every built-in model ----------------------


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_traced_layer_matches_the_formula(spec):
    """What one layer keeps for backward under the QLoRA recipe with SDPA: the trace of the model's own step
    and the formula of estimate/activations.py agree exactly (eager: within 5 %, see reports/coverage.md)."""
    targets = ("q_proj", "v_proj") if "q_proj" in spec.linear_by_name else ("qkv_proj",)
    attn = spec.default_attn
    cfg = TrainConfig(targets=targets)
    key = TraceKey("qlora", "nf4", "bf16", "bf16", True, targets, 16, True, attn)
    traced = trace_layer(spec.hf_config, key)
    formula = layer_activations(spec, cfg, attn)
    if spec.model_type == "qwen2":  # known gap, not yet explained: the trace keeps 7.2 % less
        assert traced.saved_per_token == pytest.approx(formula.saved_per_token, rel=0.08)
    elif attn == "sdpa":
        assert traced.saved_per_token == formula.saved_per_token
    else:
        assert traced.saved_per_token == pytest.approx(formula.saved_per_token, rel=0.05)
        assert traced.saved_per_s2 == pytest.approx(formula.quadratic_per_s2, rel=0.08)


# ---- registry models shipped as data, the coverage sweep, sizes refused before any build -------------


def _shipped_entries():
    from vramfit.models.hf_config import SUPPORTED_MODEL_TYPES
    from vramfit.models.registry import ENTRIES
    from vramfit.models.shipped import shipped_inventory

    return [
        e
        for e in ENTRIES
        if e.config["model_type"] not in SUPPORTED_MODEL_TYPES and shipped_inventory(e.config)
    ]


@pytest.mark.parametrize("entry", _shipped_entries(), ids=lambda e: e.name)
def test_shipped_data_equals_a_fresh_inventory_and_trace(entry):
    """The JSON the estimator reads without torch is what transformers builds and the trace measures now."""
    from vramfit.models.inventory import inventory_from_config
    from vramfit.models.shipped import _data, config_digest, inventory_to_dict, shipped_inventory

    fresh = inventory_from_config(entry.config, entry.name)
    assert shipped_inventory(entry.config) == fresh
    assert (
        json.loads(json.dumps(inventory_to_dict(fresh)["config"], default=str))  # JSON keys are strings
        == _data()["models"][config_digest(entry.config)]["inventory"]["config"]
    )
    key = TraceKey("qlora", "nf4", "bf16", "bf16", True, ("q_proj", "v_proj"), 16, True, "sdpa")
    from vramfit.models.shipped import shipped_trace

    t = trace_layer(entry.config, key)
    assert shipped_trace(entry.config, key)["saved_per_token"] == t.saved_per_token


def test_registry_models_outside_the_families_are_estimated_from_the_data(monkeypatch):
    import vramfit.models.trace as trace

    monkeypatch.setattr(
        trace, "trace_layer", lambda *a, **k: pytest.fail("traced instead of read from the data")
    )
    for entry in _shipped_entries():
        from vramfit.models import registry_spec

        spec = registry_spec(entry.name)
        e = estimate(spec, TrainConfig())
        assert e.peak_allocated_bytes > e.breakdown.weights > 0


def test_absurd_sizes_are_refused_before_transformers_builds(monkeypatch):
    import vramfit.models.inventory as inventory

    monkeypatch.setattr(inventory, "build_meta_model", lambda *a, **k: pytest.fail("built"))
    for key, value in (("num_hidden_layers", 10**9), ("hidden_size", 10**7), ("vocab_size", 10**9)):
        with pytest.raises(InputError, match=f"field '{key}' is"):
            from_hf_config({"model_type": "olmo2", **SMALL, key: value}, name="x")


def test_coverage_sweep_on_three_types(tmp_path):
    from benchmarks import coverage

    out = tmp_path / "coverage.md"
    assert coverage.main(["--types", "llama,olmo2,t5", "--out", str(out)]) == 0
    text = out.read_text()
    assert "**2 of 3 model types estimated**" in text
    assert "| t5 | no |" in text and "encoder-decoder" in text


def test_the_probe_runs_a_model_read_from_the_model_itself():
    """The probe's child rebuilds the spec from its trial file: a model-derived spec keeps its inventory
    (it once arrived as a dict and target resolution failed)."""
    from vramfit.probe import probe

    spec = from_hf_config({"model_type": "olmo2", **SMALL}, name="olmo2")
    r = probe(spec, TrainConfig(seq_len=32), steps=1, device="cpu")
    assert r.measured.oom is None


def test_target_matching_follows_peft():
    """vramfit matches target names without importing peft (the plan path stays free of torch and
    bitsandbytes); it matches as peft's own ``check_target_module_exists`` does for a list of names."""
    peft = pytest.importorskip("peft")
    from peft.tuners.tuners_utils import check_target_module_exists

    from vramfit.models.inventory import _matches

    names = [
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.q_proj_x",
        "model.layers.0.mlp.up_proj",
        "q_proj",
        "lm_head",
    ]
    lists = (["q_proj"], ["up_proj", "q_proj"], ["proj"], ["self_attn.q_proj"], ["lm_head"], ["layers.0.mlp"])
    ours = [[_matches(t, n) for n in names] for t in lists]
    theirs = [
        [bool(check_target_module_exists(peft.LoraConfig(target_modules=t), n)) for n in names] for t in lists
    ]
    assert ours == theirs
    assert ours[0] == [True, False, False, True, False]  # the comparison is not vacuous
