"""TrainConfig: one training run, as the reference recipe (see README) would run it.

Defaults follow the QLoRA recipe vramfit grew from: NF4 with double quantization, bf16 compute,
LoRA r=16 / alpha=32 / dropout 0.05 on q_proj and v_proj, sequences of 512 tokens, micro-batch 1,
gradient checkpointing on, ``paged_adamw_8bit``. ``validate`` collects every problem and reports
them together, each naming the CLI flag it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from vramfit.catalog import ATTNS, DTYPES, METHODS, QUANTS, Attn, Dtype, Method, Quant
from vramfit.catalog.dtypes import DTYPE_ALIASES
from vramfit.errors import ConfigErrors, InputError, one_of
from vramfit.inputs import TRAIN_RANGES, check_number


@dataclass(frozen=True)
class TrainConfig:
    """One fine-tuning run. Field docs are the CLI help of the matching flag."""

    method: Method = "qlora"
    """qlora (4-bit base + LoRA), lora (16/32-bit or int8 base + LoRA) or full (all parameters)."""
    quant: Quant | None = None
    """Base-model quantization: nf4, fp4 (4-bit, QLoRA), int8 (LLM.int8, LoRA) or none. Default: nf4 for
    qlora, none otherwise."""
    double_quant: bool = True
    """Quantize the 4-bit absmax constants again (bnb_4bit_use_double_quant)."""
    load_dtype: Dtype = "bf16"
    """dtype of the weights bitsandbytes does not quantize (torch_dtype of from_pretrained)."""
    compute_dtype: Dtype = "bf16"
    """Mixed-precision compute dtype (bnb_4bit_compute_dtype and Trainer bf16/fp16)."""
    rank: int = 16
    """LoRA rank r."""
    alpha: float | None = None
    """LoRA alpha (default 2 x rank, as in the recipe). Does not change memory."""
    dropout: float = 0.05
    """LoRA dropout. Above 0 it keeps a dropout mask per adapted module for backward."""
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    """LoRA target modules: module names of the model, or all-linear, attention, mlp."""
    seq_len: int = 512
    """Tokens per sequence (every sequence is full length)."""
    batch_size: int = 1
    """Micro-batch: per_device_train_batch_size."""
    grad_accum: int = 1
    """gradient_accumulation_steps. Keeps gradients alive across micro-batches."""
    gradient_checkpointing: bool = True
    """Recompute each decoder layer in backward instead of keeping its activations."""
    optimizer: str = "paged_adamw_8bit"
    """TrainingArguments.optim name."""
    attn: Attn | None = None
    """Attention implementation: sdpa, eager, flash_attention_2 (default: what transformers picks)."""
    kbit_upcast: bool = True
    """prepare_model_for_kbit_training casts non-quantized bf16/fp16 weights to fp32 (peft default)."""
    trainer: str = "hf"
    """Who runs the steps: hf (transformers Trainer) or trl (trl SFTTrainer)."""
    padding_free: bool = False
    """TRL's padding_free=True (or packing=True with its default bfd strategy): each micro-batch is one row
    of batch x seq tokens; eager and sdpa attention then mask (tokens x tokens). --trainer trl only."""
    loss: str | None = None
    """The loss: full (whole logits), fused (TRL's tiled LM head) or liger (Liger-kernel's fused linear
    cross-entropy). Default: full for hf, fused for trl."""

    @property
    def resolved_quant(self) -> Quant:
        return self.quant if self.quant is not None else METHODS[self.method].quants[0]

    @property
    def resolved_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2 * self.rank

    @property
    def resolved_loss(self) -> str:
        from vramfit.trainers import resolved_loss

        return resolved_loss(self.trainer, self.loss)

    @property
    def uses_lora(self) -> bool:
        return METHODS[self.method].lora

    @property
    def is_4bit(self) -> bool:
        return QUANTS[self.resolved_quant].bits == 4

    @property
    def is_kbit(self) -> bool:
        """Loaded through bitsandbytes (so prepare_model_for_kbit_training applies)."""
        return QUANTS[self.resolved_quant].is_bnb

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum

    def with_(self, **changes) -> TrainConfig:
        return replace(self, **changes)

    def to_json(self) -> dict:
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        d["quant"] = self.resolved_quant
        d["alpha"] = self.resolved_alpha
        d["targets"] = list(self.targets)
        d["loss"] = self.resolved_loss if self.trainer in _trainers() else self.loss
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(
                "config", f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}"
            )
        d = dict(d)
        if "targets" in d:
            d["targets"] = tuple(d["targets"])
        return cls(**d)

    @classmethod
    def from_saved(cls, d: dict) -> TrainConfig:
        """The configuration of a saved result; fields this version does not know are left out."""
        return cls.from_json({k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def normalize_dtype(value: str, flag: str) -> Dtype:
    try:
        return DTYPE_ALIASES[str(value).lower()]
    except KeyError:
        raise one_of(flag, str(value), DTYPES) from None


def validate(cfg: TrainConfig, optimizers: tuple[str, ...]) -> TrainConfig:
    """Check a config on its own (model-independent); return it with dtypes normalized.

    Raises :class:`ConfigErrors` listing every problem, each naming its flag.
    """
    errors: list[InputError] = []
    changes: dict = {}
    if cfg.method not in METHODS:
        errors.append(one_of("--method", cfg.method, METHODS))
    elif cfg.quant is not None and cfg.quant not in QUANTS:
        errors.append(one_of("--quant", cfg.quant, QUANTS))
    elif cfg.resolved_quant not in METHODS[cfg.method].quants:
        m = METHODS[cfg.method]
        why = f"{cfg.resolved_quant} does not go with --method {cfg.method} ({m.why_not}); accepted: {', '.join(m.quants)}"
        errors.append(InputError("--quant", why))
    for flag, name in (("--load-dtype", "load_dtype"), ("--compute-dtype", "compute_dtype")):
        value = getattr(cfg, name)
        if value in DTYPES:
            continue
        try:
            changes[name] = normalize_dtype(value, flag)
        except InputError as e:
            errors.append(e)
    for name, r in TRAIN_RANGES.items():  # bounds of every number: vramfit.inputs
        v = getattr(cfg, name)
        if v is None and name == "alpha":
            continue
        try:
            check_number(v, r, "--" + name.replace("_", "-"))
        except InputError as e:
            errors.append(e)
    if cfg.optimizer not in optimizers:
        errors.append(one_of("--optimizer", cfg.optimizer, optimizers))
    if cfg.attn is not None and cfg.attn not in ATTNS:
        errors.append(one_of("--attn", cfg.attn, ATTNS))
    method_ok = cfg.method in METHODS and (cfg.quant is None or cfg.quant in QUANTS)
    if method_ok:  # the checks below read the method's and quantization's rows
        errors.extend(_trainer_errors(cfg))
    if method_ok and cfg.uses_lora and not cfg.targets:
        errors.append(InputError("--targets", "needs at least one module name (or all-linear)"))
    elif "all-linear" in cfg.targets and len(cfg.targets) > 1:
        errors.append(InputError("--targets", "all-linear already holds every linear module: give it alone"))
    if errors:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    return replace(cfg, **changes) if changes else cfg


def _trainers() -> dict:
    from vramfit.trainers import TRAINERS

    return TRAINERS


def _trainer_errors(cfg: TrainConfig) -> list[InputError]:
    """--trainer and --loss: known names, and a loss the trainer can run."""
    from vramfit.trainers import LOSS_NAMES, TRAINERS

    if cfg.trainer not in TRAINERS:
        return [one_of("--trainer", cfg.trainer, tuple(TRAINERS))]
    if cfg.padding_free and cfg.trainer != "trl":
        return [
            InputError(
                "--padding-free", "is a TRL collator option (packing / padding_free); use --trainer trl"
            )
        ]
    if cfg.loss is None:
        return []
    if cfg.loss not in LOSS_NAMES:
        return [one_of("--loss", cfg.loss, LOSS_NAMES)]
    ok = TRAINERS[cfg.trainer].losses
    if cfg.loss not in ok:
        return [
            InputError(
                "--loss", f"{cfg.loss} does not run with --trainer {cfg.trainer}; accepted: {', '.join(ok)}"
            )
        ]
    return []


DEFAULT = TrainConfig()

__all__ = ["TrainConfig", "validate", "normalize_dtype", "DEFAULT", "field"]
