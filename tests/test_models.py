"""Model registry and config.json mapping, held to transformers and peft on the meta device.

Every registry model is built with transformers from its registry config on the meta device (no
memory, no weights) and the counts vramfit derives are compared exactly with what transformers
builds: total parameters, each decoder layer's nn.Linear modules, embeddings, norms, the modules
peft's "all-linear" selects, and the attention implementation transformers picks by default.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import pytest

from vramfit.errors import InputError
from vramfit.models import REGISTRY, SUPPORTED_MODEL_TYPES, from_hf_config, list_models, resolve_model
from vramfit.models.registry import ENTRIES

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def build_meta(config: dict):
    """transformers' causal LM for ``config``, on the meta device (shapes only)."""
    with torch.device("meta"):
        hf = transformers.AutoConfig.for_model(**config)
        return transformers.AutoModelForCausalLM.from_config(hf)


def layer_linears(model) -> list[dict[str, tuple[int, int, bool]]]:
    """Per decoder layer: {attribute name: (in, out, has bias)} of its nn.Linear modules."""
    out = []
    for layer in model.model.layers:
        out.append(
            {
                name.rsplit(".", 1)[-1]: (m.in_features, m.out_features, m.bias is not None)
                for name, m in layer.named_modules()
                if isinstance(m, torch.nn.Linear)
            }
        )
    return out


def check_against_transformers(spec, model) -> None:
    # Total parameters: parameters() yields a tied weight once, as ArchSpec.total_params counts it.
    assert sum(p.numel() for p in model.parameters()) == spec.total_params

    # Every layer has exactly the linears ArchSpec lists, with the same shapes and biases.
    expected = {m.name: (m.in_features, m.out_features, m.bias) for m in spec.layer_linears}
    per_layer = layer_linears(model)
    assert len(per_layer) == spec.num_layers
    for got in per_layer:
        assert got == expected

    # Norm (and other non-linear) parameters of one layer.
    layer0 = model.model.layers[0]
    linear_params = sum(
        p.numel() for m in layer0.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters()
    )
    assert sum(p.numel() for p in layer0.parameters()) - linear_params == spec.layer_norm_params

    # Embedding and output layer; a tied lm_head shares the embedding's tensor.
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert emb.numel() == spec.embedding_params
    assert (head is emb) == spec.tie_word_embeddings
    assert (0 if head is emb else head.numel()) == spec.lm_head_params
    assert model.get_output_embeddings().bias is None

    # peft's "all-linear": every nn.Linear but the output layer == every layer linear, in every layer.
    cfg = peft.LoraConfig(target_modules="all-linear", task_type="CAUSAL_LM")
    selected = peft.tuners.tuners_utils._maybe_include_all_linear_layers(cfg, model).target_modules
    leaf_counts = collections.Counter(name.rsplit(".", 1)[-1] for name in selected)
    assert leaf_counts == {m.name: spec.num_layers for m in spec.layer_linears}

    # Attention implementation transformers resolves when none is requested (no device check involved).
    assert model.config._attn_implementation == spec.default_attn


# ---- (a) every registry model against transformers ------------------------------------------------


FORMULA_ENTRIES = [
    e for e in ENTRIES if e.config["model_type"] in SUPPORTED_MODEL_TYPES
]  # the others: test_from_model


@pytest.mark.parametrize("entry", FORMULA_ENTRIES, ids=[e.name for e in FORMULA_ENTRIES])
def test_registry_model_matches_transformers(entry):
    spec = resolve_model(entry.name)
    check_against_transformers(spec, build_meta(entry.config))


PUBLISHED = {  # total parameter counts published by the model authors / the Hub's safetensors metadata
    "mistral-7b": 7_241_732_096,
    "llama-3-8b": 8_030_261_248,
    "qwen2.5-0.5b": 494_032_768,
    "phi-3-mini": 3_821_079_552,
    "gemma-2-2b": 2_614_341_888,
    "tinyllama-1.1b": 1_100_048_384,
    "smollm2-135m": 134_515_008,
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_parameter_counts(name):
    assert resolve_model(name).total_params == PUBLISHED[name]


def test_registry_shape():
    names = [e.name for e in ENTRIES]
    assert len(names) == len(set(names)) == len(REGISTRY)
    for required in (
        "mistral-7b", "mistral-7b-v0.3", "llama-2-7b", "llama-2-13b", "llama-3-8b", "llama-3.1-8b",
        "llama-3.2-1b", "llama-3.2-3b", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b",
        "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "phi-3-mini", "phi-3.5-mini", "gemma-2-2b",
        "gemma-2-9b", "tinyllama-1.1b", "smollm2-135m", "smollm2-360m", "smollm2-1.7b",
    ):  # fmt: skip
        assert required in REGISTRY
    assert resolve_model("mistral-7b-v0.3").vocab_size == 32768
    assert [s.name for s in list_models()] == names
    for e in ENTRIES:
        assert e.source == f"https://huggingface.co/{e.hf_id}/blob/main/config.json"


# ---- every supported model_type, tiny configs, defaults and biases against transformers -----------

TINY = {
    "vocab_size": 32128, "hidden_size": 64,  # above Phi-3's default pad_token_id (32000)
    "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 32,
}  # fmt: skip


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_minimal_config_uses_transformers_defaults(model_type):
    # Only the required keys: head_dim, KV heads and tying come from each config class's defaults.
    config = {"model_type": model_type, **TINY}
    check_against_transformers(from_hf_config(config, "tiny"), build_meta(config))


@pytest.mark.parametrize(
    "model_type,extra",
    [
        ("llama", {"attention_bias": True, "mlp_bias": True, "num_key_value_heads": 8, "head_dim": 16}),
        ("qwen2", {"num_key_value_heads": 4, "tie_word_embeddings": True}),
        ("qwen3", {"attention_bias": True, "num_key_value_heads": 8, "head_dim": 8}),
        ("phi3", {"num_key_value_heads": 8}),
        ("gemma", {"attention_bias": True, "num_key_value_heads": 1, "head_dim": 16}),
        ("gemma2", {"attention_bias": True, "num_key_value_heads": 2, "tie_word_embeddings": False}),
        ("mistral", {"head_dim": None}),  # null head_dim: hidden/heads
    ],
)
def test_biases_and_explicit_fields_match_transformers(model_type, extra):
    config = {"model_type": model_type, **TINY, **extra}
    check_against_transformers(from_hf_config(config, "tiny"), build_meta(config))


def test_mapping_details():
    qwen2 = resolve_model("qwen2.5-0.5b")
    assert [(m.name, m.bias) for m in qwen2.layer_linears][:4] == [
        ("q_proj", True), ("k_proj", True), ("v_proj", True), ("o_proj", False),
    ]  # fmt: skip
    assert qwen2.sliding_window is None  # use_sliding_window is false
    assert resolve_model("mistral-7b").sliding_window == 4096
    assert resolve_model("qwen3-0.6b").qk_norm and resolve_model("qwen3-0.6b").head_dim == 128
    gemma = resolve_model("gemma-2-2b")
    assert (gemma.norms_per_layer, gemma.final_logit_softcapping, gemma.attn_logit_softcapping) == (
        4,
        30.0,
        50.0,
    )
    assert gemma.hidden_act == "gelu_pytorch_tanh" and gemma.default_attn == "eager"
    assert resolve_model("phi-3-mini").linear_by_name["qkv_proj"].out_features == 3 * 3072


# ---- (b) resolution and errors ---------------------------------------------------------------------


def test_resolve_by_name_alias_and_hub_id_is_cached():
    spec = resolve_model("mistral-7b")
    assert resolve_model("Mistral-7B-v0.1") is spec
    assert resolve_model("mistralai/Mistral-7B-v0.1") is spec  # a registry hub id resolves offline
    assert spec.family == "Mistral" and spec.hf_config["vocab_size"] == 32000


def test_resolve_local_config_file_and_folder(tmp_path):
    config = dict(REGISTRY["smollm2-135m"].config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    by_file = resolve_model(str(tmp_path / "config.json"))
    by_folder = resolve_model(str(tmp_path))
    assert by_file.total_params == by_folder.total_params == 134_515_008
    assert by_folder.source == str(tmp_path / "config.json")


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "model_type": "llama",\n  "hidden_size": 64,,\n}\n')
    with pytest.raises(InputError, match=r"config\.json: not valid JSON \(.* at line 3, column 21\)"):
        resolve_model(str(path))


def test_folder_without_config(tmp_path):
    with pytest.raises(InputError, match="has no config.json.*registry name"):
        resolve_model(str(tmp_path))


def test_unknown_model_suggests_registry_names():
    with pytest.raises(InputError, match=r"--model: unknown model 'mistral-7' \(did you mean: mistral-7b"):
        resolve_model("mistral-7")
    with pytest.raises(InputError, match="no such file or folder"):
        resolve_model("./missing/config.json")


def test_unsupported_model_type(tmp_path):
    path = tmp_path / "config.json"
    # types outside the built-in families are read from the model (tests/test_from_model.py); remote code is not run
    path.write_text(json.dumps({"model_type": "my_model", "auto_map": {"AutoConfig": "x.Config"}}))
    with pytest.raises(InputError, match=r"model_type 'my_model' is remote code .*vramfit probe"):
        resolve_model(str(path))


@pytest.mark.parametrize(
    "change,match",
    [
        ({"hidden_size": None}, r"field 'hidden_size' must be a positive integer, got None"),
        ({"hidden_size": "4096"}, r"field 'hidden_size' must be a positive integer, got '4096'"),
        ({"num_hidden_layers": 0}, r"field 'num_hidden_layers' must be a positive integer"),
        ({"tie_word_embeddings": "yes"}, r"field 'tie_word_embeddings' must be true or false"),
        (
            {"num_key_value_heads": 5},
            r"tiny: num_attention_heads \(32\) is not a multiple of num_key_value_heads \(5\)",
        ),
        ({"torch_dtype": "float8"}, r"field 'torch_dtype' must be one of bfloat16"),
    ],
)
def test_ill_typed_fields(change, match):
    config = {"model_type": "llama", **TINY, **change}
    with pytest.raises(InputError, match=r"cfg\.json: " + match):
        from_hf_config(config, "tiny", source="cfg.json")


def test_missing_field_named():
    config = {"model_type": "qwen2", **TINY}
    del config["vocab_size"]
    with pytest.raises(InputError, match=r"field 'vocab_size' is missing"):
        from_hf_config(config, "tiny")


@pytest.fixture
def empty_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf"


def test_hub_id_offline_and_not_cached(empty_hf_home):
    with pytest.raises(
        InputError, match=r"'someorg/some-model' is not in the local Hugging Face cache .*HF_HUB_OFFLINE"
    ):
        resolve_model("someorg/some-model")


def test_hub_id_unreachable_hub_fails_fast(empty_hf_home, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    with pytest.raises(
        InputError, match=r"could not be fetched: http://127.0.0.1:9 is unreachable \(offline\?\)"
    ):
        resolve_model("someorg/some-model")


def test_hub_id_read_from_local_cache(empty_hf_home):
    # The layout huggingface_hub writes: refs/main holds the commit, snapshots/<commit>/config.json.
    repo = empty_hf_home / "hub" / "models--someorg--tiny-llama"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "config.json").write_text(json.dumps({"model_type": "llama", **TINY}))
    spec = resolve_model("someorg/tiny-llama")
    assert spec.name == "someorg/tiny-llama" and spec.hidden_size == 64


def test_registry_resolution_imports_nothing_heavy():
    code = (
        "import sys, time; t = time.perf_counter(); from vramfit.models import resolve_model; "
        "s = resolve_model('llama-3.2-1b'); "
        "assert not {'torch', 'transformers', 'huggingface_hub', 'rich'} & set(sys.modules), sys.modules.keys(); "
        "print(s.total_params)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True
    )
    assert out.stdout.strip() == "1235814400"


# ---- (c) the CLI -----------------------------------------------------------------------------------


def test_cli_models_table(capsys):
    from vramfit.cli.main import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert name in out
    assert "7.24B" in out and "135M" in out and "eager" in out
    assert "phi-3-mini, phi-3.5-mini, phi-4-mini: qkv_proj,o_proj,gate_up_proj,down_proj" in out


def test_cli_models_help_has_example(capsys):
    from vramfit.cli.main import main

    assert main(["models", "--help"]) == 0  # main returns argparse's exit code instead of raising
    assert "examples:\n  vramfit models" in capsys.readouterr().out


def test_cli_models_json(capsys):
    from vramfit.cli.main import main

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(REGISTRY)
    by_name = {r["name"]: r for r in rows}
    assert by_name["phi-3-mini"]["total_params"] == 3_821_079_552
    assert by_name["phi-3-mini"]["lora_targets"] == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert by_name["mistral-7b"]["hf_id"] == "mistralai/Mistral-7B-v0.1"
    assert by_name["mistral-7b"]["aliases"] == ["mistral-7b-v0.1"]
