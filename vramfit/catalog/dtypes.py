"""Floating-point dtypes: the table, and the dtype each class of tensor of a run ends up in.

``compute_min_cc``: the compute capability below which vramfit refuses to *compute* in the dtype (see
``card.py`` for the rule and its sources). Storage alone needs nothing: torch keeps bf16 tensors and
runs its element-wise kernels on them on every card.

Which dtype a tensor is in follows from the recipe's casts (each function names its source): the
estimator's term modules (weights, adapters, activations, logits) and the card rule read them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from vramfit.config import TrainConfig

Dtype = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class DtypeSpec:
    name: Dtype
    bytes: int
    torch_name: str  # attribute of the torch module, and the spelling of config.json's torch_dtype
    aliases: tuple[str, ...]  # other spellings people type
    trainer_flag: str | None  # TrainingArguments mixed-precision flag set to True (None: no autocast)
    compute_min_cc: tuple[int, int] | None = None  # None: any card
    compute_min_arch: str = ""  # the architecture that brought compute_min_cc, for the error
    # Mixed precision in this dtype needs fp32 master weights to train all weights: the Trainer's
    # GradScaler refuses to unscale fp16 gradients ("Attempting to unscale FP16 gradients.").
    fp32_master_weights: bool = False


_ROWS = (
    DtypeSpec("bf16", 2, "bfloat16", ("bfloat16",), "bf16", compute_min_cc=(8, 0), compute_min_arch="Ampere"),
    DtypeSpec("fp16", 2, "float16", ("float16", "half"), "fp16", fp32_master_weights=True),
    DtypeSpec("fp32", 4, "float32", ("float32", "float"), None),
)
DTYPES: dict[str, DtypeSpec] = {d.name: d for d in _ROWS}
# Every accepted spelling (config.json says "bfloat16", people type "bfloat16" or "bf16").
DTYPE_ALIASES: dict[str, str] = {a: d.name for d in _ROWS for a in (d.name, d.torch_name, *d.aliases)}
FP32_BYTES = 4


def unquantized_dtype(cfg: TrainConfig) -> Dtype:
    """dtype of the weights bitsandbytes does not quantize (embeddings, norms, lm_head, biases, and
    every weight of an unquantized base) after preparation: ``prepare_model_for_kbit_training`` casts
    fp16/bf16 parameters that are not ``Params4bit`` to fp32 (peft ``utils/other.py``)."""
    if cfg.is_kbit and cfg.kbit_upcast and cfg.load_dtype in ("bf16", "fp16"):
        return "fp32"
    return cfg.load_dtype


def adapter_dtype(cfg: TrainConfig) -> Dtype:
    """LoRA weights: fp32 for a 16-bit base (peft ``autocast_adapter_dtype=True``,
    ``tuners/tuners_utils.py::cast_adapter_dtype``), else the base's dtype; bf16 on a k-bit base under a
    trainer that casts them (TRL's SFTTrainer: :mod:`vramfit.trainers`)."""
    from vramfit.trainers import TRAINERS

    if cfg.is_kbit and TRAINERS[cfg.trainer].adapters_bf16_when_quantized:
        return "bf16"
    return "fp32" if cfg.load_dtype in ("bf16", "fp16") else cfg.load_dtype


def trainable_dtype(cfg: TrainConfig) -> Dtype:
    """The dtype of what the optimizer trains: the adapters, or (full fine-tuning) the weights."""
    return adapter_dtype(cfg) if cfg.uses_lora else cfg.load_dtype


def autocast(cfg: TrainConfig) -> bool:
    """Mixed precision: the Trainer runs forward under ``torch.autocast`` in the compute dtype."""
    return DTYPES[cfg.compute_dtype].trainer_flag is not None


@dataclass(frozen=True)
class Dtypes:
    """Bytes per value of the tensors of a run, by class."""

    compute: int  # bytes of the autocast dtype (4 when training in fp32: no autocast)
    hidden: int  # residual stream
    autocast: bool
    base_out: int  # dtype of a frozen base linear's output
    mlp: int  # dtype of the MLP's intermediate tensors


def dtypes(cfg: TrainConfig) -> Dtypes:
    compute = DTYPES[cfg.compute_dtype].bytes
    mixed = compute < FP32_BYTES
    hidden = DTYPES[unquantized_dtype(cfg)].bytes  # the embedding's output: the residual stream
    if cfg.is_kbit:
        base_out = hidden  # bitsandbytes returns the input's dtype (Linear4bit.forward: .to(inp_dtype))
    else:
        base_out = compute if mixed else hidden  # autocast'ed nn.Linear
    # LoRA output (compute dtype under autocast) added to the base output promotes to the wider one.
    mlp = max(base_out, compute) if cfg.uses_lora else base_out
    return Dtypes(compute, hidden, mixed, base_out, mlp)
