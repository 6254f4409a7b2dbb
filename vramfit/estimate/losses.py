"""The loss' memory for each loss of :mod:`vramfit.trainers`: full logits, TRL's tiled head, Liger's FLCE.

``full`` is :func:`vramfit.estimate.logits.logits_bytes`. The two fused losses never hold the
(batch, seq, vocab) logits; what they hold instead, per the source named in each function:

    fused (TRL)  forward:  labelled hidden states (copy) + one logit tile (4096 tokens x 32768 entries)
                 backward: + the fp32 gradient of the labelled hidden states, the tile recomputed
    liger        forward:  the input gradient (kept for backward) + one chunk of logits (C tokens x V)
                 backward: the input gradient, scaled in place
"""

from __future__ import annotations

from vramfit.catalog import DTYPES
from vramfit.catalog.dtypes import FP32_BYTES as FP32
from vramfit.catalog.dtypes import dtypes, unquantized_dtype
from vramfit.config import TrainConfig
from vramfit.estimate.alloc import block
from vramfit.estimate.logits import LogitsBytes, logits_bytes
from vramfit.models.spec import ArchSpec

# trl 1.16.0 kernels/chunked_logprob.py TOKEN_CHUNK_SIZE and trainer/utils.py _CHUNKED_LOGPROB_CHUNK_SIZE
TRL_TOKEN_TILE = 4096
TRL_VOCAB_TILE = 32768


def loss_bytes(arch: ArchSpec, cfg: TrainConfig, tokens: int) -> LogitsBytes:
    """The loss' moments for ``cfg``'s loss (``tokens`` = batch x sequence)."""
    loss = cfg.resolved_loss
    if loss == "fused":
        return trl_fused_head_bytes(arch, cfg)
    if loss == "liger":
        return liger_flce_bytes(arch, cfg, tokens)
    return logits_bytes(arch, cfg, tokens)


def _loss_dtypes(cfg: TrainConfig) -> tuple[int, int, int]:
    """(hidden-state bytes, matmul bytes, lm_head weight bytes) at the loss."""
    d = dtypes(cfg)
    c = d.compute if d.autocast else d.hidden  # the kernels compute in the autocast dtype when enabled
    return d.hidden, c, DTYPES[unquantized_dtype(cfg)].bytes


def trl_fused_head_bytes(arch: ArchSpec, cfg: TrainConfig) -> LogitsBytes:
    """TRL's ``add_fused_lm_head`` + ``ChunkedLogProbFunction`` on CUDA (the compact path).

    ``hidden_states[:, :-1][mask]`` copies the labelled positions (N = batch x (seq - 1) with labels = input
    ids) and is saved for backward with seven fp32 per-token vectors. One ``mm_buf`` of (min(N, 4096),
    32768) in the compute dtype holds each tile; ``hidden[...].to(compute)`` and ``weight[...].to(compute)``
    copy a token chunk and a vocabulary slice when their dtypes differ (fp32 after the kbit upcast).
    Backward allocates ``grad_hidden`` in fp32 (N x H), recomputes every tile into a new ``mm_buf`` and
    returns ``grad_hidden.to(hidden.dtype)``; the index and slice backward then scatter it into two
    zero-filled (batch, seq, H) gradients.
    """
    hb, c, wb = _loss_dtypes(cfg)
    H, V = arch.hidden_size, arch.vocab_size
    b, s = cfg.batch_size, cfg.seq_len
    N = b * (s - 1)
    n = min(N, TRL_TOKEN_TILE)
    labelled = block(N * H * hb)
    vectors = 7 * block(N * FP32) + block(N * 8) + block(b * (s - 1))  # fp32 stats, int64 targets, mask
    tile = block(n * TRL_VOCAB_TILE * c)
    copies = (block(n * H * c) if hb != c else 0) + (block(min(V, TRL_VOCAB_TILE) * H * c) if wb != c else 0)
    forward_peak = labelled + vectors + tile + copies
    grad32 = block(N * H * FP32)
    at_return = grad32 + tile + (block(N * H * hb) if hb != FP32 else 0)
    in_tiles = grad32 + tile + copies
    scatter = block(N * H * hb) + 2 * block(b * s * H * hb)  # after the function: index / slice backward
    backward_peak = max(labelled + vectors + max(at_return, in_tiles), scatter)
    return LogitsBytes(forward_peak, labelled + vectors, backward_peak, 0)


def liger_chunk_tokens(arch: ArchSpec, tokens: int) -> int:
    """Liger's token chunk: next_pow2(ceil(BT / ceil(V / H))), at most BT (fused_linear_cross_entropy_forward,
    chunk_mem_const=1: the transient logits stay near BT x H elements)."""
    inc = -(-arch.vocab_size // arch.hidden_size)
    per = -(-tokens // inc)
    return min(1 << (per - 1).bit_length(), tokens)


def liger_flce_bytes(arch: ArchSpec, cfg: TrainConfig, tokens: int) -> LogitsBytes:
    """Liger-kernel's ``LigerFusedLinearCrossEntropyFunction`` as ``LigerForCausalLMLoss`` calls it.

    Every position is scored (the labels are padded by one ignored index and shifted), flattened to
    BT x H. ``grad_input = zeros_like(_input)`` is filled chunk by chunk in forward and saved for backward,
    which only scales it. A chunk's logits are (C x V) in the compute dtype; with bf16 input and weight
    they go into one preallocated buffer, otherwise (fp32 after the kbit upcast) autocast casts the whole
    ``lm_head`` weight to the compute dtype for each of the chunk's two matmuls (not cached: the head is
    frozen). A trained head (full fine-tuning) adds ``grad_weight`` of its size.
    """
    hb, c, wb = _loss_dtypes(cfg)
    H, V = arch.hidden_size, arch.vocab_size
    C = liger_chunk_tokens(arch, tokens)
    grad_input = block(tokens * H * hb)
    small = block(tokens * FP32) + 2 * block(tokens * 8)  # loss_1d, shifted int64 labels
    grad_weight = block(V * H * wb) if not cfg.uses_lora else 0
    logits = block(C * V * c)
    weight_copy = block(V * H * c) if wb != c else 0
    input_copy = block(C * H * c) if hb != c else 0
    forward_peak = grad_input + small + grad_weight + logits + weight_copy + input_copy
    return LogitsBytes(forward_peak, grad_input + grad_weight, grad_input + grad_weight, 0)


def batch_shape(cfg: TrainConfig) -> TrainConfig:
    """The (batch, seq) the model runs: TRL's padding-free collator flattens a micro-batch into one row of
    batch x seq tokens with position ids (DataCollatorForLanguageModeling, padding_free=True)."""
    if not cfg.padding_free:
        return cfg
    return cfg.with_(batch_size=1, seq_len=cfg.batch_size * cfg.seq_len, padding_free=False)


def packed_mask_bytes(cfg: TrainConfig, attn: str) -> int:
    """transformers finds the packed sequences in the position ids (masking_utils.find_packed_sequence_indices)
    and materializes a block-diagonal (1, 1, T, T) boolean mask for sdpa, kept with the layers' inputs;
    eager's additive mask of that size is counted with eager attention; flash_attention_2 runs varlen."""
    if not cfg.padding_free or attn != "sdpa":
        return 0
    T = cfg.batch_size * cfg.seq_len
    return block(T * T)


def slack_logits_bytes(arch: ArchSpec, cfg: TrainConfig) -> int:
    """The logits-sized block the allocator slack scales with (allocator.py): the fp32 logits of the full
    loss; the largest single loss tensor of a fused one (it has no logits to place)."""
    tokens = cfg.batch_size * cfg.seq_len
    loss = cfg.resolved_loss
    _, c, wb = _loss_dtypes(cfg)
    if loss == "fused":
        return min(tokens, TRL_TOKEN_TILE) * TRL_VOCAB_TILE * c
    if loss == "liger":
        weight_copy = arch.vocab_size * arch.hidden_size * c if wb != c else 0
        return max(liger_chunk_tokens(arch, tokens) * arch.vocab_size * c, weight_copy)
    return tokens * arch.vocab_size * FP32
