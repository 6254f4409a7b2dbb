"""Required VRAM against sequence length, with gradient checkpointing on and off.

Computed by calling :func:`vramfit.estimate.estimate` for the result's model and configuration at
each sequence length, with the card rebuilt from the result's verdict and non-PyTorch memory, so
that the curve passes through the result's own estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from vramfit.errors import VramfitError

# Powers of two (and 1.5x steps) people train at; the run's own length is added.
SEQ_LENS = (128, 256, 512, 1024, 2048, 3072, 4096, 6144, 8192)


@dataclass(frozen=True)
class Sweep:
    seq_lens: tuple[int, ...]
    with_checkpointing: tuple[int | None, ...]  # required VRAM bytes; None where the estimate failed
    without_checkpointing: tuple[int | None, ...]
    note: str = ""

    def to_json(self) -> dict:
        return {
            "seq_lens": list(self.seq_lens),
            "with_checkpointing": list(self.with_checkpointing),
            "without_checkpointing": list(self.without_checkpointing),
            "note": self.note,
        }


def _train_config(config: dict):
    from vramfit.config import TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    d = {k: v for k, v in config.items() if k in known}
    if "targets" in d and isinstance(d["targets"], list):
        d["targets"] = tuple(d["targets"])
    return TrainConfig(**d)


def _card(part: dict):
    """The card of the result, rebuilt from its verdict and its non-PyTorch memory (or None)."""
    from vramfit.gpus import resolve_card

    verdict = part.get("verdict") or None
    nt = part.get("non_torch_bytes") or {}
    ctx = nt.get("cuda_context")
    kwargs: dict = {}
    if isinstance(ctx, int) and ctx > 0:
        kwargs["cuda_context"] = f"{ctx}B"
    if verdict:
        if verdict.get("gpu"):
            kwargs["gpu"] = verdict["gpu"]
        else:
            kwargs["vram"] = f"{int(verdict['capacity_bytes'])}B"
        reserve = int(verdict.get("capacity_bytes", 0)) - int(verdict.get("usable_bytes", 0))
        if reserve > 0:
            kwargs["display_reserve"] = f"{reserve}B"
    if "gpu" not in kwargs and "vram" not in kwargs:
        return None  # no card: the estimator's own assumptions, as in the result
    return resolve_card(**kwargs)


def seq_len_sweep(part: dict, max_seq_len: int | None = None) -> Sweep | None:
    """The sweep for an estimate-like result dict (model, config, verdict), or None when the
    model cannot be resolved here (e.g. a local config.json that is not on this machine)."""
    from vramfit.estimate import estimate
    from vramfit.models import resolve_model

    config = part.get("config")
    model = part.get("model")
    if not isinstance(config, dict) or not model:
        return None
    try:
        spec = resolve_model(str(model))
        cfg = _train_config(config)
        card = _card(part)
    except (VramfitError, TypeError, ValueError, KeyError):
        return None
    limit = max_seq_len or getattr(spec, "max_position_embeddings", None) or max(SEQ_LENS)
    seqs = sorted({s for s in SEQ_LENS if s <= limit} | {cfg.seq_len})
    on: list[int | None] = []
    off: list[int | None] = []
    failed = 0
    for s in seqs:
        for gc, out in ((True, on), (False, off)):
            try:
                out.append(
                    estimate(spec, cfg.with_(seq_len=s, gradient_checkpointing=gc), card).required_vram_bytes
                )
            except (VramfitError, ValueError):
                out.append(None)
                failed += 1
    note = f"{failed} point(s) could not be estimated" if failed else ""
    return Sweep(tuple(seqs), tuple(on), tuple(off), note)
