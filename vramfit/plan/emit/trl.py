"""trl's SFTTrainer (read in trl 1.16.0: trainer/sft_config.py, trainer/sft_trainer.py).

``max_length`` (default 1024) is the sequence length (``max_seq_length`` is gone); SFTTrainer's default
loss is its fused LM head (``loss_type="nll"``), and its base config turns gradient checkpointing on, so
only "off" is written (on transformers 5.24 that default itself warns about the deprecated name, from
trl's config, not from this code). SFTTrainer wraps the model with ``peft_config`` itself and does not
call ``prepare_model_for_kbit_training``: the recipe calls it first (``--no-kbit-upcast`` drops it).
"""

from __future__ import annotations

from vramfit.config import TrainConfig
from vramfit.models.spec import ArchSpec
from vramfit.plan.emit.common import load_lines, lora_lines
from vramfit.plan.emit.hf import precision_arg


def trl_code(arch: ArchSpec, cfg: TrainConfig, attn: str) -> str:
    imports = ["AutoModelForCausalLM"] + (["BitsAndBytesConfig"] if cfg.is_kbit else [])
    lines = [
        "import torch",
        f"from transformers import {', '.join(imports)}",
        "from trl import SFTConfig, SFTTrainer",
    ]
    if cfg.uses_lora:
        kbit = ["prepare_model_for_kbit_training"] if cfg.is_kbit and cfg.kbit_upcast else []
        lines.append(f"from peft import {', '.join(['LoraConfig', *kbit])}")
    lines += ["", *load_lines(arch, cfg, attn)]
    if cfg.is_kbit and cfg.kbit_upcast:
        lines.append("model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)")
    if cfg.uses_lora:
        lines += lora_lines(arch, cfg, "peft_config")
    lines += [
        "training_args = SFTConfig(",
        '    output_dir="out",',
        f"    max_length={cfg.seq_len!r},",
        f"    per_device_train_batch_size={cfg.batch_size!r},",
        f"    gradient_accumulation_steps={cfg.grad_accum!r},",
        f"    optim={cfg.optimizer!r},",
        *precision_arg(cfg),
        *([] if cfg.gradient_checkpointing else ["    gradient_checkpointing=False,"]),
        # packing (bfd, trl's default strategy) implies padding_free: one row of batch x max_length tokens
        *(["    packing=True,"] if cfg.padding_free else []),
        ")",
        "trainer = SFTTrainer(",
        "    model=model,",
        "    args=training_args,",
        "    train_dataset=train_dataset,  # yours",
        *(["    peft_config=peft_config,"] if cfg.uses_lora else []),
        ")",
    ]
    return "\n".join(lines) + "\n"
