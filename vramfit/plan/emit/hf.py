"""transformers' Trainer: the reference recipe (see README) with the planned values.

Gradient checkpointing is switched on on the model, not through ``TrainingArguments``: transformers 5.24
deprecates ``TrainingArguments(gradient_checkpointing=...)`` for ``activation_checkpointing=...``, which
5.17 (the measured stack) does not accept; ``model.activation_checkpointing_enable`` likewise replaces
``gradient_checkpointing_enable``. The lines below run without a warning on both.
"""

from __future__ import annotations

from vramfit.config import TrainConfig
from vramfit.models.spec import ArchSpec
from vramfit.plan.emit.common import load_lines, lora_lines

LIGER_ARGS = (
    "    use_liger_kernel=True,  # Liger's fused linear cross-entropy only (its layer kernels change activations)",
    '    liger_kernel_config={"fused_linear_cross_entropy": True, "rope": False, "rms_norm": False, '
    '"swiglu": False, "geglu": False, "cross_entropy": False, "layer_norm": False},',
)


def checkpointing_lines(cfg: TrainConfig) -> list[str]:
    """Enable checkpointing on the model (both names of the method) and inputs that require grad."""
    if not cfg.gradient_checkpointing:
        return []
    lines = [
        "# checkpointing on the model: the same on transformers 5.17 and 5.24 (no deprecated argument)",
        'enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable',
        "enable()  # non-reentrant: transformers' default from 5.0",
    ]
    if cfg.uses_lora:
        lines.append("model.enable_input_require_grads()  # checkpointed layers of a frozen base need it")
    return lines


def prepare_lines(cfg: TrainConfig) -> list[str]:
    if cfg.is_kbit and cfg.kbit_upcast:
        return ["model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)"]
    if cfg.is_kbit:
        return ["# no prepare_model_for_kbit_training: it would cast the unquantized weights to fp32"]
    return []


def precision_arg(cfg: TrainConfig) -> list[str]:
    return {"bf16": ["    bf16=True,"], "fp16": ["    fp16=True,"]}.get(cfg.compute_dtype, [])


def hf_code(arch: ArchSpec, cfg: TrainConfig, attn: str) -> str:
    imports = (
        ["AutoModelForCausalLM"] + (["BitsAndBytesConfig"] if cfg.is_kbit else []) + ["TrainingArguments"]
    )
    lines = ["import torch", f"from transformers import {', '.join(imports)}"]
    if cfg.uses_lora:
        kbit = ["prepare_model_for_kbit_training"] if cfg.is_kbit and cfg.kbit_upcast else []
        lines.append(f"from peft import {', '.join(['LoraConfig', 'get_peft_model', *kbit])}")
    lines += ["", *load_lines(arch, cfg, attn), *prepare_lines(cfg), *checkpointing_lines(cfg)]
    if cfg.uses_lora:
        lines += [*lora_lines(arch, cfg), "model = get_peft_model(model, lora_config)"]
    lines += [
        "training_args = TrainingArguments(",
        '    output_dir="out",',
        f"    per_device_train_batch_size={cfg.batch_size!r},",
        f"    gradient_accumulation_steps={cfg.grad_accum!r},",
        f"    optim={cfg.optimizer!r},",
        *precision_arg(cfg),
        *(LIGER_ARGS if cfg.resolved_loss == "liger" else ()),
        ")",
        f"# every training example: {cfg.seq_len} tokens (tokenize with truncation=True, max_length={cfg.seq_len})",
        f"max_seq_length = {cfg.seq_len!r}",
    ]
    return "\n".join(lines) + "\n"
