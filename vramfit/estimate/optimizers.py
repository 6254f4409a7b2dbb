"""Optimizer state, by ``TrainingArguments.optim`` name.

Each optimizer is a row of ``catalog/optimizers.py``: state tensors per trainable value, how
bitsandbytes' 8-bit and paged variants lay them out, the temporaries of its step. This module turns a
row and the trainable tensors into bytes. State appears during the first optimizer step and stays
(Adam's two moments: Kingma & Ba 2015).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vramfit.catalog.optimizers import OPTIMIZERS, OptimizerSpec
from vramfit.estimate.alloc import block

__all__ = ["OPTIMIZERS", "OptimizerSpec", "OptimizerBytes", "optimizer_bytes", "trainer_optimizer_bytes"]

# bitsandbytes optim/optimizer.py (Optimizer8bit / Optimizer2State):
BNB_MIN_8BIT_SIZE = 4096  # tensors with fewer values keep 32-bit state (min_8bit_size)
BNB_BLOCKSIZE = 256  # blockwise 8-bit state: one fp32 absmax per 256 values
BNB_PAGE_MIN_NUMEL = 100_000  # paged optimizers put state buffers of >= 1e5 values in managed memory
#                               (``get_state_buffer``: ``if not self.is_paged or A.numel() < 1e5``)


@dataclass(frozen=True)
class OptimizerBytes:
    torch_state: int  # in PyTorch's allocator
    paged_state: int  # CUDA managed memory (non-torch)
    step_temp: int  # transient during optimizer.step()


def optimizer_bytes(
    spec: OptimizerSpec, tensors: list[tuple[int, int, int]], param_bytes: int
) -> OptimizerBytes:
    """State for trainable tensors given as (rows, cols, count) (cols=1 for vectors); ``param_bytes``
    is the trainable dtype's size."""
    torch_state = paged = temp = 0
    largest = 0
    for rows, cols, count in tensors:
        n = rows * cols
        largest = max(largest, n)
        if spec.factored:
            # transformers/optimization.py Adafactor._get_options: factored when ndim >= 2;
            # exp_avg_sq_row (rows) + exp_avg_sq_col (cols), fp32; vectors keep a full exp_avg_sq.
            torch_state += count * (block(rows * 4) + block(cols * 4) if cols > 1 else block(n * 4))
            continue
        if spec.moments == 0:
            continue
        if spec.bits == 8 and n >= BNB_MIN_8BIT_SIZE:
            each = n  # uint8 state1 / state2 ...
            torch_state += count * spec.moments * block(-(-n // BNB_BLOCKSIZE) * 4)  # ... + fp32 absmax each
        else:
            each = n * (param_bytes if spec.state_in_param_dtype else 4)
        if spec.paged and n >= BNB_PAGE_MIN_NUMEL:
            paged += count * spec.moments * each  # managed memory: page-granular, outside torch
        else:
            torch_state += count * spec.moments * block(each)
    if spec.foreach_temp:
        # torch/optim/adamw.py _multi_tensor_adamw: torch._foreach_sqrt(exp_avg_sqs) makes a copy of all
        # second moments at once (one foreach group per device and dtype).
        temp = sum(count * block(r * c * param_bytes) for r, c, count in tensors)
    elif spec.factored:
        temp = 2 * block(largest * 4)  # grad**2 + eps and the update, for the largest tensor
    elif spec.bits == 8 or spec.paged:
        temp = 0  # bitsandbytes updates each tensor in place in one kernel
    return OptimizerBytes(torch_state, paged, temp)


def trainer_optimizer_bytes(
    spec: OptimizerSpec, tensors: list[tuple[int, int, int]], param_bytes: int, full: bool
) -> OptimizerBytes:
    """:func:`optimizer_bytes` as the Trainer creates the optimizer; ``full``: full fine-tuning, whose
    first tensor of ``tensors`` is the (tied) embedding.

    transformers' Trainer (create_optimizer) registers every nn.Embedding weight with bitsandbytes'
    GlobalOptimManager as {"optim_bits": 32}: the (tied) embedding keeps fp32 Adam state.
    """
    if not (full and spec.bits == 8):
        return optimizer_bytes(spec, tensors, param_bytes)
    embedding, rest = tensors[0], tensors[1:]
    emb_only = [(embedding[0], embedding[1], 1)]
    rest = rest + ([(embedding[0], embedding[1], embedding[2] - 1)] if embedding[2] > 1 else [])
    a = optimizer_bytes(replace(spec, bits=32), emb_only, param_bytes)
    b = optimizer_bytes(spec, rest, param_bytes)
    return OptimizerBytes(
        a.torch_state + b.torch_state, a.paged_state + b.paged_state, max(a.step_temp, b.step_temp)
    )
