"""The trainer of a probe run, per :mod:`vramfit.trainers`: transformers' Trainer (with Liger's fused linear
cross-entropy for ``--loss liger``) or TRL's SFTTrainer, around the recipe's prepared model.

TRL runs as a user runs it, with one difference that does not move memory: the synthetic batches are
already tokenized, so ``dataset_kwargs={"skip_prepare_dataset": True}`` skips its tokenizing ``map``
(the batches it collates are the same full-length sequences of ``recipe.SyntheticTokens``).
"""

from __future__ import annotations

from vramfit.config import TrainConfig
from vramfit.errors import InputError

# Liger's fused linear cross-entropy alone: its layer kernels (RMSNorm, SwiGLU, RoPE, ...) change the
# activations, which vramfit models as transformers computes them. _apply_liger_kernel_to_instance
# passes each model family only the keys its patch function takes.
LIGER_FLCE_ONLY = {
    "fused_linear_cross_entropy": True, "cross_entropy": False, "rope": False, "rms_norm": False,
    "swiglu": False, "geglu": False, "layer_norm": False,
}  # fmt: skip


def require(package: str, loss_or_trainer: str) -> None:
    """A missing trainer-stack package is an input error naming the flag, not an ImportError."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        flag = "--trainer" if loss_or_trainer == "trl" else "--loss"
        pip = {"trl": "trl", "liger_kernel": "liger-kernel"}[package]
        raise InputError(flag, f"{loss_or_trainer} needs the {package} package: pip install {pip}")


def synthetic_tokenizer(vocab_size: int):
    """A fast tokenizer over ``vocab_size`` ids (SFTTrainer needs a processing class; no network here)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(WordLevel(vocab, unk_token="t0"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t0", eos_token="t1")


def as_hf_dataset(data):
    """``data`` as a ``datasets.Dataset`` (SFTTrainer takes no other), input ids only: SFTTrainer's collator
    makes the labels. The fingerprint is given: hashing the table with dill fails on some pyarrow / dill
    pairs ("Can't pickle <class 'MonthDayNano'>": datasets 5.1-5.2 with pyarrow 24-26), and nothing here
    is cached."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    table = InMemoryTable.from_pydict({"input_ids": data.ids.tolist()})
    return Dataset(table, fingerprint="vramfit-synthetic-tokens")


def _common(cfg: TrainConfig, steps: int, output_dir: str, device: str) -> dict:
    return dict(
        output_dir=output_dir, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, bf16=cfg.compute_dtype == "bf16",
        fp16=cfg.compute_dtype == "fp16", optim=cfg.optimizer, max_steps=steps, learning_rate=2e-4,
        lr_scheduler_type="constant", report_to=[], save_strategy="no", eval_strategy="no",
        logging_strategy="no", dataloader_num_workers=0, dataloader_pin_memory=False, disable_tqdm=True,
        use_cpu=device == "cpu", remove_unused_columns=False, seed=0,
    )  # fmt: skip


def build_trainer(model, cfg: TrainConfig, data, steps: int, output_dir: str, device: str, callbacks: list):
    """The trainer of ``cfg.trainer`` with ``cfg.resolved_loss``, ready to ``train()``."""
    loss = cfg.resolved_loss
    if cfg.trainer == "trl":
        require("trl", "trl")
        from trl import SFTConfig, SFTTrainer

        from vramfit.probe.recipe import checkpointing_argument

        args = SFTConfig(
            **_common(cfg, steps, output_dir, device),
            **checkpointing_argument(SFTConfig, cfg.gradient_checkpointing),
            # padding-free without packing refuses max_length (it is not enforced); the rows are full already
            max_length=None if cfg.padding_free else cfg.seq_len, packing=False, padding_free=cfg.padding_free,
            dataset_kwargs={"skip_prepare_dataset": True},
        )  # fmt: skip
        tok = synthetic_tokenizer(model.config.get_text_config().vocab_size)
        return SFTTrainer(model=model, args=args, train_dataset=as_hf_dataset(data), processing_class=tok,
                          callbacks=callbacks)  # fmt: skip
    from transformers import Trainer, default_data_collator

    from vramfit.probe.recipe import training_arguments

    args = training_arguments(cfg, steps, output_dir, device)
    if loss == "liger":
        require("liger_kernel", "liger")
        args.use_liger_kernel = True
        args.liger_kernel_config = dict(LIGER_FLCE_ONLY)
    return Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator,
                   callbacks=callbacks)  # fmt: skip
