"""``vramfit plan --emit``: each target's output fed to its own tool's parser where it installs on a CPU
(transformers' TrainingArguments and the whole recipe; trl's SFTConfig when trl is installed), and
axolotl / LLaMA-Factory YAML checked against the keys of their schemas, read from their source
(tests/fixtures/tool_config_keys.json, written by scripts/extract_config_keys.py, commits inside)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import warnings
from pathlib import Path

import pytest

from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.models import from_hf_config, resolve_model
from vramfit.plan.emit import TARGETS, emit, stack_fields

yaml = pytest.importorskip("yaml")
KEYS = json.loads((Path(__file__).parent / "fixtures" / "tool_config_keys.json").read_text())
TINY = dict(model_type="llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            tie_word_embeddings=False, torch_dtype="bfloat16")  # fmt: skip
SPEC = from_hf_config(TINY, name="tiny-llama")
CONFIGS = [
    TrainConfig(seq_len=1024),
    TrainConfig(
        method="lora", optimizer="adamw_torch", targets=("all-linear",), gradient_checkpointing=False
    ),
    TrainConfig(loss="liger", quant="fp4", double_quant=False, rank=64),
    TrainConfig(method="full", quant="none", optimizer="adamw_8bit", compute_dtype="fp16", load_dtype="fp32"),
]


def _on_cpu(code: str) -> str:
    """The one change a CPU needs: TrainingArguments refuses bf16 / fp16 without a GPU unless use_cpu."""
    return code.replace('    output_dir="out",', '    output_dir="out", use_cpu=True,')


def _tiny_from_pretrained(monkeypatch):
    """from_pretrained builds the tiny model from its config (random weights, no network), quantized
    through bitsandbytes' CPU backend when the code asks for it."""
    import transformers

    def from_pretrained(_id, **kw):
        return (
            transformers.AutoModelForCausalLM.from_config(
                transformers.LlamaConfig(**TINY),
                **{k: v for k, v in kw.items() if k in ("dtype", "attn_implementation")},
            )
            if "quantization_config" not in kw
            else _quantized(kw)
        )

    def _quantized(kw):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY)).save_pretrained(d)
            return real(d, **kw)

    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_transformers_code_runs_without_deprecation_warnings(cfg, monkeypatch):
    _tiny_from_pretrained(monkeypatch)
    code = emit("transformers", SPEC, cfg)
    ns: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(_on_cpu(code), "<emitted>", "exec"), ns)  # noqa: S102 - the code vramfit prints, run as a user would
    # what is said about the emitted code's own calls and arguments (warned at the call, or by
    # TrainingArguments' checks); what libraries call inside (peft reading is_gradient_checkpointing) is theirs
    deprecated = [
        f"{w.filename}: {w.message}"
        for w in caught
        if "deprecat" in str(w.message).lower()
        and (w.filename == "<emitted>" or "training_args" in w.filename)
    ]
    assert deprecated == []
    args = ns["training_args"]
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (
        cfg.batch_size,
        cfg.grad_accum,
    )
    assert args.optim == cfg.optimizer and ns["max_seq_length"] == cfg.seq_len
    model = ns["model"]
    on = getattr(model, "is_activation_checkpointing", None)
    assert (on if on is not None else model.is_gradient_checkpointing) == cfg.gradient_checkpointing
    assert bool(getattr(args, "use_liger_kernel", False)) == (cfg.resolved_loss == "liger")


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl not installed")
@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(trainer="trl", seq_len=768),
        TrainConfig(trainer="trl", gradient_checkpointing=False),
        TrainConfig(trainer="trl", padding_free=True, batch_size=4),
    ],
)
def test_trl_code_gives_an_sft_config_with_max_length(cfg, monkeypatch):
    _tiny_from_pretrained(monkeypatch)
    code = emit("trl", SPEC, cfg)
    ns: dict = {}
    exec(compile(_on_cpu(code.split("trainer = SFTTrainer(")[0]), "<emitted>", "exec"), ns)  # noqa: S102
    args = ns["training_args"]
    assert args.max_length == cfg.seq_len and args.gradient_checkpointing == cfg.gradient_checkpointing
    assert args.packing == cfg.padding_free  # bfd packing: padding-free rows
    assert "peft_config=peft_config" in code and "max_seq_length" not in code


def _training_argument_names() -> set[str]:
    from transformers import Seq2SeqTrainingArguments

    return {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}


@pytest.mark.parametrize("cfg", CONFIGS)
def test_axolotl_yaml_uses_its_schema_keys(cfg):
    d = yaml.safe_load(emit("axolotl", resolve_model("llama-3.2-1b"), cfg))
    assert set(d) <= set(KEYS["axolotl"]["keys"])
    assert d["base_model"] == "meta-llama/Llama-3.2-1B" and d["sequence_len"] == cfg.seq_len
    assert d["micro_batch_size"] == cfg.batch_size
    if cfg.uses_lora:
        assert d["adapter"] == ("qlora" if cfg.is_4bit else "lora") and d["lora_r"] == cfg.rank
    else:
        assert "adapter" not in d
    assert d.get("load_in_4bit", False) == cfg.is_4bit
    assert d.get("liger_fused_linear_cross_entropy", False) == (cfg.resolved_loss == "liger")


@pytest.mark.parametrize("cfg", CONFIGS)
def test_llamafactory_yaml_uses_its_argument_names(cfg):
    d = yaml.safe_load(emit("llamafactory", resolve_model("llama-3.2-1b"), cfg))
    assert set(d) <= set(KEYS["llamafactory"]["keys"]) | _training_argument_names()
    assert d["model_name_or_path"] == "meta-llama/Llama-3.2-1B" and d["cutoff_len"] == cfg.seq_len
    assert d["finetuning_type"] == ("lora" if cfg.uses_lora else "full")
    assert d.get("quantization_bit") == (4 if cfg.is_4bit else None)
    assert d["use_reentrant_gc"] is False  # LLaMA-Factory's default is true; vramfit models non-reentrant
    if cfg.uses_lora:
        assert d["lora_rank"] == cfg.rank


def test_each_target_implies_its_stack_and_keeps_what_the_user_gave():
    assert stack_fields("trl", {})["trainer"] == "trl"
    assert stack_fields("llamafactory", {}) == {"trainer": "hf", "kbit_upcast": False}
    assert stack_fields("llamafactory", {"kbit_upcast": True})["kbit_upcast"] is True
    assert set(TARGETS) == {"transformers", "trl", "axolotl", "llamafactory"}
    with pytest.raises(InputError, match="--emit"):
        emit("unsloth", SPEC, TrainConfig())


def test_plan_emit_cli(capsys):
    from vramfit.cli.main import main

    assert (
        main(["plan", "--model", "llama-3.2-1b", "--vram", "8GB", "--seq-len", "1024", "--emit", "trl"]) == 0
    )
    out = capsys.readouterr().out
    assert "SFTConfig(" in out and "max_length=" in out
    assert (
        main(["plan", "--model", "llama-3.2-1b", "--vram", "8GB", "--method", "qlora", "--emit", "axolotl"])
        == 0
    )
    d = yaml.safe_load(capsys.readouterr().out)
    assert {"base_model", "adapter", "load_in_4bit", "lora_r", "sequence_len", "micro_batch_size"} <= set(d)
