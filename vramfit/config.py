"""TrainConfig: one training run, as the reference recipe (see README) would run it.

Defaults follow the QLoRA recipe vramfit grew from: NF4 with double quantization, bf16 compute,
LoRA r=16 / alpha=32 / dropout 0.05 on q_proj and v_proj, sequences of 512 tokens, micro-batch 1,
gradient checkpointing on, ``paged_adamw_8bit``. ``validate`` collects every problem and reports
them together, each naming the CLI flag it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from vramfit.errors import ConfigErrors, InputError, one_of
from vramfit.inputs import TRAIN_RANGES, check_number

METHODS = ("qlora", "lora", "full")
QUANTS = ("nf4", "fp4", "int8", "none")
DTYPES = ("bf16", "fp16", "fp32")
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
# Accepted spellings of dtypes (config.json says "bfloat16", people type "bfloat16" or "bf16").
DTYPE_ALIASES = {
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
    "fp32": "fp32", "float32": "fp32", "float": "fp32",
}  # fmt: skip

# Which quantizations each method accepts; the first is its default.
METHOD_QUANTS = {
    "qlora": ("nf4", "fp4"),  # QLoRA = LoRA on a 4-bit base (Dettmers et al. 2023)
    "lora": ("none", "int8"),  # plain LoRA on a 16/32-bit base, or on an LLM.int8 base
    "full": ("none",),  # bitsandbytes cannot train quantized weights
}


# How the output names a method on a base: "LoRA on an int8 base", not "lora int8".
METHOD_LABELS = {
    ("qlora", "nf4"): "QLoRA on an nf4 base", ("qlora", "fp4"): "QLoRA on an fp4 base",
    ("lora", "none"): "LoRA on an unquantized base", ("lora", "int8"): "LoRA on an int8 base",
    ("full", "none"): "full fine-tuning",
}  # fmt: skip


def method_label(method: str, quant: str) -> str:
    return METHOD_LABELS.get((method, quant), f"{method} ({quant})")


@dataclass(frozen=True)
class TrainConfig:
    """One fine-tuning run. Field docs are the CLI help of the matching flag."""

    method: str = "qlora"
    """qlora (4-bit base + LoRA), lora (16/32-bit or int8 base + LoRA) or full (all parameters)."""
    quant: str | None = None
    """Base-model quantization: nf4, fp4 (4-bit, QLoRA), int8 (LLM.int8, LoRA) or none. Default: nf4 for
    qlora, none otherwise."""
    double_quant: bool = True
    """Quantize the 4-bit absmax constants again (bnb_4bit_use_double_quant)."""
    load_dtype: str = "bf16"
    """dtype of the weights bitsandbytes does not quantize (torch_dtype of from_pretrained)."""
    compute_dtype: str = "bf16"
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
    attn: str | None = None
    """Attention implementation: sdpa, eager, flash_attention_2 (default: what transformers picks)."""
    kbit_upcast: bool = True
    """prepare_model_for_kbit_training casts non-quantized bf16/fp16 weights to fp32 (peft default)."""

    @property
    def resolved_quant(self) -> str:
        return self.quant if self.quant is not None else METHOD_QUANTS[self.method][0]

    @property
    def resolved_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2 * self.rank

    @property
    def uses_lora(self) -> bool:
        return self.method in ("qlora", "lora")

    @property
    def is_4bit(self) -> bool:
        return self.resolved_quant in ("nf4", "fp4")

    @property
    def is_kbit(self) -> bool:
        """Loaded through bitsandbytes (so prepare_model_for_kbit_training applies)."""
        return self.resolved_quant in ("nf4", "fp4", "int8")

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


def normalize_dtype(value: str, flag: str) -> str:
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
    elif cfg.resolved_quant not in METHOD_QUANTS[cfg.method]:
        ok = ", ".join(METHOD_QUANTS[cfg.method])
        why = {
            "qlora": "QLoRA trains LoRA adapters on a 4-bit base",
            "lora": "4-bit LoRA is --method qlora",
            "full": "quantized weights cannot be trained; use --method qlora or lora",
        }[cfg.method]
        errors.append(
            InputError(
                "--quant",
                f"{cfg.resolved_quant} does not go with --method {cfg.method} ({why}); accepted: {ok}",
            )
        )
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
    if cfg.attn is not None and cfg.attn not in ("sdpa", "eager", "flash_attention_2"):
        errors.append(one_of("--attn", cfg.attn, ("sdpa", "eager", "flash_attention_2")))
    if cfg.uses_lora and not cfg.targets:
        errors.append(InputError("--targets", "needs at least one module name (or all-linear)"))
    elif "all-linear" in cfg.targets and len(cfg.targets) > 1:
        errors.append(InputError("--targets", "all-linear already holds every linear module: give it alone"))
    if errors:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    return replace(cfg, **changes) if changes else cfg


DEFAULT = TrainConfig()

__all__ = ["TrainConfig", "validate", "DEFAULT", "METHODS", "QUANTS", "DTYPES", "DTYPE_BYTES", "field"]
