"""The closed sets a training run is made of, as tables of data: one row per choice.

Every module that needs to know what a quantization, an optimizer, an attention implementation, a
dtype or a method *is* (its bits, its bitsandbytes keys, the card it needs, how fast it is, whether it
keeps the attention scores) reads the row here; adding a choice is adding a row. The estimator, the
probe, the planner, the generated code and the CLI's ``choices`` all read these tables.

    dtypes.py      bf16 / fp16 / fp32: bytes, torch names, what computes in them on which card
    methods.py     qlora / lora / full: LoRA or not, which quantizations each accepts
    quants.py      nf4 / fp4 / int8 / none: bits, bitsandbytes config, card, speed
    optimizers.py  TrainingArguments.optim names: state layout, paging, library, search
    attention.py   sdpa / eager / flash_attention_2: scores kept, card, speed
    card.py        the one rule of what a card (its compute capability) can run
"""

from __future__ import annotations

from vramfit.catalog.attention import ATTNS, DEFAULT_ATTN, Attn, AttnSpec
from vramfit.catalog.dtypes import DTYPES, Dtype, DtypeSpec
from vramfit.catalog.methods import METHODS, Method, MethodSpec
from vramfit.catalog.optimizers import OPTIMIZERS, OptimizerSpec
from vramfit.catalog.quants import QUANTS, Quant, QuantSpec

__all__ = [
    "ATTNS", "DEFAULT_ATTN", "Attn", "AttnSpec", "DTYPES", "Dtype", "DtypeSpec", "METHODS", "Method",
    "MethodSpec", "OPTIMIZERS", "OptimizerSpec", "QUANTS", "Quant", "QuantSpec",
]  # fmt: skip
