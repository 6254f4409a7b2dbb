"""axolotl YAML (keys read in axolotl's src/axolotl/utils/schemas/: model.py base_model, peft.py adapter /
load_in_4bit / load_in_8bit / lora_* / bnb_config_kwargs, config.py sequence_len / gradient_checkpointing /
bf16 / fp16 / *_attention, training.py micro_batch_size / gradient_accumulation_steps / optimizer /
learning_rate / num_epochs; integrations/liger/args.py liger_fused_linear_cross_entropy).

axolotl's defaults that move memory: its 4-bit config is nf4 with double quantization
(loaders/model.py), it prepares k-bit models with prepare_model_for_kbit_training, and it turns on
``expandable_segments`` in PyTorch's allocator.
"""

from __future__ import annotations

from vramfit.config import TrainConfig
from vramfit.models.spec import ArchSpec
from vramfit.plan.emit.common import lora_target_modules, model_id, yaml_text

ATTENTION_KEY = {"sdpa": "sdp_attention", "eager": "eager_attention", "flash_attention_2": "flash_attention"}


def axolotl_yaml(arch: ArchSpec, cfg: TrainConfig, attn: str) -> str:
    model: dict = {"base_model": model_id(arch)}
    if cfg.is_4bit:
        model["load_in_4bit"] = True
        model["bnb_config_kwargs"] = {
            "bnb_4bit_quant_type": cfg.resolved_quant, "bnb_4bit_use_double_quant": cfg.double_quant,
        }  # fmt: skip
    elif cfg.resolved_quant == "int8":
        model["load_in_8bit"] = True
    method: dict = {}
    if cfg.uses_lora:
        method["adapter"] = "qlora" if cfg.is_4bit else "lora"
        method["lora_r"] = cfg.rank
        method["lora_alpha"] = int(cfg.resolved_alpha)  # axolotl's schema: lora_alpha: int
        method["lora_dropout"] = cfg.dropout
        targets = lora_target_modules(arch, cfg)
        if targets == "all-linear":
            method["lora_target_linear"] = True
        else:
            method["lora_target_modules"] = list(targets)
    train: dict = {
        "sequence_len": cfg.seq_len,
        "micro_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "optimizer": cfg.optimizer,
        ATTENTION_KEY[attn]: True,
        "num_epochs": 1,
        "learning_rate": 0.0002,
    }
    if cfg.compute_dtype in ("bf16", "fp16"):
        train[cfg.compute_dtype] = True
    sections = [("model", model), ("method", method), ("training", train)]
    if cfg.resolved_loss == "liger":
        sections.append(("loss", {
            "plugins": ["axolotl.integrations.liger.LigerPlugin"], "liger_fused_linear_cross_entropy": True,
        }))  # fmt: skip
    elif cfg.resolved_loss == "fused":
        sections.append(
            ("loss", {"#": "TRL's fused LM head is SFTTrainer's; axolotl's nearest is liger (--loss liger)"})
        )
    sections.append(
        ("data (yours)", {"datasets": [{"path": "your/dataset", "type": "alpaca"}], "output_dir": "./out"})
    )
    return yaml_text(sections)
