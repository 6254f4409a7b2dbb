"""Fine-tuning methods and the quantizations each accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramfit.catalog.quants import QUANTS

Method = Literal["qlora", "lora", "full"]


@dataclass(frozen=True)
class MethodSpec:
    name: Method
    lora: bool  # trains LoRA adapters (peft) on a frozen base
    quants: tuple[str, ...]  # accepted quantizations, the default first
    why_not: str  # why another quantization does not go with it (the --quant error says it)
    label: str  # how the output names it on a base ("{base}": the quantization, or "unquantized")


_ROWS = (
    # QLoRA = LoRA on a 4-bit base (Dettmers et al. 2023)
    MethodSpec("qlora", True, ("nf4", "fp4"), "QLoRA trains LoRA adapters on a 4-bit base", "QLoRA on an {base} base"),
    # plain LoRA on a 16/32-bit base, or on an LLM.int8 base
    MethodSpec("lora", True, ("none", "int8"), "4-bit LoRA is --method qlora", "LoRA on an {base} base"),
    # bitsandbytes cannot train quantized weights
    MethodSpec("full", False, ("none",), "quantized weights cannot be trained; use --method qlora or lora",
               "full fine-tuning"),
)  # fmt: skip
METHODS: dict[str, MethodSpec] = {m.name: m for m in _ROWS}


def method_label(method: str, quant: str) -> str:
    """'LoRA on an int8 base', not 'lora int8'; a combination no row accepts: 'lora (nf4)'."""
    spec = METHODS.get(method)
    if spec is None or quant not in spec.quants:
        return f"{method} ({quant})"
    return spec.label.format(base="unquantized" if QUANTS[quant].bits is None else quant)
