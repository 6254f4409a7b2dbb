"""The recommendation as code a person can paste: the reference recipe with the planned values filled in.

``python_code`` writes the ``BitsAndBytesConfig``, ``from_pretrained``, ``prepare_model_for_kbit_training``,
``LoraConfig`` and ``TrainingArguments`` calls of the recipe (see README); ``command_line`` writes the
equivalent ``vramfit estimate`` / ``vramfit probe`` command. Values are written with ``repr`` so that
what is printed is what was planned (tests compile the code and read the values back).
"""

from __future__ import annotations

import os
import shlex

from vramfit.config import TrainConfig
from vramfit.estimate.adapters import resolve_targets
from vramfit.models.spec import ArchSpec

TORCH_DTYPE = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32"}


def model_id(arch: ArchSpec) -> str:
    """What ``from_pretrained`` takes: the hub id of a registry model, else the name or folder given."""
    from vramfit.models import REGISTRY

    entry = REGISTRY.get(arch.name)
    if entry is not None:
        return entry.hf_id
    if arch.name.endswith(".json"):
        return os.path.dirname(arch.name) or "."
    return arch.name


def lora_target_modules(arch: ArchSpec, cfg: TrainConfig) -> str | list[str]:
    """peft's ``target_modules``: "all-linear" as peft spells it, else the module names."""
    if cfg.targets == ("all-linear",):
        return "all-linear"
    return [m.name for m in resolve_targets(arch, cfg.targets)]


def python_code(arch: ArchSpec, cfg: TrainConfig, attn: str | None = None) -> str:
    """The training setup for ``cfg`` as a runnable Python snippet (the reference recipe)."""
    attn = attn or cfg.attn or arch.default_attn
    q = cfg.resolved_quant
    lines = ["import torch"]
    imports = (
        ["AutoModelForCausalLM"] + (["BitsAndBytesConfig"] if cfg.is_kbit else []) + ["TrainingArguments"]
    )
    lines.append(f"from transformers import {', '.join(imports)}")
    peft_names = []
    if cfg.uses_lora:
        peft_names = ["LoraConfig", "get_peft_model"] + (
            ["prepare_model_for_kbit_training"] if cfg.is_kbit and cfg.kbit_upcast else []
        )
        lines.append(f"from peft import {', '.join(peft_names)}")
    lines.append("")
    if cfg.is_4bit:
        lines += [
            "bnb_config = BitsAndBytesConfig(",
            "    load_in_4bit=True,",
            f"    bnb_4bit_quant_type={q!r},",
            f"    bnb_4bit_compute_dtype={TORCH_DTYPE[cfg.compute_dtype]},",
            f"    bnb_4bit_use_double_quant={cfg.double_quant!r},",
            ")",
        ]
    elif q == "int8":
        lines.append("bnb_config = BitsAndBytesConfig(load_in_8bit=True)")
    lines += [
        "model = AutoModelForCausalLM.from_pretrained(",
        f"    {model_id(arch)!r},",
    ]
    if cfg.is_kbit:
        lines.append("    quantization_config=bnb_config,")
    lines += [
        f"    dtype={TORCH_DTYPE[cfg.load_dtype]},  # torch_dtype= before transformers 4.56",
        f"    attn_implementation={attn!r},",
        ")",
        "model.config.use_cache = False  # the KV cache is useless in training and costs memory",
    ]
    if cfg.is_kbit and cfg.kbit_upcast:
        lines.append(
            "model = prepare_model_for_kbit_training("
            f"model, use_gradient_checkpointing={cfg.gradient_checkpointing!r})"
        )
    elif cfg.is_kbit:
        lines.append("# no prepare_model_for_kbit_training: it would cast the unquantized weights to fp32")
    if cfg.uses_lora and cfg.gradient_checkpointing and not (cfg.is_kbit and cfg.kbit_upcast):
        lines.append("model.enable_input_require_grads()  # checkpointed layers of a frozen base need it")
    if cfg.uses_lora:
        lines += [
            "lora_config = LoraConfig(",
            f"    r={cfg.rank!r},",
            f"    lora_alpha={_num(cfg.resolved_alpha)},",
            f"    target_modules={lora_target_modules(arch, cfg)!r},",
            f"    lora_dropout={cfg.dropout!r},",
            '    bias="none",',
            '    task_type="CAUSAL_LM",',
            ")",
            "model = get_peft_model(model, lora_config)",
        ]
    lines += [
        "training_args = TrainingArguments(",
        '    output_dir="out",',
        f"    per_device_train_batch_size={cfg.batch_size!r},",
        f"    gradient_accumulation_steps={cfg.grad_accum!r},",
        f"    gradient_checkpointing={cfg.gradient_checkpointing!r},",
        f"    optim={cfg.optimizer!r},",
    ]
    if cfg.compute_dtype == "bf16":
        lines.append("    bf16=True,")
    elif cfg.compute_dtype == "fp16":
        lines.append("    fp16=True,")
    lines += [
        ")",
        f"# every training example: {cfg.seq_len} tokens (tokenize with truncation=True, max_length={cfg.seq_len})",
        f"max_seq_length = {cfg.seq_len!r}",
    ]
    return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() else repr(float(x))


def config_flags(cfg: TrainConfig) -> list[str]:
    """Every configuration flag of ``cfg``, so the command does not depend on the defaults."""
    flags = ["--method", cfg.method, "--quant", cfg.resolved_quant]
    if cfg.is_4bit:
        flags.append("--double-quant" if cfg.double_quant else "--no-double-quant")
    flags += ["--load-dtype", cfg.load_dtype, "--compute-dtype", cfg.compute_dtype]
    if cfg.uses_lora:
        flags += ["--rank", str(cfg.rank), "--alpha", _num(cfg.resolved_alpha), "--dropout", repr(cfg.dropout),
                  "--targets", ",".join(cfg.targets)]  # fmt: skip
    flags += [
        "--seq-len", str(cfg.seq_len), "--batch-size", str(cfg.batch_size), "--grad-accum", str(cfg.grad_accum),
        "--gradient-checkpointing" if cfg.gradient_checkpointing else "--no-gradient-checkpointing",
        "--optimizer", cfg.optimizer,
    ]  # fmt: skip
    if cfg.attn:
        flags += ["--attn", cfg.attn]
    if cfg.is_kbit:
        flags.append("--kbit-upcast" if cfg.kbit_upcast else "--no-kbit-upcast")
    flags += ["--trainer", cfg.trainer, "--loss", cfg.resolved_loss] + (
        ["--padding-free"] if cfg.padding_free else []
    )
    return flags


def command_line(command: str, model: str, cfg: TrainConfig, card_flags: list[str]) -> str:
    """``vramfit estimate|probe --model ... <every config flag> <card flags>``, shell-quoted."""
    words = ["vramfit", command, "--model", model, *config_flags(cfg), *card_flags]
    return " ".join(shlex.quote(w) for w in words)
