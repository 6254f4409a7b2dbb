"""``plan()``: the best training run that fits a card, or the honest no.

space (space.py) -> search (search.py, ranked by objective.py) -> pick + alternatives
                                                                -> knob prices (knobs.py)
                                                                -> code (codegen.py)
                 -> nothing fits -> the honest no (nofit.py)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from vramfit.catalog import OPTIMIZERS
from vramfit.catalog.methods import method_label
from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.models.spec import ArchSpec
from vramfit.plan import codegen, nofit, objective
from vramfit.plan.knobs import knob_prices, show
from vramfit.plan.result import Candidate, PlanResult
from vramfit.plan.search import Evaluator, search
from vramfit.plan.space import Margin, Space, build_space
from vramfit.plan.verify import DEFAULT_TRIES, verify_ranked
from vramfit.units import format_bytes

DEFAULT_TOP = 3


def card_flags(card, given: Mapping[str, str] | None = None) -> list[str]:
    """The card as command-line flags: what the user gave, else --vram with the capacity."""
    if given:
        return [w for k, v in given.items() if v is not None for w in (f"--{k.replace('_', '-')}", str(v))]
    return ["--vram", f"{card.capacity_bytes // (1 << 20)}MiB"]


def _candidate(e: Candidate, trades: tuple[str, ...] = ()) -> Candidate:
    return replace(e, trades=trades)


def trades(pick: Candidate, alt: Candidate) -> tuple[str, ...]:
    """How ``alt`` differs from ``pick``: changed fields, then the memory it needs more or less."""
    a, b = pick.config, alt.config
    out = []
    if (a.method, a.resolved_quant) != (b.method, b.resolved_quant):
        out.append(
            f"{method_label(a.method, a.resolved_quant)} -> {method_label(b.method, b.resolved_quant)}"
        )
    if a.uses_lora and b.uses_lora:
        for f in ("targets", "rank"):
            if getattr(a, f) != getattr(b, f):
                out.append(f"{f} {show(getattr(a, f))} -> {show(getattr(b, f))}")
    elif b.uses_lora:
        out.append(f"LoRA r={b.rank} on {show(b.targets)}")
    for f in ("seq_len", "gradient_checkpointing", "optimizer", "attn", "double_quant"):
        if getattr(a, f) != getattr(b, f) and not (f == "double_quant" and not (a.is_4bit and b.is_4bit)):
            out.append(f"{f} {show(getattr(a, f))} -> {show(getattr(b, f))}")
    if (a.batch_size, a.grad_accum) != (b.batch_size, b.grad_accum):
        out.append(f"micro-batch {a.batch_size}x{a.grad_accum} -> {b.batch_size}x{b.grad_accum}")
    d = alt.required_bytes - pick.required_bytes
    out.append(f"needs {format_bytes(abs(d))} {'more' if d >= 0 else 'less'}")
    return tuple(out)


def _signature(cfg: TrainConfig) -> tuple:
    """Alternatives differ from the pick and from each other in more than the optimizer's paging."""
    return (cfg.method, cfg.resolved_quant, cfg.targets if cfg.uses_lora else None, cfg.rank if cfg.uses_lora else None,
            cfg.gradient_checkpointing, cfg.seq_len, cfg.batch_size, OPTIMIZERS[cfg.optimizer].family)  # fmt: skip


def alternatives(ranked: list[Candidate], n: int) -> list[Candidate]:
    seen = {_signature(ranked[0].config)}
    out = []
    for e in ranked[1:]:
        sig = _signature(e.config)
        if sig not in seen:
            seen.add(sig)
            out.append(e)
            if len(out) == n:
                break
    return out


def estimate_for(expandable_segments: bool, offload: str = "none", gpus: int = 1) -> Callable:
    """The estimate of one candidate under the allocator and the engine planned for: the plain estimate on
    one GPU without offload, else one GPU's share under FSDP2 (:func:`vramfit.estimate.engine.engine_estimate`)."""
    from functools import partial

    if offload == "none" and gpus == 1:
        from vramfit.estimate import estimate

        return partial(estimate, expandable_segments=expandable_segments)
    from vramfit.estimate.engine import engine_estimate

    return partial(engine_estimate, offload=offload, gpus=gpus, expandable_segments=expandable_segments)


def _arch(model: ArchSpec | str) -> ArchSpec:
    from vramfit.models import resolve_model

    return resolve_model(model) if isinstance(model, str) else model


def plan(
    model: ArchSpec | str,
    card,
    fixed: Mapping[str, object] | None = None,
    *,
    min_seq: int | None = None,
    effective_batch: int | None = None,
    margin: Margin | None = None,
    top: int = DEFAULT_TOP,
    card_args: Mapping[str, str] | None = None,
    estimate_fn: Callable | None = None,
    verify: bool = False,
    verify_tries: int = DEFAULT_TRIES,
    probe_fn: Callable | None = None,
    allocator=None,
    offload: str = "none",
    gpus: int = 1,
) -> PlanResult:
    """The best configuration of ``model`` on ``card`` (see objective.py), or why none fits.

    ``fixed``: TrainConfig fields the user holds (all others are searched); ``min_seq``: the shortest
    sequence acceptable; ``effective_batch``: sequences per optimizer step; ``card_args``: the card flags
    as the user gave them (for the printed command lines). ``verify``: probe the best candidates on
    the emulated card until one fits for real (verify.py); the misses are recorded in the result.
    ``allocator``: the :class:`vramfit.allocator_settings.AllocatorSetting` planned for (default: PyTorch's
    default caching allocator); with expandable segments every estimate, the margin, the code and the
    command lines are those of that allocator. ``offload``/``gpus``: the run goes through FSDP2 (CPU offload,
    several GPUs): every estimate is one GPU's share, and the code is the engine's training script.
    """
    if card is None:
        raise InputError("--vram", "plan needs the card: give --vram SIZE (e.g. 4GB) or --gpu NAME")
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise InputError("--top", f"must be a whole number >= 0, got {top!r}")
    arch = _arch(model)
    expandable = bool(allocator is not None and allocator.expandable_segments)
    estimate_fn = estimate_for(expandable, offload, gpus) if estimate_fn is None else estimate_fn
    margin = margin or Margin.for_allocator(expandable)
    fixed = dict(fixed or {})
    space = build_space(arch, card, fixed, min_seq=min_seq, effective_batch=effective_batch)
    evaluator = Evaluator(arch, card, margin, estimate_fn)
    outcome = search(space, evaluator, keep=top + (verify_tries if verify else 0))
    ranked, trials = outcome.ranked, []
    if verify and ranked:
        found, trials = verify_ranked(arch, card, ranked, verify_tries, probe_fn)
        ranked = ranked[found:] if found is not None else []
    engine = (offload, gpus)
    return _result(space, ranked, outcome.smallest, evaluator, card, margin, fixed, top, card_args, outcome.stats,
                   tuple(trials), allocator, engine)  # fmt: skip


def _allocator_notes(arch, pick, card, allocator, engine=("none", 1)) -> tuple[str, ...]:
    """What the plan assumed of the allocator, and what the pick needs without expandable segments (under
    the same engine)."""
    if allocator is None:
        return ()
    notes = [f"planned for {allocator.name}: {allocator.env_line()}"]
    notes += list(allocator.warnings)
    if allocator.expandable_segments and pick is not None:
        default = estimate_for(False, *engine)(arch, pick.config, card)
        low, need = default.required_vram_low_bytes, default.required_vram_bytes
        notes.insert(0, f"needs {allocator.env_line()}: without it (PyTorch's default allocator) the pick "
                        f"needs {format_bytes(low)} to {format_bytes(need)}")  # fmt: skip
    return tuple(notes)


def _result(space: Space, ranked, smallest, evaluator, card, margin, fixed, top, card_args, stats,
            trials=(), allocator=None, engine=("none", 1)) -> PlanResult:  # fmt: skip
    arch = space.arch
    env = allocator.env_line() if allocator is not None and allocator.expandable_segments else None
    common = dict(
        model=arch.name,
        card=card.to_json(),
        margin=margin,
        search=stats,
        space=space.to_json(),
        notes=_allocator_notes(arch, ranked[0] if ranked else None, card, allocator, engine)
        + tuple(card.assumed)
        + space.notes,
        objective=tuple(objective.describe()),
        verification=trials,
    )
    if not ranked and trials:  # every candidate probed ran out of memory for real
        return PlanResult(recommended=None, alternatives=(), knob_prices=(), no_fit=None, **common)
    if not ranked:
        return PlanResult(recommended=None, alternatives=(), knob_prices=(),
                          no_fit=nofit.explain(space, smallest, card, margin, fixed), **common)  # fmt: skip
    pick = ranked[0]
    flags = card_flags(card, card_args) + codegen.engine_flags(*engine)
    return PlanResult(
        recommended=_candidate(pick),
        alternatives=tuple(_candidate(e, trades(pick, e)) for e in alternatives(ranked, top)),
        knob_prices=tuple(knob_prices(space, pick, evaluator)),
        no_fit=None,
        code=codegen.training_code(arch, pick.config, env, *engine),
        code_kind="recipe" if engine == ("none", 1) else "fsdp2",
        estimate_command=codegen.command_line("estimate", arch.name, pick.config, flags, env),
        probe_command=codegen.command_line("probe", arch.name, pick.config, flags, env),
        **common,
    )
