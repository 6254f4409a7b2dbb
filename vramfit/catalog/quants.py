"""Base-model quantizations: what bitsandbytes stores, how the recipe asks for it, what it needs.

``bnb`` holds the ``BitsAndBytesConfig`` keyword arguments that select the quantization; the compute
dtype and double quantization go under ``bnb_compute_dtype_key`` / ``bnb_double_quant_key`` (4-bit only).
The probe builds its ``BitsAndBytesConfig`` and the planner writes its code from the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Quant = Literal["nf4", "fp4", "int8", "none"]


@dataclass(frozen=True)
class QuantSpec:
    name: Quant
    bits: int | None  # bits per quantized weight (None: not quantized, the load dtype's)
    bnb: tuple[tuple[str, object], ...] = ()  # BitsAndBytesConfig kwargs; () = no bitsandbytes
    bnb_compute_dtype_key: str | None = None
    bnb_double_quant_key: str | None = None
    min_cc: tuple[int, int] | None = None  # compute capability bitsandbytes needs (None: any card)
    min_cc_why: str = ""  # what needs it, for the error
    speed: int = 0  # planner throughput order, higher = faster (orders only, no figures claimed)
    keeps_linear_input: bool = False  # the quantized matmul keeps its input for backward (not a hook)
    dominated_by: str | None = None  # a quantization at least as good in memory and quality
    estimate_note: str = ""  # an approximation of the estimate, shown as a warning

    @property
    def is_bnb(self) -> bool:
        """Loaded through bitsandbytes (so ``prepare_model_for_kbit_training`` applies)."""
        return bool(self.bnb)

    @property
    def double_quant_applies(self) -> bool:
        return self.bnb_double_quant_key is not None


_FOUR_BIT = dict(bnb_compute_dtype_key="bnb_4bit_compute_dtype", bnb_double_quant_key="bnb_4bit_use_double_quant",
                 min_cc=(6, 0), min_cc_why="bitsandbytes 4-bit (nf4/fp4) needs compute capability 6.0+ (Pascal)",
                 speed=1)  # fmt: skip
_ROWS = (
    QuantSpec("nf4", 4, (("load_in_4bit", True), ("bnb_4bit_quant_type", "nf4")), **_FOUR_BIT),
    # same memory as nf4; NF4 is the better 4-bit data type (QLoRA paper, section 5)
    QuantSpec("fp4", 4, (("load_in_4bit", True), ("bnb_4bit_quant_type", "fp4")), dominated_by="nf4", **_FOUR_BIT),
    # 7.5 is the minimum for int8 tensor cores (bitsandbytes cuda_specs.has_imma; below it bitsandbytes
    # only warns of a slow fallback, whose memory is not modelled). MatMul8bitLt keeps its input A as a
    # ctx attribute (ctx.tensors = (CAt, subA, A)). Slowest: the outlier decomposition on every matmul.
    QuantSpec("int8", 8, (("load_in_8bit", True),), min_cc=(7, 5),
              min_cc_why="LLM.int8 needs compute capability 7.5+ (Turing; use --method qlora on older cards)",
              speed=0, keeps_linear_input=True,
              estimate_note="int8 (LLM.int8) activations and outlier handling are approximated like 4-bit layers"),
    QuantSpec("none", None, speed=2),  # a 16-bit base: no dequantization on any matmul
)  # fmt: skip
QUANTS: dict[str, QuantSpec] = {q.name: q for q in _ROWS}


def bnb_kwargs(quant: str, compute_dtype: object, double_quant: bool) -> dict[str, object]:
    """``BitsAndBytesConfig(**kwargs)`` for ``quant`` ({} for none); ``compute_dtype`` is passed through
    as given (a torch dtype for the probe, its source text for the generated code)."""
    q = QUANTS[quant]
    out = dict(q.bnb)
    if q.bnb_compute_dtype_key:
        out[q.bnb_compute_dtype_key] = compute_dtype
    if q.bnb_double_quant_key:
        out[q.bnb_double_quant_key] = double_quant
    return out
