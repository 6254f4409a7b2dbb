"""Optimizers, by ``TrainingArguments.optim`` name: how their state is laid out and what they need.

The state formula reading these rows is ``estimate/optimizers.py``; the probe reads ``library`` (is
bitsandbytes needed), the planner ``searched``, ``paged``, ``family`` and ``dominated_by``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    moments: int  # state tensors per parameter with the parameter's shape (Adam: 2, SGD momentum: 1)
    bits: int  # 32 (state in fp32 or the parameter dtype), 8 (bitsandbytes blockwise)
    paged: bool = False  # bitsandbytes paged state: CUDA managed memory, outside PyTorch's allocator
    state_in_param_dtype: bool = False  # torch optimizers: zeros_like(param)
    factored: bool = False  # Adafactor: row + column second moment for matrices
    foreach_temp: bool = False  # torch foreach: one fp32 temp the size of all params in the step
    library: Literal["torch", "bitsandbytes", "transformers"] = "torch"
    family: str = ""  # the optimizer, paging aside (paged and unpaged rows of one family share it)
    searched: bool = False  # the planner tries it when --optimizer is not given
    dominated_by: str | None = None  # needs more memory than this one and matches it in quality
    note: str = ""

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", self.name)


# Names as transformers' TrainingArguments.optim accepts them (training_args.py OptimizerNames). The
# planner searches the Trainer's default and bitsandbytes' 8-bit and paged ones; 32-bit state is 4x the
# memory of 8-bit blockwise state, which matches it in quality (Dettmers et al. 2022, "8-bit Optimizers
# via Block-wise Quantization"). Others (adafactor, sgd) are used only when the user names them.
_ROWS = (
    OptimizerSpec("adamw_torch", 2, 32, state_in_param_dtype=True, foreach_temp=True, searched=True,
                  dominated_by="adamw_8bit",
                  note="torch.optim.AdamW (foreach): exp_avg + exp_avg_sq like the parameter"),
    OptimizerSpec("adamw_torch_fused", 2, 32, state_in_param_dtype=True,
                  note="torch.optim.AdamW(fused=True): no foreach temporaries"),
    OptimizerSpec("adamw_8bit", 2, 8, library="bitsandbytes", searched=True,
                  note="bitsandbytes AdamW8bit (alias of adamw_bnb_8bit)"),
    OptimizerSpec("adamw_bnb_8bit", 2, 8, library="bitsandbytes", note="bitsandbytes AdamW8bit"),
    OptimizerSpec("paged_adamw_8bit", 2, 8, paged=True, library="bitsandbytes", family="adamw_8bit",
                  searched=True, note="bitsandbytes PagedAdamW8bit"),
    OptimizerSpec("paged_adamw_32bit", 2, 32, paged=True, library="bitsandbytes", family="adamw_32bit",
                  searched=True, dominated_by="paged_adamw_8bit",
                  note="bitsandbytes PagedAdamW32bit (fp32 state)"),
    OptimizerSpec("adafactor", 0, 32, factored=True, library="transformers",
                  note="transformers Adafactor (no first moment, factored second moment)"),
    OptimizerSpec("sgd", 0, 32, note="torch.optim.SGD without momentum: no state"),
)  # fmt: skip
OPTIMIZERS: dict[str, OptimizerSpec] = {s.name: s for s in _ROWS}
