"""Base-model weights and their bitsandbytes quantization state.

Which tensors are quantized: transformers replaces the ``nn.Linear`` modules of the decoder layers with
bitsandbytes ``Linear4bit`` / ``Linear8bitLt``; ``lm_head`` (and anything tied to it), embeddings and norms
stay in the load dtype (transformers ``integrations/bitsandbytes.py``, ``get_keys_to_not_convert``).
Linear biases stay unquantized too. ``prepare_model_for_kbit_training`` then casts every fp16/bf16
parameter that is not ``Params4bit`` to fp32 (peft ``utils/other.py``): embeddings, ``lm_head``, norms,
biases, and also the int8 layers' non-weight parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from vramfit.catalog import DTYPES, QUANTS
from vramfit.catalog.dtypes import unquantized_dtype
from vramfit.config import TrainConfig
from vramfit.estimate.alloc import block
from vramfit.models.spec import ArchSpec

# NF4 / FP4: two 4-bit codes per byte (bitsandbytes functional.quantize_4bit packs into uint8).
FOUR_BIT_BLOCKSIZE = 64  # values per absmax block: bnb_4bit default blocksize (QLoRA paper, sec. 3)
# Double quantization: the fp32 absmax values are themselves quantized blockwise to 8 bits with
# blocks of 256 (QLoRA paper sec. 3; bitsandbytes ``quantize_4bit(compress_statistics=True)`` calls
# ``quantize_blockwise(absmax, blocksize=256)``), after subtracting their mean (``offset``).
NESTED_BLOCKSIZE = 256
DYNAMIC_CODE_BYTES = 256 * 4  # the 8-bit dynamic map (256 fp32) of the nested state, per tensor
NF4_CODE_BYTES = 16 * 4  # the 16-value NF4/FP4 code, per tensor
OFFSET_BYTES = 4  # fp32 mean of the absmax (double quant only)


def four_bit_weight_bytes(numel: int) -> int:
    """Packed 4-bit weight: numel / 2 bytes (uint8 storage), one allocator block."""
    return block((numel + 1) // 2)


def four_bit_state_bytes(numel: int, double_quant: bool) -> int:
    """Quantization state of one 4-bit weight tensor, as allocated on the GPU.

    Without double quantization: one fp32 absmax per 64 values (0.5 bit/param).
    With it: one uint8 absmax per 64 values, one fp32 absmax per 256 of those, the fp32 offset and the
    256-entry fp32 dynamic code (0.127 bit/param + constants), as in ``QuantState``.
    """
    blocks = -(-numel // FOUR_BIT_BLOCKSIZE)
    code = block(NF4_CODE_BYTES)
    if not double_quant:
        return block(blocks * 4) + code
    nested = -(-blocks // NESTED_BLOCKSIZE)
    return block(blocks) + block(nested * 4) + block(OFFSET_BYTES) + block(DYNAMIC_CODE_BYTES) + code


def int8_weight_bytes(numel: int) -> int:
    """LLM.int8 weight: one int8 per value (bitsandbytes ``Int8Params.CB``)."""
    return block(numel)


def int8_state_bytes(out_features: int) -> int:
    """LLM.int8 row-wise scale: one fp32 absmax per output row (``Int8Params.SCB``)."""
    return block(out_features * 4)


@dataclass(frozen=True)
class WeightBytes:
    """The base model on the GPU, after loading and after ``prepare_model_for_kbit_training``."""

    weights: int  # trained / frozen parameter storage after prepare
    quant_state: int
    load_weights: int  # the same parameters in the load dtype, before the fp32 upcast
    largest_unquantized_load: int  # biggest tensor the upcast copies (old copy alive with the new one)
    largest_linear_load: int  # biggest linear weight in the load dtype: transient while quantizing


def weight_bytes(arch: ArchSpec, cfg: TrainConfig) -> WeightBytes:
    if arch.inventory is not None:  # read from the model itself
        from vramfit.estimate import from_model

        return from_model.weight_bytes(arch.inventory, cfg)
    return _weight_bytes(arch, cfg.resolved_quant, cfg.double_quant, cfg.load_dtype, unquantized_dtype(cfg))


@lru_cache(maxsize=512)  # the planner asks for the same few layouts thousands of times
def _weight_bytes(
    arch: ArchSpec, quant: str, double_quant: bool, load_dtype: str, unq_dtype: str
) -> WeightBytes:
    load = DTYPES[load_dtype].bytes
    unq = DTYPES[unq_dtype].bytes
    L = arch.num_layers

    # Unquantized tensors as (numel, count), each its own allocation. A tied lm_head shares the
    # embedding's storage.
    unq_tensors = [(arch.embedding_params, 1), (arch.hidden_size, arch.norms_per_layer * L + 1)]
    if arch.lm_head_params:
        unq_tensors.append((arch.lm_head_params, 1))
    if arch.qk_norm:
        unq_tensors.append((arch.head_dim, 2 * L))
    unq_tensors += [(m.out_features, L) for m in arch.layer_linears if m.bias]
    largest_unq = max(n for n, _ in unq_tensors)

    linears = arch.layer_linears
    bits = QUANTS[quant].bits
    if bits == 4:
        q_weights = L * sum(four_bit_weight_bytes(m.weight_numel) for m in linears)
        q_state = L * sum(four_bit_state_bytes(m.weight_numel, double_quant) for m in linears)
        lin_load = q_weights
    elif bits == 8:
        q_weights = L * sum(int8_weight_bytes(m.weight_numel) for m in linears)
        q_state = L * sum(int8_state_bytes(m.out_features) for m in linears)
        lin_load = q_weights
    else:
        q_weights = L * sum(block(m.weight_numel * unq) for m in linears)
        lin_load = L * sum(block(m.weight_numel * load) for m in linears)
        q_state = 0

    return WeightBytes(
        weights=q_weights + sum(block(n * unq) * k for n, k in unq_tensors),
        quant_state=q_state,
        load_weights=lin_load + sum(block(n * load) * k for n, k in unq_tensors),
        largest_unquantized_load=largest_unq * load if unq != load else 0,
        largest_linear_load=max(m.weight_numel for m in linears) * load if bits is not None else 0,
    )


def dequantized_weight_bytes(arch: ArchSpec, cfg: TrainConfig) -> int:
    """One layer's largest linear weight in the compute dtype: what bitsandbytes dequantizes around a
    k-bit matmul (forward and backward) and frees after it. 0 without a k-bit base."""
    if not cfg.is_kbit:
        return 0
    if arch.inventory is not None:
        from vramfit.estimate import from_model

        return from_model.dequantized_weight_bytes(arch.inventory, cfg)
    return block(max(m.weight_numel for m in arch.layer_linears) * DTYPES[cfg.compute_dtype].bytes)


def dequantized_attention_bytes(arch: ArchSpec, cfg: TrainConfig) -> int:
    """One layer's largest k-bit attention projection in the compute dtype (``qkv_proj`` where fused, else
    the widest of q, k, v, o): dequantized, like every k-bit weight, in the forward and again in the
    backward. 0 without a k-bit base."""
    if not cfg.is_kbit:
        return 0
    if arch.inventory is not None:
        sizes = [
            m.weight_numel for m in arch.inventory.layer_linears(0) if m.kind == "attention" and m.quantized
        ]
    else:
        sizes = [m.weight_numel for m in arch.layer_linears if m.kind == "attention"]
    return block(max(sizes) * DTYPES[cfg.compute_dtype].bytes) if sizes else 0
