"""LLaMA-Factory YAML for ``llamafactory-cli train`` (keys read in src/llamafactory/hparams/: model_args.py
model_name_or_path / quantization_bit / quantization_method / quantization_type / double_quantization /
flash_attn / enable_liger_kernel / use_reentrant_gc / disable_gradient_checkpointing, finetuning_args.py
stage / finetuning_type / lora_rank / lora_alpha / lora_dropout / lora_target, data_args.py cutoff_len;
the rest are transformers' TrainingArguments).

LLaMA-Factory's defaults that move memory: gradient checkpointing on, reentrant (``use_reentrant_gc: true``;
written here as false, the non-reentrant checkpointing vramfit models and measured), and no
prepare_model_for_kbit_training: only ``upcast_layernorm`` casts the norms to fp32, embeddings and lm_head
stay in the load dtype, so its memory is ``vramfit estimate ... --no-kbit-upcast``.
"""

from __future__ import annotations

from vramfit.config import TrainConfig
from vramfit.models.spec import ArchSpec
from vramfit.plan.emit.common import lora_target_modules, model_id, yaml_text

FLASH_ATTN = {"sdpa": "sdpa", "eager": "disabled", "flash_attention_2": "fa2"}


def llamafactory_yaml(arch: ArchSpec, cfg: TrainConfig, attn: str) -> str:
    model: dict = {"model_name_or_path": model_id(arch)}
    if cfg.is_kbit:
        model["quantization_bit"] = 4 if cfg.is_4bit else 8
        model["quantization_method"] = "bnb"
        if cfg.is_4bit:
            model["quantization_type"] = cfg.resolved_quant
            model["double_quantization"] = cfg.double_quant
        if cfg.kbit_upcast:
            model["#"] = (
                "LLaMA-Factory does not upcast embeddings / lm_head: plan with --no-kbit-upcast to match"
            )
    model["flash_attn"] = FLASH_ATTN[attn]
    model["use_reentrant_gc"] = False
    if not cfg.gradient_checkpointing:
        model["disable_gradient_checkpointing"] = True
    if cfg.resolved_loss == "liger":
        model["enable_liger_kernel"] = True  # LLaMA-Factory applies all of Liger's kernels, not only the loss
    method: dict = {"stage": "sft", "do_train": True, "finetuning_type": "lora" if cfg.uses_lora else "full"}
    if cfg.uses_lora:
        targets = lora_target_modules(arch, cfg)
        method.update(lora_rank=cfg.rank, lora_alpha=int(cfg.resolved_alpha), lora_dropout=cfg.dropout,
                      lora_target="all" if targets == "all-linear" else ",".join(targets))  # fmt: skip
    data = {"dataset": "your_dataset", "template": "default", "cutoff_len": cfg.seq_len}
    train: dict = {
        "output_dir": "out",
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "optim": cfg.optimizer,
        "learning_rate": 0.0002,
        "num_train_epochs": 1.0,
    }
    if cfg.compute_dtype in ("bf16", "fp16"):
        train[cfg.compute_dtype] = True
    return yaml_text([("model", model), ("method", method), ("dataset", data), ("train", train)])
