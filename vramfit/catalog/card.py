"""The one rule of what a card can run, read from the tables and the card's compute capability.

Estimate, plan and probe all apply :func:`card_problems`; the probe's child applies it again with the
compute capability torch reports for the device it runs on.

What each clause rests on:

* **Computing in bf16 needs compute capability 8.0+ (Ampere).** Below it torch still stores bf16 and
  runs its element-wise kernels (``torch.cuda.is_bf16_supported()`` answers True on a T4: with its
  default ``including_emulation=True`` it only checks that a bf16 tensor can be created, and
  transformers' ``is_torch_bf16_gpu_available`` and autocast ask the same question, so nothing in the
  stack refuses). But cuBLAS has no bf16 tensor-core GEMM there, and SDPA's flash and memory-efficient
  kernels accept bf16 only on sm80+ (``sdp_utils.cpp``: ``less_than_sm80_mem_efficient_dtypes = {kHalf,
  kFloat}``), so attention falls back to the math kernel, which keeps the s x s scores: the estimate's
  model of the run would not hold, so vramfit refuses it with the fix instead of a wrong number.
* **A bf16 load with fp16 mixed precision computes in fp16**, so it runs on such a card: autocast casts
  every matmul and ``scaled_dot_product_attention`` to fp16 (both are ``lower_precision_fp`` ops in
  ``autocast_mode.cpp``), bitsandbytes quantizes and dequantizes bf16 on every card (no capability
  check in ``backends/cuda/ops.py``), and ``prepare_model_for_kbit_training`` upcasts the rest to fp32.
  Without autocast (``--compute-dtype fp32``) the layers compute in the dtype their weights are left
  in (:func:`~vramfit.catalog.dtypes.unquantized_dtype`), so bf16 weights that stay bf16 compute in bf16.
* **Quantizations and attention implementations** carry their own minimum (``QuantSpec.min_cc``,
  ``AttnSpec.min_cc``), each with its source in the table.

A card of unknown compute capability (``None``) is refused nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramfit.catalog.attention import ATTNS
from vramfit.catalog.dtypes import DTYPES, autocast, unquantized_dtype
from vramfit.catalog.quants import QUANTS
from vramfit.errors import InputError

if TYPE_CHECKING:
    from vramfit.config import TrainConfig

CC = tuple[int, int]


def meets(min_cc: CC | None, cc: CC | None) -> bool:
    """Whether a card of compute capability ``cc`` reaches ``min_cc`` (unknown cards reach anything)."""
    return min_cc is None or cc is None or tuple(cc) >= min_cc


def computed_dtypes(cfg: TrainConfig) -> tuple[str, ...]:
    """The dtypes the run's matmuls and attention compute in (see the module docstring)."""
    if autocast(cfg):
        return (cfg.compute_dtype,)
    return tuple(dict.fromkeys((unquantized_dtype(cfg), cfg.compute_dtype)))


def _on(where: str, cc: CC | None) -> str:
    return f"{where} (compute capability {cc[0]}.{cc[1]})" if cc else where


def compute_problem(dtype: str, cc: CC | None, where: str = "this card") -> InputError | None:
    """``--compute-dtype dtype`` on a card of compute capability ``cc``."""
    d = DTYPES[dtype]
    if meets(d.compute_min_cc, cc):
        return None
    need = f"{d.compute_min_cc[0]}.{d.compute_min_cc[1]}+ ({d.compute_min_arch})"
    return InputError(
        "--compute-dtype",
        f"{dtype} needs compute capability {need}; {_on(where, cc)} has none: use --compute-dtype fp16",
    )


def dtype_problem(cfg: TrainConfig, cc: CC | None, where: str = "this card") -> InputError | None:
    """A dtype the run computes in that the card cannot compute in (the compute dtype first)."""
    problem = compute_problem(cfg.compute_dtype, cc, where)
    if problem is not None:
        return problem
    for d in computed_dtypes(cfg):
        need = DTYPES[d].compute_min_cc
        if not meets(need, cc):
            return InputError(
                "--load-dtype",
                f"without mixed precision (--compute-dtype {cfg.compute_dtype}) the {d} weights compute in "
                f"{d}, which needs compute capability {need[0]}.{need[1]}+; {_on(where, cc)} has none: "
                "use --load-dtype fp16 or --compute-dtype fp16",
            )
    return None


def quant_problem(quant: str, cc: CC | None, where: str = "this card") -> InputError | None:
    q = QUANTS[quant]
    return (
        None if meets(q.min_cc, cc) else InputError("--quant", f"{q.min_cc_why}; {_on(where, cc)} is older")
    )


def attn_problem(attn: str | None, cc: CC | None, where: str = "this card") -> InputError | None:
    a = ATTNS.get(attn) if attn else None
    if a is None or meets(a.min_cc, cc):
        return None
    return InputError("--attn", f"{a.min_cc_why}; {_on(where, cc)} is older")


def card_problems(
    cfg: TrainConfig, attn: str | None, cc: CC | None, where: str = "this card"
) -> list[InputError]:
    """Everything ``cfg`` (with attention ``attn``) needs that a card of compute capability ``cc``
    lacks, each as the error naming its flag, in this order: dtype, quantization, attention; [] when
    the card runs it."""
    found = (dtype_problem(cfg, cc, where), quant_problem(cfg.resolved_quant, cc, where),
             attn_problem(attn, cc, where))  # fmt: skip
    return [p for p in found if p is not None]


def check_card(cfg: TrainConfig, attn: str | None, cc: CC | None, where: str = "this card") -> None:
    """Raise the first of :func:`card_problems`."""
    problems = card_problems(cfg, attn, cc, where)
    if problems:
        raise problems[0]


def compute_dtype_for(cc: CC | None) -> str:
    """The compute dtype a card trains in when none is asked for: bf16 where it can compute in it, else
    fp16 (the recipe's mixed precision either way)."""
    return "bf16" if meets(DTYPES["bf16"].compute_min_cc, cc) else "fp16"
