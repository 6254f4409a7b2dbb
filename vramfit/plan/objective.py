"""What "best" means: the planner's objective, in the order it is applied.

1. **Constraints** (hard): the run fits the card with the safety margin
   (``required_vram + margin <= usable``); every flag the user gave is held; the sequence is at least
   ``--seq-len``; micro-batch x accumulation is the effective batch; the dtypes are the card's.
2. **Quality** (higher wins): ``log2(trainable parameters) + log2(sequence length)``. More adapter
   capacity (LoRA targets, rank; all weights for full fine-tuning) and longer sequences both count, and
   each *doubling* of either counts the same: rank 64 at 1024 tokens ties rank 32 at 2048 tokens. The base
   model's precision is not part of it: the QLoRA paper (Dettmers et al. 2023, section 5) finds NF4 with
   double quantization matches 16-bit LoRA.
3. **Throughput** (on a quality tie, in this order): no gradient checkpointing (recomputing each layer's
   forward in backward costs about a third more compute); a 16-bit base before a 4-bit one before an
   LLM.int8 one (dequantization on every matmul; LLM.int8's outlier decomposition is the slowest); more
   tokens per micro-batch (fewer, fuller kernel launches); an optimizer that is not paged (no page faults);
   the faster attention kernel (flash_attention_2, sdpa, eager).
4. **Headroom**: the configuration that leaves more memory free.
5. **The recipe**: on a full tie, the choice of the reference recipe (NF4 over FP4, its optimizer).
"""

from __future__ import annotations

import math

from vramfit.catalog import ATTNS, DEFAULT_ATTN, OPTIMIZERS, QUANTS
from vramfit.config import TrainConfig


def quality(cfg: TrainConfig, trainable_params: int) -> float:
    """Tier 2: log2(trainable parameters) + log2(sequence length), rounded so that exact ties tie."""
    return round(math.log2(max(trainable_params, 1)) + math.log2(cfg.seq_len), 6)


def throughput_key(cfg: TrainConfig) -> tuple:
    """Tier 3, higher is better."""
    return (
        not cfg.gradient_checkpointing,
        QUANTS[cfg.resolved_quant].speed,  # the rows' speed orders: no speed figures are claimed
        cfg.batch_size * cfg.seq_len,
        not OPTIMIZERS[cfg.optimizer].paged,
        ATTNS[cfg.attn or DEFAULT_ATTN].speed,
    )


_RECIPE = TrainConfig()


def recipe_closeness(cfg: TrainConfig) -> int:
    """Tier 5: how many of the recipe's choices the configuration keeps."""
    return (
        (cfg.resolved_quant == _RECIPE.resolved_quant)
        + (cfg.double_quant == _RECIPE.double_quant)
        + (cfg.optimizer == _RECIPE.optimizer)
        + ((cfg.attn or DEFAULT_ATTN) == DEFAULT_ATTN)
    )


def rank_key(cfg: TrainConfig, trainable_params: int, headroom_bytes: int) -> tuple:
    """Sort key of a configuration that satisfies the constraints: larger is better."""
    return (quality(cfg, trainable_params), throughput_key(cfg), headroom_bytes, recipe_closeness(cfg))


def describe() -> list[str]:
    """The objective, one short line per tier, for the output."""
    return [
        "1. fits with the margin, your flags held",
        "2. quality = log2(trainable params) + log2(seq len)",
        "3. throughput: no checkpointing, 16-bit > 4-bit > int8 base, more tokens per micro-batch, unpaged optimizer, faster attention",
        "4. more headroom",
        "5. the recipe's choice",
    ]
