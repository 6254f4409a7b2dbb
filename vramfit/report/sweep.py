"""Required VRAM against sequence length, with gradient checkpointing on and off.

Computed by calling :func:`vramfit.estimate.estimate` for the estimate's model and configuration at
each sequence length, with the card rebuilt from the result's verdict and non-PyTorch memory, so
that the curve passes through the result's own estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vramfit.errors import VramfitError

if TYPE_CHECKING:
    from vramfit.estimate.result import Estimate
    from vramfit.gpus import Card

# Powers of two (and 1.5x steps) people train at; the run's own length is added.
SEQ_LENS = (128, 256, 512, 1024, 2048, 3072, 4096, 6144, 8192)


@dataclass(frozen=True)
class Sweep:
    seq_lens: tuple[int, ...]
    with_checkpointing: tuple[int | None, ...]  # required VRAM bytes; None where the estimate failed
    without_checkpointing: tuple[int | None, ...]
    note: str = ""

    @property
    def empty(self) -> bool:
        return all(v is None for v in (*self.with_checkpointing, *self.without_checkpointing))

    def to_json(self) -> dict:
        return {
            "seq_lens": list(self.seq_lens),
            "with_checkpointing": list(self.with_checkpointing),
            "without_checkpointing": list(self.without_checkpointing),
            "note": self.note,
        }


def _card(part: Estimate) -> Card | None:
    """The card of the result, rebuilt from its verdict and CUDA context (None when it had none).

    Only what moves the required VRAM matters here: the CUDA context (non-PyTorch memory) and the
    card's capabilities (the estimator rejects bf16 on a card without it). Display and driver
    reservations change the verdict, not the requirement, and the chart draws the card's capacity
    from the result itself.
    """
    from vramfit.gpus import resolve_card

    verdict = part.verdict
    if not verdict:
        return None
    ctx = part.non_torch.cuda_context
    context = f"{ctx}B" if ctx > 0 else None
    if verdict.gpu:
        try:
            return resolve_card(gpu=str(verdict.gpu), cuda_context=context)
        except VramfitError:
            pass  # a name this vramfit does not know: a card of the same size
    return resolve_card(vram=f"{int(verdict.capacity_bytes)}B", cuda_context=context)


def seq_len_sweep(part: Estimate | dict, max_seq_len: int | None = None) -> Sweep | None:
    """The sweep for an estimate (or its saved JSON), or None when the model cannot be resolved here
    (e.g. a local config.json that is not on this machine)."""
    from vramfit.config import TrainConfig
    from vramfit.estimate import estimate
    from vramfit.estimate.result import Estimate
    from vramfit.models import resolve_model

    if isinstance(part, dict):
        part = Estimate.from_json(part)
    if not part.config or not part.model:
        return None
    try:
        spec = resolve_model(str(part.model))
        cfg = TrainConfig.from_saved(part.config)
        card = _card(part)
    except (VramfitError, TypeError, ValueError, KeyError):
        return None
    limit = max_seq_len or getattr(spec, "max_position_embeddings", None) or max(SEQ_LENS)
    seqs = sorted({s for s in SEQ_LENS if s <= limit} | {cfg.seq_len})
    on: list[int | None] = []
    off: list[int | None] = []
    failed: list[str] = []
    for s in seqs:
        for gc, out in ((True, on), (False, off)):
            try:
                out.append(
                    estimate(spec, cfg.with_(seq_len=s, gradient_checkpointing=gc), card).required_vram_bytes
                )
            except (VramfitError, ValueError) as e:
                out.append(None)
                failed.append(str(e))
    note = f"{len(failed)} point(s) could not be estimated: {failed[0]}" if failed else ""
    return Sweep(tuple(seqs), tuple(on), tuple(off), note)
