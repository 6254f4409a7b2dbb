"""The price of each knob on the recommended configuration.

For every knob, one step each way (on/off, a rank up or down, the next LoRA target set, half or
double the sequence, the neighbouring micro-batch split, every other optimizer, quantization and method
changes, the other attention implementation): the memory the changed configuration needs, what it
costs (+) or saves (-) against the recommendation, and whether it still fits with the margin. The
changes are estimated with the same estimator; nothing is extrapolated.
"""

from __future__ import annotations

from dataclasses import replace

from vramfit.catalog import METHODS, QUANTS
from vramfit.catalog.methods import method_label
from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.plan.result import Candidate, KnobPrice
from vramfit.plan.search import Evaluator
from vramfit.plan.space import ATTNS_SEARCHED, OPTIMIZERS_SEARCHED, RANKS, Space, target_ladder


def show(v) -> str:
    """A knob's value as the output writes it: on/off, comma-joined targets, else str()."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, tuple):
        return ",".join(v)
    return str(v)


def knob_changes(space: Space, cfg: TrainConfig) -> list[tuple[str, str, dict]]:
    """(knob, change, TrainConfig changes) for every one-step change of ``cfg``."""
    gc = cfg.gradient_checkpointing
    out = [("gradient_checkpointing", f"{show(gc)} -> {show(not gc)}", {"gradient_checkpointing": not gc})]
    if cfg.uses_lora:
        out += _lora_changes(space, cfg)
    out += _size_changes(space, cfg)
    for opt in OPTIMIZERS_SEARCHED:
        if opt != cfg.optimizer:
            out.append(("optimizer", f"{cfg.optimizer} -> {opt}", {"optimizer": opt}))
    out += _base_changes(space, cfg)
    attn = cfg.attn or space.arch.default_attn
    for other in ATTNS_SEARCHED:
        if other != attn:
            out.append(("attn", f"{attn} -> {other}", {"attn": other}))
    if cfg.is_kbit:
        up = cfg.kbit_upcast
        out.append(("kbit_upcast", f"{show(up)} -> {show(not up)}", {"kbit_upcast": not up}))
    return out


def _lora_changes(space: Space, cfg: TrainConfig) -> list[tuple[str, str, dict]]:
    """A rank up or down, the neighbouring LoRA target sets, dropout off."""
    out = []
    ladder = sorted(set(RANKS) | {cfg.rank})
    i = ladder.index(cfg.rank)
    for j in (i - 1, i + 1):
        if 0 <= j < len(ladder):
            out.append(("rank", f"{cfg.rank} -> {ladder[j]}", {"rank": ladder[j]}))
    targets = list(target_ladder(space.arch))
    if cfg.targets in targets:
        i = targets.index(cfg.targets)
        for j in (i - 1, i + 1):
            if 0 <= j < len(targets):
                t = targets[j]
                out.append(("targets", f"{show(cfg.targets)} -> {show(t)}", {"targets": t}))
    if cfg.dropout > 0:
        out.append(("dropout", f"{cfg.dropout:g} -> 0", {"dropout": 0.0}))
    return out


def _size_changes(space: Space, cfg: TrainConfig) -> list[tuple[str, str, dict]]:
    """Half or double the sequence, the neighbouring micro-batch splits."""
    out = []
    for s in (cfg.seq_len // 2, cfg.seq_len * 2):
        if s > 0:
            out.append(("seq_len", f"{cfg.seq_len} -> {s}", {"seq_len": s}))
    splits = list(space.batches)
    cur = [
        i for i, b in enumerate(splits) if (b.batch_size, b.grad_accum) == (cfg.batch_size, cfg.grad_accum)
    ]
    if cur:
        for j in (cur[0] - 1, cur[0] + 1):
            if 0 <= j < len(splits):
                b = splits[j]
                out.append((
                    "micro-batch",
                    f"{cfg.batch_size}x{cfg.grad_accum} -> {b.batch_size}x{b.grad_accum}",
                    {"batch_size": b.batch_size, "grad_accum": b.grad_accum},
                ))  # fmt: skip
    return out


def _base_changes(space: Space, cfg: TrainConfig) -> list[tuple[str, str, dict]]:
    """The other quantization of the same bits, double quantization, every other method."""
    out: list[tuple[str, str, dict]] = []
    q = QUANTS[cfg.resolved_quant]
    for other in QUANTS.values():  # the other quantizations of the same bits (nf4 <-> fp4)
        if q.bits is not None and other.bits == q.bits and other.name != q.name:
            out.append(("quant", f"{q.name} -> {other.name}", {"quant": other.name}))
    if q.double_quant_applies:
        dq = cfg.double_quant
        out.append(("double_quant", f"{show(dq)} -> {show(not dq)}", {"double_quant": not dq}))
    for method in METHODS.values():
        for quant in method.quants:  # each method's quantizations but those another one dominates
            if (method.name, quant) != (cfg.method, q.name) and not QUANTS[quant].dominated_by:
                ch = {"method": method.name, "quant": quant, "load_dtype": space.load_dtype_for(method.name)}
                lora = f" (r={cfg.rank} on {show(cfg.targets)})" if method.lora and not cfg.uses_lora else ""
                out.append(
                    (
                        "method",
                        f"{method_label(cfg.method, q.name)} -> {method_label(method.name, quant)}{lora}",
                        ch,
                    )
                )
    out += loss_changes(cfg)
    return out


def loss_changes(cfg: TrainConfig) -> list[tuple[str, str, dict]]:
    """The other (trainer, loss) pairs of vramfit.trainers: the loss is a lever of its own."""
    from vramfit.trainers import TRAINERS

    now = (cfg.trainer, cfg.resolved_loss)
    return [
        ("loss", f"{now[0]} {now[1]} -> {t} {loss}", {"trainer": t, "loss": loss})
        for t, spec in TRAINERS.items()
        for loss in spec.losses
        if (t, loss) != now
    ]


def loss_lever_note(prices: list[KnobPrice]) -> list[KnobPrice]:
    """Say where a fused loss saves more than a smaller rank or a shorter sequence does (big vocabularies)."""
    others = [p.delta_bytes for p in prices if p.knob in ("rank", "seq_len") and p.delta_bytes < 0]
    best_other = min(others, default=0)
    out = []
    for p in prices:
        fused = p.knob == "loss" and p.changes.get("loss") in ("fused", "liger")
        if fused and p.delta_bytes < best_other:
            p = replace(p, note="saves more than a smaller rank or a halved sequence: no whole logits")
        out.append(p)
    return out


_FIXED_BY = {
    "micro-batch": ("batch_size", "grad_accum"),
    "method": ("method", "quant"),
    "loss": ("trainer", "loss"),
}


def knob_prices(space: Space, pick: Candidate, evaluator: Evaluator) -> list[KnobPrice]:
    """Price every one-step change of the recommendation (see module docstring)."""
    prices = []
    base_req = pick.required_bytes
    for knob, change, changes in knob_changes(space, pick.config):
        try:
            e = evaluator(pick.config.with_(**changes))
        except InputError as err:  # the card cannot run it (int8 on Pascal, ...)
            prices.append(
                KnobPrice(knob, change, changes, 0, 0, False, _is_fixed(space, knob), note=err.message)
            )
            continue
        note = ""
        if knob == "seq_len" and changes["seq_len"] < space.min_seq:
            note = f"below --seq-len {space.min_seq}"
        prices.append(
            KnobPrice(
                knob,
                change,
                changes,
                e.required_bytes,
                e.required_bytes - base_req,
                e.fits,
                _is_fixed(space, knob),
                note,
            )  # fmt: skip
        )
    return loss_lever_note(prices)


def _is_fixed(space: Space, knob: str) -> bool:
    return any(f in space.fixed for f in _FIXED_BY.get(knob, (knob,)))
