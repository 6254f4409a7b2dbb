"""Fine-tuning methods and the quantizations each accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Method = Literal["qlora", "lora", "full"]


@dataclass(frozen=True)
class MethodSpec:
    name: Method
    lora: bool  # trains LoRA adapters (peft) on a frozen base
    quants: tuple[str, ...]  # accepted quantizations, the default first
    why_not: str  # why another quantization does not go with it (the --quant error says it)


_ROWS = (
    # QLoRA = LoRA on a 4-bit base (Dettmers et al. 2023)
    MethodSpec("qlora", True, ("nf4", "fp4"), "QLoRA trains LoRA adapters on a 4-bit base"),
    # plain LoRA on a 16/32-bit base, or on an LLM.int8 base
    MethodSpec("lora", True, ("none", "int8"), "4-bit LoRA is --method qlora"),
    # bitsandbytes cannot train quantized weights
    MethodSpec("full", False, ("none",), "quantized weights cannot be trained; use --method qlora or lora"),
)
METHODS: dict[str, MethodSpec] = {m.name: m for m in _ROWS}
