"""Attention implementations (transformers' ``attn_implementation`` names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Attn = Literal["sdpa", "eager", "flash_attention_2"]

# What transformers picks when attn_implementation is not given and the model class supports it
# (PreTrainedModel.get_correct_attn_implementation, modeling_utils.py); models/hf_config.py lists the
# families that fall back to eager.
DEFAULT_ATTN: Attn = "sdpa"


@dataclass(frozen=True)
class AttnSpec:
    name: Attn
    keeps_scores: bool  # materializes the s x s scores (and builds the (b, 1, s, s) additive mask)
    speed: int  # planner throughput order, higher = faster (orders only, no figures claimed)
    searched: bool  # the planner tries it when --attn is not given
    min_cc: tuple[int, int] | None = None
    min_cc_why: str = ""
    softcapping: bool = False  # implements Gemma-2's attention logit soft-capping
    dominated_by: str | None = None  # at least as good in memory and speed
    estimate_note: str = ""  # an approximation of the estimate, shown as a warning


_ROWS = (
    AttnSpec("sdpa", keeps_scores=False, speed=1, searched=True),
    AttnSpec("eager", keeps_scores=True, speed=0, searched=True, softcapping=True, dominated_by="sdpa"),
    # needs the flash-attn package, so the planner uses it only when asked; flash-attn 2 runs on
    # Ampere and newer (its README: "Ampere, Ada, or Hopper GPUs")
    AttnSpec("flash_attention_2", keeps_scores=False, speed=2, searched=False, min_cc=(8, 0),
             min_cc_why="flash_attention_2 needs compute capability 8.0+ (Ampere; use sdpa on older cards)",
             estimate_note="flash_attention_2 needs the flash-attn package; modelled like SDPA's flash kernel"),
)  # fmt: skip
ATTNS: dict[str, AttnSpec] = {a.name: a for a in _ROWS}
