"""The planner's search space: what the user fixed, what may be searched, and the safety margin.

A configuration is split in two (see ``search.py``):

* a *shape*: method, quantization, double quantization, LoRA targets and rank, gradient checkpointing,
  optimizer and attention implementation (and the dtypes the card dictates);
* a *size*: sequence length and micro-batch (with gradient accumulation that keeps the effective batch).

Every flag the user gives is fixed; everything else takes the values listed here (the catalog's rows
marked searched). The dtypes are not searched: the card decides them (``catalog.card``: bf16 where the
card computes in it, fp16 otherwise), and what the card cannot run is left out with a note.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vramfit.catalog import ATTNS, DTYPES, METHODS, OPTIMIZERS, QUANTS
from vramfit.catalog import card as card_rule
from vramfit.config import TrainConfig, normalize_dtype, validate
from vramfit.errors import InputError, one_of
from vramfit.estimate.adapters import resolve_targets
from vramfit.models.spec import ArchSpec
from vramfit.units import MiB, format_bytes, parse_size

if TYPE_CHECKING:
    from vramfit.gpus import Card

# ---- what is searched when the user does not fix it ------------------------------------------------

RANKS = (8, 16, 32, 64, 128)  # LoRA ranks, ascending (memory grows with r)
OPTIMIZERS_SEARCHED = tuple(name for name, o in OPTIMIZERS.items() if o.searched)
ATTNS_SEARCHED = tuple(name for name, a in ATTNS.items() if a.searched)
_RECIPE = TrainConfig()
DEFAULT_MIN_SEQ = _RECIPE.seq_len  # the recipe's 512 tokens, when --seq-len is not given
MAX_SEQ = 8192  # the search stops doubling the sequence here (or at the model's context length)
DEFAULT_EFFECTIVE_BATCH = 16  # sequences per optimizer step when neither --effective-batch nor
#                               --batch-size / --grad-accum is given (a common QLoRA recipe: 4 x 4)

# Dimensions along which memory never decreases (checked against the estimator in tests/test_plan.py).
# The search uses them to bound one shape's largest fitting size by a cheaper shape's.
MEMORY_ORDER = {
    "gradient_checkpointing": (True, False),  # off keeps every layer's activations
    "attn": tuple(sorted(ATTNS_SEARCHED, key=lambda a: ATTNS[a].keeps_scores)),  # scores kept last
    "double_quant": (True, False),  # double quantization shrinks the absmax constants
    "quant": tuple(q for q, spec in QUANTS.items() if spec.bits == 4),  # the same bits per weight
}

# Values that can never win against another value of the same dimension, all else equal: they need at
# least as much memory (so fit no longer sequence, no larger micro-batch) and rank no higher in the
# objective (objective.py). A shape holding one is settled without an estimate when the better value is
# in the space too; knobs.py still prices them on the recommended configuration.
# The rows' ``dominated_by`` (each says why in its table).
DOMINATED = {
    "attn": {a: spec.dominated_by for a, spec in ATTNS.items() if spec.dominated_by},
    "double_quant": {False: True},  # more memory, same quality (QLoRA paper, section 4)
    "quant": {q: spec.dominated_by for q, spec in QUANTS.items() if spec.dominated_by},
    "optimizer": {o: spec.dominated_by for o, spec in OPTIMIZERS.items() if spec.dominated_by},
}

# ---- the safety margin --------------------------------------------------------------------------

# The margin a plan keeps under each allocator is the worst under-estimate of that allocator's requirement,
# held out by model family, on the estimated peak (what vramfit prints, so the peak's own error is in it):
# read from the data file its fit wrote (Margin.for_allocator). The defaults below are what a Margin built
# by hand gets (3 % + 64 MiB, never measured).
DEFAULT_MARGIN_FRACTION = 0.03
DEFAULT_MARGIN_SLACK = 64 * MiB


def held_out_floor(expandable_segments: bool) -> tuple[float, int, str]:
    """(the worst held-out under-estimate, as a fraction >= 0; runs; data file) of the allocator's
    requirement model: vramfit/data/expandable_fit.json or vramfit/data/allocator_fit.json."""
    if expandable_segments:
        from vramfit.estimate.expandable import FIT_NAME, load_fit

        fit = load_fit()
        return max(0.0, -fit.held_out_most_negative), fit.runs, f"vramfit/data/{FIT_NAME}"
    from vramfit.estimate.allocator import FIT

    h = FIT["required"]["held_out"]
    return max(0.0, -h["lowest_error"]), h["runs"], "vramfit/data/allocator_fit.json"


@dataclass(frozen=True)
class Margin:
    """Memory kept free on top of the estimate: ``fraction`` of it plus ``slack`` bytes."""

    fraction: float = DEFAULT_MARGIN_FRACTION
    slack: int = DEFAULT_MARGIN_SLACK
    provisional: bool = True  # the default, not measured yet
    basis: str = ""  # where a derived margin comes from

    @classmethod
    def for_allocator(cls, expandable_segments: bool) -> Margin:
        """The margin for the allocator planned for: its requirement model's worst held-out under-estimate
        (:func:`held_out_floor`), rounded up to 0.1 %."""
        floor, runs, source = held_out_floor(expandable_segments)
        fraction = math.ceil(floor * 1000 - 1e-9) / 1000
        name = "expandable segments" if expandable_segments else "the default caching allocator"
        return cls(fraction=fraction, slack=0, provisional=False,
                   basis=f"{name}: the worst held-out under-estimate of its requirement, {floor:.2%} on {runs} "
                   f"--find-min runs ({source})")  # fmt: skip

    def bytes_for(self, required: int) -> int:
        return int(required * self.fraction) + self.slack

    def describe(self) -> str:
        parts = []
        if self.fraction:
            parts.append(f"{self.fraction * 100:g}% of the estimate")
        if self.slack:
            parts.append(f"{format_bytes(self.slack)} allocator slack")
        text = " + ".join(parts) or "none"
        if self.basis:
            text += f" ({self.basis})"
        elif self.provisional:
            text += " (default; provisional until the accuracy benchmark measures the estimator's error band)"
        return text

    def to_json(self) -> dict:
        return {"fraction": self.fraction, "slack_bytes": self.slack, "provisional": self.provisional,
                "basis": self.basis}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> Margin:
        return cls(float(d.get("fraction") or 0.0), int(d.get("slack_bytes") or 0),
                   bool(d.get("provisional", False)), str(d.get("basis") or ""))  # fmt: skip


_PCT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


def parse_margin(text: str) -> Margin:
    """``--margin``: a size (``300MiB``, ``0.5GB``, ``0``) or a percentage of the estimate (``15%``)."""
    shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:37] + "..."
    m = _PCT.match(str(text))
    if m:
        pct = float(m.group(1))
        if pct >= 100:
            raise InputError("--margin", f"a percentage must be below 100%, got {shown}")
        return Margin(fraction=pct / 100, slack=0, provisional=False)
    if str(text).strip() in ("0", "0%", "none"):
        return Margin(fraction=0.0, slack=0, provisional=False)
    try:
        return Margin(fraction=0.0, slack=parse_size(text, "--margin"), provisional=False)
    except InputError as e:
        why = "too large" if "too large" in e.message else "cannot read"
        raise InputError(
            "--margin",
            f"{why}: {shown}; accepted: a size (300MiB, 0.5GB, 0, at most 1024 GiB) or a percentage (15%)",
        ) from None


# ---- the space ------------------------------------------------------------------------------------

SHAPE_FIELDS = (
    "method",
    "quant",
    "double_quant",
    "targets",
    "rank",
    "gradient_checkpointing",
    "optimizer",
    "attn",
)


@dataclass(frozen=True)
class BatchSplit:
    """A micro-batch and the gradient accumulation that keeps the effective batch."""

    batch_size: int
    grad_accum: int


@dataclass(frozen=True)
class Space:
    arch: ArchSpec
    base: TrainConfig  # fixed fields and the card's dtypes; shape and size fields are overwritten
    fixed: frozenset[str]  # TrainConfig fields the user fixed
    shape_values: dict[str, tuple]  # SHAPE_FIELDS -> candidate values (one value when fixed)
    seqs: tuple[int, ...]  # ascending
    batches: tuple[BatchSplit, ...]  # ascending micro-batch
    effective_batch: int | None  # None when only --grad-accum was given (micro-batch free)
    min_seq: int
    notes: tuple[str, ...] = field(default=())  # assumptions to state in the output

    def shapes(self) -> Iterator[tuple]:
        """Every valid shape, as tuples in SHAPE_FIELDS order, cheap shapes of each family first."""
        v = self.shape_values
        for method in v["method"]:
            quants = [q for q in v["quant"] if q in METHODS[method].quants]
            lora = METHODS[method].lora
            for quant in quants:
                dqs = v["double_quant"] if QUANTS[quant].double_quant_applies else (self.base.double_quant,)
                targets = v["targets"] if lora else (self.base.targets,)
                ranks = v["rank"] if lora else (self.base.rank,)
                for dq, opt, t, r, gc, attn in itertools.product(
                    dqs, v["optimizer"], targets, ranks, v["gradient_checkpointing"], v["attn"]
                ):
                    yield (method, quant, dq, t, r, gc, opt, attn)

    def config(self, shape: tuple, seq: int, split: BatchSplit) -> TrainConfig:
        method, quant, dq, targets, rank, gc, opt, attn = shape
        return self.base.with_(
            method=method, quant=quant, double_quant=dq, targets=targets, rank=rank,
            load_dtype=self.load_dtype_for(method),
            gradient_checkpointing=gc, optimizer=opt, attn=attn, seq_len=seq,
            batch_size=split.batch_size, grad_accum=split.grad_accum,
        )  # fmt: skip

    def load_dtype_for(self, method: str) -> str:
        """The load dtype of ``method`` in this space (:func:`load_dtype_for`)."""
        return load_dtype_for(self.base, self.fixed, method)

    @property
    def size(self) -> int:
        """Configurations in the space (shapes x sequence lengths x micro-batches)."""
        return sum(1 for _ in self.shapes()) * len(self.seqs) * len(self.batches)

    def to_json(self) -> dict:
        return {
            "fixed": sorted(self.fixed),
            "searched": {
                k: [list(x) if isinstance(x, tuple) else x for x in vs]
                for k, vs in self.shape_values.items()
                if len(vs) > 1
            },  # fmt: skip
            "seq_lens": list(self.seqs),
            "micro_batches": [[b.batch_size, b.grad_accum] for b in self.batches],
            "effective_batch": self.effective_batch,
            "min_seq_len": self.min_seq,
            "notes": list(self.notes),
        }


def target_ladder(arch: ArchSpec) -> tuple[tuple[str, ...], ...]:
    """LoRA target sets tried, smallest first: q+v (the recipe), all attention projections, all-linear.

    Sets that select the same modules on this architecture are kept once (Phi-3's fused qkv_proj).
    """
    first = ("q_proj", "v_proj") if {"q_proj", "v_proj"} <= set(arch.linear_by_name) else ("qkv_proj",)
    ladder, seen = [], set()
    for t in (first, ("attention",), ("all-linear",)):
        mods = frozenset(m.name for m in resolve_targets(arch, t))
        if mods not in seen:
            seen.add(mods)
            ladder.append(t)
    return tuple(ladder)


def _methods_and_quants(fixed: Mapping) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The methods and quantizations the user's --method / --quant leave (before the card)."""
    methods = (fixed["method"],) if "method" in fixed else tuple(METHODS)
    for m in methods:
        if m not in METHODS:
            raise one_of("--method", str(m), METHODS)
    if "quant" not in fixed:
        return methods, tuple(dict.fromkeys(q for m in methods for q in METHODS[m].quants))
    q = fixed["quant"]
    if q not in QUANTS:
        raise one_of("--quant", str(q), QUANTS)
    methods = tuple(m for m in methods if q in METHODS[m].quants)
    if not methods:
        ok = [m for m in METHODS if q in METHODS[m].quants]
        raise InputError("--quant", f"{q} does not go with --method {fixed['method']}; use --method {ok[0]}")
    return methods, (q,)


def _compute_dtype(card: Card, fixed: Mapping, methods: tuple[str, ...]) -> tuple[str, list[str]]:
    """The compute dtype on the card (``catalog.card``: bf16 where it computes in it, else fp16), and
    notes. The load dtype follows (:func:`load_dtype_for`)."""
    cc, where = card.compute_capability, card.name or "this card"
    notes = []
    if "compute_dtype" in fixed:
        compute = normalize_dtype(fixed["compute_dtype"], "--compute-dtype")
        problem = card_rule.compute_problem(compute, cc, where)
        if problem is not None:
            raise problem
    else:
        compute = card_rule.compute_dtype_for(cc)
        if compute != _RECIPE.compute_dtype:
            notes.append(f"{where} has no {_RECIPE.compute_dtype} ({_cc(card)}): {compute} compute")
    if (
        "load_dtype" not in fixed
        and DTYPES[compute].fp32_master_weights
        and any(not METHODS[m].lora for m in methods)
    ):
        notes.append(f"full fine-tuning in {compute} mixed precision keeps fp32 weights (load dtype fp32)")
    return compute, notes


def _cc(card: Card) -> str:
    cc = card.compute_capability
    return f"compute capability {cc[0]}.{cc[1]}" if cc else "compute capability unknown"


def _runnable(card: Card, base: TrainConfig, fixed: Mapping, methods: tuple[str, ...],
              quants: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:  # fmt: skip
    """The methods and quantizations the card runs (``catalog.card``), and notes on what it does not.
    Raises the card rule's error when nothing the user's flags allow runs."""
    cc, where = card.compute_capability, card.name or "this card"
    refused: dict[str, InputError] = {}
    for q in quants:
        problems = [card_rule.card_problems(_with(base, fixed, m, q), None, cc, where)
                    for m in methods if q in METHODS[m].quants]  # fmt: skip
        if all(problems):
            refused[q] = problems[0][0]
    if len(refused) == len(quants):
        raise next(iter(refused.values()))
    problem = card_rule.attn_problem(fixed.get("attn"), cc, where)  # the rule's order: dtype, quant, attn
    if problem is not None:
        raise problem
    notes = []
    by_bnb = [q for q, e in refused.items() if e.flag == "--quant"]
    if by_bnb:
        notes.append(f"{where} cannot run bitsandbytes {', '.join(by_bnb)}: not searched")
    notes += [f"--quant {q} not searched: {e.message}" for q, e in refused.items() if e.flag != "--quant"]
    quants = tuple(q for q in quants if q not in refused)
    return tuple(m for m in methods if any(q in quants for q in METHODS[m].quants)), quants, notes


def _with(base: TrainConfig, fixed: Mapping, method: str, quant: str) -> TrainConfig:
    return base.with_(method=method, quant=quant, load_dtype=load_dtype_for(base, fixed, method))


def load_dtype_for(base: TrainConfig, fixed: Collection[str], method: str) -> str:
    """The user's --load-dtype, else the compute dtype; fp32 for full fine-tuning in fp16 mixed
    precision (the Trainer refuses to unscale fp16 gradients: it needs fp32 master weights)."""
    if "load_dtype" in fixed:
        return base.load_dtype
    if not METHODS[method].lora and DTYPES[base.compute_dtype].fp32_master_weights:
        return "fp32"
    return base.compute_dtype


def build_space(
    arch: ArchSpec,
    card: Card,
    fixed: Mapping[str, object] | None = None,
    *,
    min_seq: int | None = None,
    effective_batch: int | None = None,
    optimizers: tuple[str, ...] | None = None,
) -> Space:
    """The space for ``arch`` on ``card`` with the TrainConfig fields in ``fixed`` held.

    ``fixed`` may hold any TrainConfig field but ``seq_len`` (``min_seq`` is its minimum). ``batch_size``
    and ``grad_accum`` in ``fixed`` fix the micro-batch / accumulation. Raises InputError naming the flag.
    """
    fixed = dict(fixed or {})
    fixed.pop("seq_len", None)
    known = set(TrainConfig.__dataclass_fields__)
    for k in fixed:
        if k not in known:
            raise InputError(k, f"not a configuration field; accepted: {', '.join(sorted(known))}")
    methods, quants = _methods_and_quants(fixed)
    compute, notes = _compute_dtype(card, fixed, methods)
    base = TrainConfig(**{k: v for k, v in fixed.items() if k not in SHAPE_FIELDS}).with_(
        compute_dtype=compute
    )
    if "load_dtype" in fixed:
        base = base.with_(load_dtype=normalize_dtype(fixed["load_dtype"], "--load-dtype"))
    methods, quants, card_notes = _runnable(card, base, fixed, methods, quants)
    values = _shape_values(arch, fixed, methods, quants, optimizers or tuple(OPTIMIZERS))
    # validate the fixed values once (one representative shape): errors name their flags
    sample = base.with_(method=methods[0], quant=next(q for q in quants if q in METHODS[methods[0]].quants),
                        targets=values["targets"][0], rank=values["rank"][0],
                        optimizer=values["optimizer"][0] if values["optimizer"] else "")  # fmt: skip
    validate(sample, optimizers or tuple(OPTIMIZERS))
    notes = card_notes + notes
    seqs, seq0 = _seq_lens(arch, min_seq, notes)
    batches, eff = _batch_splits(fixed, effective_batch, notes)
    return Space(arch, base, frozenset(fixed), values, seqs, batches, eff, seq0, tuple(notes))


def _shape_values(arch: ArchSpec, fixed: Mapping, methods: tuple[str, ...], quants: tuple[str, ...],
                  optimizers: tuple[str, ...]) -> dict[str, tuple]:  # fmt: skip
    """SHAPE_FIELDS -> the values searched (the one value the user fixed)."""
    values: dict[str, tuple] = {
        "method": methods,
        "quant": quants,
        "double_quant": (True, False),
        "targets": target_ladder(arch),
        "rank": RANKS,
        "gradient_checkpointing": (True, False),
        "optimizer": tuple(o for o in OPTIMIZERS_SEARCHED if o in optimizers),
        "attn": ATTNS_SEARCHED,
    }
    for k in SHAPE_FIELDS:
        if k in fixed:
            values[k] = (tuple(fixed[k]) if k == "targets" else fixed[k],)
    if "targets" in fixed:
        resolve_targets(arch, values["targets"][0])  # InputError naming --targets for unknown modules
    return values


def _seq_lens(arch: ArchSpec, min_seq: int | None, notes: list[str]) -> tuple[tuple[int, ...], int]:
    """The sequence lengths: the minimum, then doublings up to the context length (or MAX_SEQ)."""
    seq0 = min_seq if min_seq is not None else DEFAULT_MIN_SEQ
    if isinstance(seq0, bool) or not isinstance(seq0, int) or seq0 <= 0:
        raise InputError("--seq-len", f"must be a positive whole number, got {seq0!r}")
    if min_seq is None:
        notes.append(f"shortest sequence considered: {seq0} tokens (set a minimum with --seq-len)")
    top = max(seq0, min(MAX_SEQ, arch.max_position_embeddings))
    if seq0 > arch.max_position_embeddings:
        notes.append(
            f"--seq-len {seq0} is beyond {arch.name}'s max_position_embeddings ({arch.max_position_embeddings})"
        )
    seqs = [seq0]
    while seqs[-1] * 2 <= top:
        seqs.append(seqs[-1] * 2)

    return tuple(seqs), seq0


def _batch_splits(
    fixed: Mapping, effective_batch: int | None, notes: list[str]
) -> tuple[tuple[BatchSplit, ...], int | None]:
    for flag, v in (("--effective-batch", effective_batch), ("--batch-size", fixed.get("batch_size")),
                    ("--grad-accum", fixed.get("grad_accum"))):  # fmt: skip
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise InputError(flag, f"must be a positive whole number, got {v!r}")
    b, a = fixed.get("batch_size"), fixed.get("grad_accum")
    e = effective_batch
    if e is None and b is not None and a is not None:
        e = b * a
    elif e is None and b is not None:
        a = -(-DEFAULT_EFFECTIVE_BATCH // b)
        e = b * a
        notes.append(f"effective batch {e} = --batch-size {b} x {a} accumulation (set --effective-batch)")
    elif e is None and a is not None:
        splits = [BatchSplit(m, a) for m in (1, 2, 4, 8, 16)]
        notes.append(
            f"--grad-accum {a} without --effective-batch: micro-batch searched, effective batch varies"
        )
        return tuple(splits), None
    elif e is None:
        e = DEFAULT_EFFECTIVE_BATCH
        notes.append(f"effective batch {e} sequences per optimizer step (set --effective-batch)")
    if b is not None and a is not None and b * a != e:
        raise InputError("--effective-batch", f"{e} is not --batch-size {b} x --grad-accum {a} = {b * a}")
    if b is not None:
        if e % b:
            raise InputError(
                "--batch-size", f"{b} does not divide --effective-batch {e}; use a divisor of {e}"
            )
        return (BatchSplit(b, e // b),), e
    if a is not None:
        if e % a:
            raise InputError(
                "--grad-accum", f"{a} does not divide --effective-batch {e}; use a divisor of {e}"
            )
        return (BatchSplit(e // a, a),), e
    return tuple(BatchSplit(m, e // m) for m in _divisors(e)), e


def _divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending, in sqrt(n) steps."""
    small = [m for m in range(1, math.isqrt(n) + 1) if n % m == 0]
    return small + [n // m for m in reversed(small) if m * m != n]


__all__ = [
    "Space", "BatchSplit", "Margin", "build_space", "parse_margin", "target_ladder", "SHAPE_FIELDS",
    "MEMORY_ORDER", "DOMINATED", "RANKS",
]  # fmt: skip
