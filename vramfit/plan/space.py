"""The planner's search space: what the user fixed, what may be searched, and the safety margin.

A configuration is split in two (see ``search.py``):

* a *shape*: method, quantization, double quantization, LoRA targets and rank, gradient checkpointing,
  optimizer and attention implementation (and the dtypes the card dictates);
* a *size*: sequence length and micro-batch (with gradient accumulation that keeps the effective batch).

Every flag the user gives is fixed; everything else takes the values listed here. The dtypes are not
searched: the card decides them (bf16 needs compute capability 8.0+, fp16 otherwise).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from vramfit.config import METHOD_QUANTS, METHODS, TrainConfig, normalize_dtype, validate
from vramfit.errors import InputError, one_of
from vramfit.estimate.adapters import resolve_targets
from vramfit.models.spec import ArchSpec
from vramfit.units import MiB, format_bytes, parse_size

# ---- what is searched when the user does not fix it ------------------------------------------------

RANKS = (8, 16, 32, 64, 128)  # LoRA ranks, ascending (memory grows with r)
# Optimizers tried, by TrainingArguments.optim name. adamw_torch is the Trainer's default; the 8-bit
# and paged ones are bitsandbytes'. Others (adafactor, sgd) are used only when the user names them.
OPTIMIZERS_SEARCHED = ("adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")
# flash_attention_2 needs the flash-attn package, so it is used only when the user asks for it.
ATTNS_SEARCHED = ("sdpa", "eager")
DEFAULT_MIN_SEQ = TrainConfig().seq_len  # the recipe's 512 tokens, when --seq-len is not given
MAX_SEQ = 8192  # the search stops doubling the sequence here (or at the model's context length)
DEFAULT_EFFECTIVE_BATCH = 16  # sequences per optimizer step when neither --effective-batch nor
#                               --batch-size / --grad-accum is given (a common QLoRA recipe: 4 x 4)
QUANT_CAPABILITY = {"nf4": "supports_4bit", "fp4": "supports_4bit", "int8": "supports_int8"}

# Dimensions along which memory never decreases (checked against the estimator in tests/test_plan.py).
# The search uses them to bound one shape's largest fitting size by a cheaper shape's.
MEMORY_ORDER = {
    "gradient_checkpointing": (True, False),  # off keeps every layer's activations
    "attn": ("sdpa", "eager"),  # eager keeps the s x s attention scores
    "double_quant": (True, False),  # double quantization shrinks the absmax constants
    "quant": ("nf4", "fp4"),  # the same bits per weight
}

# Values that can never win against another value of the same dimension, all else equal: they need at
# least as much memory (so fit no longer sequence, no larger micro-batch) and rank no higher in the
# objective (objective.py). A shape holding one is settled without an estimate when the better value is
# in the space too; knobs.py still prices them on the recommended configuration.
DOMINATED = {
    "attn": {"eager": "sdpa"},  # more memory, slower
    "double_quant": {False: True},  # more memory, same quality (QLoRA paper, section 4)
    "quant": {"fp4": "nf4"},  # same memory; NF4 is the better 4-bit data type (QLoRA paper, section 5)
    "optimizer": {"adamw_torch": "adamw_8bit", "paged_adamw_32bit": "paged_adamw_8bit"},
    #             32-bit state: 4x the memory of 8-bit blockwise state, which matches it in quality
    #             (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization")
}

# ---- the safety margin --------------------------------------------------------------------------

# PROVISIONAL: the estimate's allocator requirement already includes a fitted allowance for the caching
# allocator's slack (estimate/allocator.py: the high end of its range). Refitted leaving one model family
# out, it was at worst 4.2 % low on the 157 runs where --find-min measured the requirement (gemma-2-2b at
# 128 tokens, a 5.4 GiB requirement); with this margin on top that run is just covered (the margin applies to
# the CUDA context too). The allocated peak is within 2.1 % outside the known gaps of
# tests/test_accuracy_measured.py, which are over-estimates (LoRA r=64 on all-linear at batch 2 x 2048
# tokens 4 % high, eager attention at batch 4 3 % high). 3 % of the estimate plus 64 MiB for fragmentation of a long run that a few probe steps do not
# show. It stays provisional until the accuracy benchmark covers GPUs other than the H100 and H200.
DEFAULT_MARGIN_FRACTION = 0.03
DEFAULT_MARGIN_SLACK = 64 * MiB


@dataclass(frozen=True)
class Margin:
    """Memory kept free on top of the estimate: ``fraction`` of it plus ``slack`` bytes."""

    fraction: float = DEFAULT_MARGIN_FRACTION
    slack: int = DEFAULT_MARGIN_SLACK
    provisional: bool = True  # the default, not measured yet

    def bytes_for(self, required: int) -> int:
        return int(required * self.fraction) + self.slack

    def describe(self) -> str:
        parts = []
        if self.fraction:
            parts.append(f"{self.fraction * 100:g}% of the estimate")
        if self.slack:
            parts.append(f"{format_bytes(self.slack)} allocator slack")
        text = " + ".join(parts) or "none"
        if self.provisional:
            text += " (default; provisional until the accuracy benchmark measures the estimator's error band)"
        return text

    def to_json(self) -> dict:
        return {"fraction": self.fraction, "slack_bytes": self.slack, "provisional": self.provisional}


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
            quants = [q for q in v["quant"] if q in METHOD_QUANTS[method]]
            lora = method != "full"
            for quant in quants:
                dqs = v["double_quant"] if quant in ("nf4", "fp4") else (self.base.double_quant,)
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
        """The user's --load-dtype, else the compute dtype; fp32 for full fine-tuning in fp16 mixed
        precision (the Trainer refuses to unscale fp16 gradients: it needs fp32 master weights)."""
        if "load_dtype" in self.fixed:
            return self.base.load_dtype
        if method == "full" and self.base.compute_dtype == "fp16":
            return "fp32"
        return self.base.compute_dtype

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


def _cc(card) -> str:
    cc = card.compute_capability
    return f"{cc[0]}.{cc[1]}" if cc else "unknown"


def _card_dtypes(card, fixed: Mapping, methods: tuple[str, ...]) -> tuple[str, list[str]]:
    """The compute dtype for the card, and notes. bf16 needs compute capability 8.0+ (Ampere); older
    cards compute in fp16. The load dtype follows (``Space.load_dtype_for``)."""
    notes = []
    bf16 = card.supports_bf16
    where = card.name or "the card"
    if "compute_dtype" in fixed:
        compute = normalize_dtype(fixed["compute_dtype"], "--compute-dtype")
        if compute == "bf16" and not bf16:
            raise InputError(
                "--compute-dtype",
                f"{where} cannot compute in bf16 (needs compute capability 8.0+, it has "
                f"{_cc(card)}); accepted: fp16, fp32",
            )
    else:
        compute = "bf16" if bf16 else "fp16"
        if not bf16:
            notes.append(f"{where} has no bf16 (compute capability {_cc(card)}): fp16 compute")
    if "load_dtype" in fixed:
        if normalize_dtype(fixed["load_dtype"], "--load-dtype") == "bf16" and not bf16:
            raise InputError("--load-dtype", f"{where} has no bf16 support; accepted: fp16, fp32")
    elif compute == "fp16" and "full" in methods:
        notes.append("full fine-tuning in fp16 mixed precision keeps fp32 weights (load dtype fp32)")
    return compute, notes


def build_space(
    arch: ArchSpec,
    card,
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
    from vramfit.estimate import OPTIMIZERS

    fixed = dict(fixed or {})
    fixed.pop("seq_len", None)
    notes: list[str] = []
    known = set(TrainConfig.__dataclass_fields__)
    for k in fixed:
        if k not in known:
            raise InputError(k, f"not a configuration field; accepted: {', '.join(sorted(known))}")

    # method x quant, filtered by the card's capabilities
    methods = (fixed["method"],) if "method" in fixed else METHODS
    for m in methods:
        if m not in METHODS:
            raise one_of("--method", str(m), METHODS)
    if "quant" in fixed:
        q = fixed["quant"]
        if q not in ("nf4", "fp4", "int8", "none"):
            raise one_of("--quant", str(q), ("nf4", "fp4", "int8", "none"))
        methods = tuple(m for m in methods if q in METHOD_QUANTS[m])
        if not methods:
            ok = [m for m in METHODS if q in METHOD_QUANTS[m]]
            raise InputError(
                "--quant", f"{q} does not go with --method {fixed['method']}; use --method {ok[0]}"
            )
        quants = (q,)
    else:
        quants = tuple(dict.fromkeys(q for m in methods for q in METHOD_QUANTS[m]))
    missing = [q for q in quants if q in QUANT_CAPABILITY and not getattr(card, QUANT_CAPABILITY[q])]
    where = card.name or "the card"
    if missing and "quant" in fixed:
        raise InputError(
            "--quant",
            f"{where} cannot run bitsandbytes {fixed['quant']} (compute capability {_cc(card)})",
        )
    if missing:
        notes.append(f"{where} cannot run bitsandbytes {', '.join(missing)}: not searched")
        quants = tuple(q for q in quants if q not in missing)
        methods = tuple(m for m in methods if any(q in quants for q in METHOD_QUANTS[m]))
        if not methods:
            raise InputError(
                "--method", f"{where} cannot run any quantization that --method {fixed['method']} needs"
            )

    compute, dtype_notes = _card_dtypes(card, fixed, methods)
    notes += dtype_notes

    optimizers = optimizers or tuple(OPTIMIZERS)
    ladder = target_ladder(arch)
    values: dict[str, tuple] = {
        "method": methods,
        "quant": quants,
        "double_quant": (True, False),
        "targets": ladder,
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

    base_fields = {k: v for k, v in fixed.items() if k not in SHAPE_FIELDS}
    base = TrainConfig(**base_fields).with_(compute_dtype=compute)
    if "load_dtype" in fixed:
        base = base.with_(load_dtype=normalize_dtype(fixed["load_dtype"], "--load-dtype"))
    # validate the fixed values once (one representative shape): errors name their flags
    sample = base.with_(method=methods[0], quant=next(q for q in quants if q in METHOD_QUANTS[methods[0]]),
                        targets=values["targets"][0], rank=values["rank"][0],
                        optimizer=values["optimizer"][0] if values["optimizer"] else "")  # fmt: skip
    validate(sample, optimizers)

    # sequence lengths: the minimum, then doublings up to the context length (or MAX_SEQ)
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

    batches, eff = _batch_splits(fixed, effective_batch, notes)
    return Space(arch, base, frozenset(fixed), values, tuple(seqs), batches, eff, seq0, tuple(notes))


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
