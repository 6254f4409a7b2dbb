"""The language-model head and the loss: for small models with big vocabularies, the peak.

transformers computes ``logits = lm_head(h)`` in the compute dtype and ``ForCausalLMLoss`` upcasts them
(``logits = logits.float()``, ``loss/loss_utils.py``) before ``cross_entropy`` = ``log_softmax`` (which keeps
its fp32 output for backward) + ``nll_loss``. Per token, with V the vocabulary:

    forward, at the loss:   logits (compute dtype) + fp32 copy + log_softmax output      = (c + 4 + 4) V
    kept into backward:     log_softmax output (the logits are freed when compute_loss returns)  = 4 V
    backward, log_softmax:  its output + incoming gradient + outgoing gradient          = 12 V

Under autocast an fp32 ``lm_head`` (after the kbit upcast) is cast to the compute dtype on every forward
and that copy is kept for the input gradient (autocast caches casts only of trainable leaves): V x h x c.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramfit.catalog import DTYPES
from vramfit.catalog.dtypes import FP32_BYTES as FP32
from vramfit.catalog.dtypes import dtypes, unquantized_dtype
from vramfit.config import TrainConfig
from vramfit.estimate.alloc import block
from vramfit.models.spec import ArchSpec


@dataclass(frozen=True)
class LogitsBytes:
    forward_peak: int  # at the end of the loss' forward
    kept: int  # alive from the loss to the start of backward
    backward_peak: int  # during log_softmax backward
    head_weight_copy: int  # compute-dtype copy of lm_head kept from forward to backward


def logits_bytes(arch: ArchSpec, cfg: TrainConfig, tokens: int) -> LogitsBytes:
    d = dtypes(cfg)
    lb = d.compute if d.autocast else d.hidden  # dtype of lm_head's output
    V = arch.vocab_size
    soft = lb if arch.final_logit_softcapping else 0  # Gemma-2: tanh(logits / cap) keeps its output
    up = FP32 if lb != FP32 else 0  # .float() makes a copy only when the logits are not fp32 already
    forward_peak = (lb + soft + up + FP32) * V * tokens
    kept = (FP32 + soft) * V * tokens
    backward_peak = (3 * FP32 + soft) * V * tokens
    head_dtype = DTYPES[unquantized_dtype(cfg)].bytes
    copy = block(V * arch.hidden_size * d.compute) if (d.autocast and head_dtype != d.compute) else 0
    return LogitsBytes(block(forward_peak), block(kept), block(backward_peak), copy)
