"""What the estimator returns: a typed breakdown per phase, the peak, and the verdict for a card.

Every size is ``int`` bytes. Invariant (asserted in ``Estimate.__post_init__``)::

    peak_allocated_bytes <= allocator_required_bytes <= peak_reserved_bytes
    required_vram_bytes == allocator_required_bytes + non_torch_bytes.total

(what each quantity means, and the picture of a card's memory: :mod:`vramfit.memory`)

The memory figures are a :class:`vramfit.memory.MemoryRecord` (``Estimate.memory``) and the verdict a
:class:`vramfit.memory.Verdict`, as for a measurement: the rule that judges them is ``memory.judge``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from vramfit.memory import MemoryRecord, NonTorch, Verdict

COMPONENTS = (
    "weights",
    "quant_state",
    "adapters",
    "gradients",
    "optimizer",
    "activations",
    "logits",
    "temporaries",
)

# Phases of a training run, in order. "step 1" phases run before the optimizer state exists;
# "steady" phases repeat every later step with it.
PHASES = (
    "load",
    "prepare",
    "forward (step 1)",
    "backward (step 1)",
    "optimizer (step 1)",
    "forward (steady)",
    "backward (steady)",
    "optimizer (steady)",
)


@dataclass(frozen=True)
class Breakdown:
    """Live allocated bytes by component at one moment."""

    weights: int = 0  # base model parameters (quantized or not), incl. unquantized embeddings / norms
    quant_state: int = 0  # bitsandbytes absmax / nested absmax / codebooks / int8 row scales
    adapters: int = 0  # LoRA A and B weights
    gradients: int = 0  # .grad of trainable parameters
    optimizer: int = 0  # optimizer state held by PyTorch's allocator (paged state is non-torch)
    activations: int = 0  # tensors saved for backward + activation gradients in flight
    logits: int = 0  # logits, their fp32 upcast in the loss, and their gradient
    temporaries: int = 0  # transients: dequantized weights, workspaces, casts

    @property
    def total(self) -> int:
        # written out: the planner sums millions of these
        return (
            self.weights + self.quant_state + self.adapters + self.gradients
            + self.optimizer + self.activations + self.logits + self.temporaries
        )  # fmt: skip

    def __add__(self, other: Breakdown) -> Breakdown:
        return Breakdown(
            self.weights + other.weights, self.quant_state + other.quant_state,
            self.adapters + other.adapters, self.gradients + other.gradients,
            self.optimizer + other.optimizer, self.activations + other.activations,
            self.logits + other.logits, self.temporaries + other.temporaries,
        )  # fmt: skip

    def to_json(self) -> dict[str, int]:
        return {c: getattr(self, c) for c in COMPONENTS}

    @classmethod
    def from_json(cls, d: dict) -> Breakdown:
        return cls(**{c: int(d.get(c) or 0) for c in COMPONENTS})


@dataclass(frozen=True)
class Phase:
    name: str
    breakdown: Breakdown

    @property
    def allocated_bytes(self) -> int:
        return self.breakdown.total

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "allocated_bytes": self.allocated_bytes,
            "breakdown": self.breakdown.to_json(),
        }


@dataclass(frozen=True)
class Estimate:
    model: str
    config: dict  # TrainConfig.to_json() with resolved attention implementation
    breakdown: Breakdown  # at the peak phase
    peak_phase: str
    phases: tuple[Phase, ...]
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    allocator_required_bytes: int
    non_torch: NonTorch
    trainable_params: int
    total_params: int
    warnings: tuple[str, ...] = ()
    verdict: Verdict | None = None
    assumptions: dict = field(default_factory=dict)  # constants used (context size, allocator slack)
    # The requirement if the caching allocator places the large tensors well: the low end of its range
    # (vramfit.estimate.allocator). None: the upper end.
    allocator_required_low_bytes: int | None = None

    def __post_init__(self) -> None:
        assert self.breakdown.total == self.peak_allocated_bytes, "breakdown must sum to the peak"
        low = self.allocator_required_low
        assert (
            self.peak_allocated_bytes <= low <= self.allocator_required_bytes <= self.peak_reserved_bytes
        ), (
            self.peak_allocated_bytes,
            low,
            self.allocator_required_bytes,
            self.peak_reserved_bytes,
        )

    @cached_property
    def memory(self) -> MemoryRecord:
        """The memory figures as the one record every result carries."""
        return MemoryRecord(
            peak_allocated_bytes=self.peak_allocated_bytes,
            peak_reserved_bytes=self.peak_reserved_bytes,
            allocator_required_bytes=self.allocator_required_bytes,
            non_torch=self.non_torch,
            allocator_required_low_bytes=self.allocator_required_low_bytes,
            peak_phase=self.peak_phase,
        )

    @property
    def allocator_required_low(self) -> int:
        return self.memory.allocator_required_low  # type: ignore[return-value]

    @property
    def required_vram_bytes(self) -> int:
        return self.memory.required_vram_bytes  # type: ignore[return-value]

    @property
    def required_vram_low_bytes(self) -> int:
        return self.memory.required_vram_low_bytes  # type: ignore[return-value]

    def to_json(self) -> dict:
        out = {
            "kind": "estimate",
            "model": self.model,
            "config": self.config,
            "breakdown": self.breakdown.to_json(),
            **self.memory.to_json(),
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "phases": [p.to_json() for p in self.phases],
            "warnings": list(self.warnings),
            "assumptions": self.assumptions,
        }
        if self.verdict is not None:
            out["verdict"] = self.verdict.to_json()
        return out

    @classmethod
    def from_json(cls, d: dict) -> Estimate:
        """An estimate saved with ``to_json()`` (``vramfit estimate --json``), typed again."""
        mem = MemoryRecord.from_json(d)
        if mem is None or not isinstance(d.get("breakdown"), dict):
            raise ValueError("an estimate needs a breakdown, peak_allocated_bytes and non_torch_bytes")
        if d.get("verdict") is not None and not isinstance(d["verdict"], dict):
            raise ValueError("an estimate's verdict is an object")
        return cls(
            model=str(d.get("model") or "unknown model"),
            config=dict(d.get("config") or {}),
            breakdown=Breakdown.from_json(d["breakdown"]),
            peak_phase=str(d.get("peak_phase") or "?"),
            phases=tuple(
                Phase(str(p["name"]), Breakdown.from_json(p.get("breakdown") or {}))
                for p in d.get("phases") or ()
                if isinstance(p, dict) and "name" in p
            ),
            peak_allocated_bytes=mem.peak_allocated_bytes,
            peak_reserved_bytes=mem.peak_reserved_bytes or mem.peak_allocated_bytes,
            allocator_required_bytes=mem.allocator_required_bytes or mem.peak_allocated_bytes,
            non_torch=mem.non_torch,
            trainable_params=int(d.get("trainable_params") or 0),
            total_params=int(d.get("total_params") or 0),
            warnings=tuple(str(w) for w in d.get("warnings") or ()),
            verdict=Verdict.from_json(d.get("verdict"), mem.required_range()),
            assumptions=dict(d.get("assumptions") or {}),
            allocator_required_low_bytes=mem.allocator_required_low_bytes,
        )
