"""Weights, adapters and trainable tensors of a model read from the model itself (an :class:`Inventory`).

The same rules as :mod:`vramfit.estimate.weights` and :mod:`vramfit.estimate.adapters`, applied tensor by
tensor to what transformers builds instead of to a family's formula:

* a weight bitsandbytes quantizes (``ParamInfo.quantized``) is stored packed (4-bit) or as int8 + row
  scales, with its quantization state, by the per-tensor functions of ``weights.py``;
* every other parameter (embeddings, norms, biases, routers, and the fused 3-D expert tensors of MoE
  models, which are not ``nn.Linear``) stays in the load dtype and is upcast to fp32 by
  ``prepare_model_for_kbit_training`` (peft ``utils/other.py``: every fp16/bf16 parameter that is not
  ``Params4bit``), unless the model keeps it in fp32 anyway (``_keep_in_fp32_modules``);
* buffers (rotary ``inv_freq``) keep their dtype;
* LoRA adds ``lora_A`` (r x in) and ``lora_B`` (out x r) to each module peft's matching selects.

Pure Python: an Inventory is plain data.
"""

from __future__ import annotations

from collections import Counter

from vramfit.catalog import DTYPES
from vramfit.catalog.dtypes import unquantized_dtype
from vramfit.config import TrainConfig
from vramfit.estimate.alloc import block
from vramfit.estimate.weights import (
    WeightBytes,
    four_bit_state_bytes,
    four_bit_weight_bytes,
    int8_state_bytes,
    int8_weight_bytes,
)
from vramfit.models.inventory import Inventory, LinearInfo, ParamInfo


def _quantized_bytes(p: ParamInfo, quant: str, double_quant: bool) -> tuple[int, int]:
    """(weight, state) bytes of a weight bitsandbytes quantizes."""
    if quant in ("nf4", "fp4"):
        return four_bit_weight_bytes(p.numel), four_bit_state_bytes(p.numel, double_quant)
    return int8_weight_bytes(p.numel), int8_state_bytes(p.shape[0])


def _is_kbit(cfg: TrainConfig) -> bool:
    return cfg.resolved_quant != "none"


def weight_bytes(inv: Inventory, cfg: TrainConfig) -> WeightBytes:
    """The model's parameters and buffers on the GPU after loading and after k-bit preparation."""
    load, unq = DTYPES[cfg.load_dtype].bytes, DTYPES[unquantized_dtype(cfg)].bytes
    weights = state = loaded = largest_unq = largest_lin = 0
    for p in inv.params:
        if p.quantized and _is_kbit(cfg):
            w, s = _quantized_bytes(p, cfg.resolved_quant, cfg.double_quant)
            weights, state, loaded = weights + w, state + s, loaded + w
            largest_lin = max(largest_lin, p.numel * load)
            continue
        if p.keep_fp32:
            weights, loaded = weights + block(p.numel * 4), loaded + block(p.numel * 4)
            continue
        weights, loaded = weights + block(p.numel * unq), loaded + block(p.numel * load)
        largest_unq = max(largest_unq, p.numel)
    buffers = sum(block(b.numel * b.itemsize) for b in inv.buffers)
    return WeightBytes(
        weights=weights + buffers,
        quant_state=state,
        load_weights=loaded + buffers,
        largest_unquantized_load=largest_unq * load if unq != load else 0,
        largest_linear_load=largest_lin,
    )


def dequantized_weight_bytes(inv: Inventory, cfg: TrainConfig) -> int:
    """The largest quantized weight in the compute dtype: bitsandbytes dequantizes it around its matmul."""
    if not _is_kbit(cfg):
        return 0
    sizes = [p.numel for p in inv.params if p.quantized]
    return block(max(sizes) * DTYPES[cfg.compute_dtype].bytes) if sizes else 0


def _grouped(shapes: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    return [(r, c, n) for (r, c), n in Counter(shapes).items()]


def adapter_tensors(targets: tuple[LinearInfo, ...], rank: int) -> list[tuple[int, int, int]]:
    """LoRA tensors as (rows, cols, count): A (r x in) and B (out x r) of each targeted module."""
    shapes: list[tuple[int, int]] = []
    for m in targets:
        shapes += [(rank, m.in_features), (m.out_features, rank)]
    return _grouped(shapes)


def full_trainable_tensors(inv: Inventory) -> list[tuple[int, int, int]]:
    """Every parameter as (rows, cols, count), the input embedding first (the optimizer rules treat it
    apart); a fused expert tensor (E x rows x cols) counts as E x rows rows."""
    first = [p for p in inv.params if p.module_type == "Embedding"][:1]
    rest = [p for p in inv.params if p not in first]
    shapes = [(p.shape[0], p.numel // p.shape[0]) if p.shape else (1, 1) for p in first + rest]
    head = [(shapes[0][0], shapes[0][1], 1)] if first else []
    return head + _grouped(shapes[len(head) :])


def expert_storage(inv: Inventory, cfg: TrainConfig) -> tuple[int, str]:
    """(bytes, dtype) of the fused expert tensors after preparation: they are not nn.Linear, so bitsandbytes
    leaves them in the load dtype and the k-bit preparation upcasts them. (0, "") without experts."""
    n = inv.expert_params
    if not n:
        return 0, ""
    dtype = unquantized_dtype(cfg)
    return n * DTYPES[dtype].bytes, dtype


def _moe_warning(inv: Inventory, cfg: TrainConfig) -> str:
    """Where the experts' bytes and activations come from ("" without experts)."""
    n, dtype = expert_storage(inv, cfg)
    if not n:
        return ""
    kbit = cfg.resolved_quant != "none"
    return (
        f"MoE: {inv.expert_params / 1e9:.2f}B expert parameters are fused 3-D tensors, "
        + ("not nn.Linear, so bitsandbytes does not quantize them: " if kbit else "")
        + f"they hold {n / 2**30:.2f} GiB in {dtype}"
        + (" after prepare_model_for_kbit_training's upcast" if kbit and dtype == "fp32" else "")
        + "; their activations are traced with the allocations of torch's grouped_mm kernel"
        + (" (a frozen expert keeps only its weight for backward)" if cfg.method != "full" else "")
        + ", not yet checked against a GPU run"
    )


def model_warnings(inv: Inventory, cfg: TrainConfig) -> list[str]:
    """What an estimate read from the model says about where its numbers come from."""
    w = [
        f"{inv.model_type} is not a built-in family: its tensors were read from the model transformers "
        f"{inv.transformers_version} builds ({inv.architecture}) and its layer activations traced on fake tensors"
    ]
    moe = _moe_warning(inv, cfg)
    if moe:
        w.append(moe)
    if cfg.resolved_quant == "int8":
        w.append("int8: the trace models a 4-bit matmul's saved tensors; LLM.int8 keeps its input too")
    return w
