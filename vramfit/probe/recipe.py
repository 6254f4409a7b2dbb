"""The reference recipe (docs/ARCHITECTURE.md) around a built model: kbit preparation, LoRA, Trainer arguments, data.

Every call here is what the seeds' recipe does; where vramfit adds something (synthetic batches,
``enable_input_require_grads`` for plain LoRA with checkpointing) the comment says why.
"""

from __future__ import annotations

from vramfit.catalog import DTYPES
from vramfit.config import TrainConfig
from vramfit.estimate.adapters import resolve_targets
from vramfit.models.spec import ArchSpec


def prepare_model(model, spec: ArchSpec, cfg: TrainConfig):
    """prepare_model_for_kbit_training (k-bit bases) and get_peft_model (LoRA methods), as the recipe does."""
    if cfg.is_kbit:
        from peft import prepare_model_for_kbit_training

        if cfg.kbit_upcast:
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=cfg.gradient_checkpointing
            )
        else:
            # --no-kbit-upcast: everything prepare_model_for_kbit_training does except the fp32 cast of the
            # non-quantized weights (peft utils/other.py): freeze the base, inputs that require grad.
            for p in model.parameters():
                p.requires_grad_(False)
            if cfg.gradient_checkpointing:
                model.enable_input_require_grads()
                model.gradient_checkpointing_enable()
    if cfg.uses_lora:
        from peft import LoraConfig, get_peft_model

        if cfg.gradient_checkpointing and not cfg.is_kbit:
            # NOTE: a frozen embedding gives checkpointed layers inputs without grad; this is what
            # prepare_model_for_kbit_training does for k-bit bases, and what LoRA recipes add by hand.
            model.enable_input_require_grads()
        lora = LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.resolved_alpha,
            target_modules=[m.name for m in resolve_targets(spec, cfg.targets)],
            lora_dropout=cfg.dropout,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    return model


def checkpointing_argument(args_class, on: bool) -> dict:
    """Gradient checkpointing as ``args_class`` (TrainingArguments or a subclass such as TRL's SFTConfig)
    names it: ``activation_checkpointing`` where it is a field (transformers 5.24, which warns on
    ``gradient_checkpointing=``, now its deprecated alias), else ``gradient_checkpointing`` (5.17, the
    measured stack). Either way the Trainer enables checkpointing on the model the same way."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(args_class)}
    return {
        "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on
    }


def training_arguments(cfg: TrainConfig, steps: int, output_dir: str, device: str):
    from transformers import TrainingArguments

    flag = DTYPES[cfg.compute_dtype].trainer_flag  # bf16=True / fp16=True: mixed precision
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        **({flag: True} if flag else {}),
        optim=cfg.optimizer,
        **checkpointing_argument(TrainingArguments, cfg.gradient_checkpointing),
        max_steps=steps,
        learning_rate=2e-4,
        lr_scheduler_type="constant",
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=True,
        use_cpu=device == "cpu",
        remove_unused_columns=False,
        seed=0,
    )


class SyntheticTokens:
    """``n`` full-length sequences of random token ids; labels = input ids (every token is trained)."""

    def __init__(self, n: int, seq_len: int, vocab_size: int, seed: int = 0) -> None:
        import torch

        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab_size, (n, seq_len), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        import torch

        ids = self.ids[i]
        return {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
