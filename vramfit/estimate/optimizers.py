"""Optimizer state, by ``TrainingArguments.optim`` name.

Each optimizer is a small table row: bytes of state per trainable value, how bitsandbytes' 8-bit and
paged variants lay it out, and the temporaries of its step. State appears during the first optimizer
step and stays (Adam's two moments: Kingma & Ba 2015).
"""

from __future__ import annotations

from dataclasses import dataclass

from vramfit.estimate.alloc import block

# bitsandbytes optim/optimizer.py (Optimizer8bit / Optimizer2State):
BNB_MIN_8BIT_SIZE = 4096  # tensors with fewer values keep 32-bit state (min_8bit_size)
BNB_BLOCKSIZE = 256  # blockwise 8-bit state: one fp32 absmax per 256 values
BNB_PAGE_MIN_NUMEL = 100_000  # paged optimizers put state buffers of >= 1e5 values in managed memory
#                               (``get_state_buffer``: ``if not self.is_paged or A.numel() < 1e5``)


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    moments: int  # state tensors per parameter with the parameter's shape (Adam: 2, SGD momentum: 1)
    bits: int  # 32 (state in fp32 or the parameter dtype), 8 (bitsandbytes blockwise)
    paged: bool = False
    state_in_param_dtype: bool = False  # torch optimizers: zeros_like(param)
    factored: bool = False  # Adafactor: row + column second moment for matrices
    foreach_temp: bool = False  # torch foreach: one fp32 temp the size of all params in the step
    note: str = ""


# Names as transformers' TrainingArguments.optim accepts them (training_args.py OptimizerNames).
_SPECS = [
    OptimizerSpec("adamw_torch", 2, 32, state_in_param_dtype=True, foreach_temp=True,
                  note="torch.optim.AdamW (foreach): exp_avg + exp_avg_sq like the parameter"),
    OptimizerSpec("adamw_torch_fused", 2, 32, state_in_param_dtype=True,
                  note="torch.optim.AdamW(fused=True): no foreach temporaries"),
    OptimizerSpec("adamw_8bit", 2, 8, note="bitsandbytes AdamW8bit (alias of adamw_bnb_8bit)"),
    OptimizerSpec("adamw_bnb_8bit", 2, 8, note="bitsandbytes AdamW8bit"),
    OptimizerSpec("paged_adamw_8bit", 2, 8, paged=True, note="bitsandbytes PagedAdamW8bit"),
    OptimizerSpec("paged_adamw_32bit", 2, 32, paged=True, note="bitsandbytes PagedAdamW32bit (fp32 state)"),
    OptimizerSpec("adafactor", 0, 32, factored=True,
                  note="transformers Adafactor (no first moment, factored second moment)"),
    OptimizerSpec("sgd", 0, 32, note="torch.optim.SGD without momentum: no state"),
]  # fmt: skip
OPTIMIZERS: dict[str, OptimizerSpec] = {s.name: s for s in _SPECS}


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
