"""The reference recipe (docs/ARCHITECTURE.md) around a built model: kbit preparation, LoRA, Trainer arguments, data.

Every call here is what the seeds' recipe does; where vramfit adds something (synthetic batches,
``enable_input_require_grads`` for plain LoRA with checkpointing) the comment says why.
"""

from __future__ import annotations

from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.models.spec import ArchSpec


def expand_targets(spec: ArchSpec, targets: tuple[str, ...]) -> list[str]:
    """LoRA target module names of ``spec`` for ``--targets`` (module names or all-linear / attention / mlp)."""
    names: list[str] = []
    for t in targets:
        if t == "all-linear":
            chosen = [m.name for m in spec.layer_linears]
        elif t in ("attention", "mlp"):
            chosen = [m.name for m in spec.layer_linears if m.kind == t]
        elif t in spec.linear_by_name:
            chosen = [t]
        else:
            from vramfit.errors import one_of

            raise one_of("--targets", t, spec.lora_target_names)
        names += [n for n in chosen if n not in names]
    return names


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
            target_modules=expand_targets(spec, cfg.targets),
            lora_dropout=cfg.dropout,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    return model


def training_arguments(cfg: TrainConfig, steps: int, output_dir: str, device: str):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        bf16=cfg.compute_dtype == "bf16",
        fp16=cfg.compute_dtype == "fp16",
        optim=cfg.optimizer,
        gradient_checkpointing=cfg.gradient_checkpointing,
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


def check_card_dtypes(cfg: TrainConfig, supports_bf16: bool, supports_4bit: bool = True,
                      supports_int8: bool = True, card: str = "this GPU") -> None:  # fmt: skip
    """A card that cannot run the requested dtype or quantization is an input error, not a crash."""
    if "bf16" in (cfg.compute_dtype, cfg.load_dtype) and not supports_bf16:
        flag = "--compute-dtype" if cfg.compute_dtype == "bf16" else "--load-dtype"
        raise InputError(flag, f"{card} cannot compute in bf16 (needs compute capability 8.0+); use fp16")
    if cfg.is_4bit and not supports_4bit:
        raise InputError(
            "--quant", f"{card} cannot run bitsandbytes 4-bit ({cfg.resolved_quant}); accepted here: none"
        )
    if cfg.resolved_quant == "int8" and not supports_int8:
        raise InputError(
            "--quant", f"{card} cannot run LLM.int8 (needs compute capability 7.5+); use nf4 or none"
        )
