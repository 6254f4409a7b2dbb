"""What the estimator returns: a typed breakdown per phase, the peak, and the verdict for a card.

Every size is ``int`` bytes. Invariant (asserted in ``Estimate.__post_init__``)::

    peak_allocated_bytes <= allocator_required_bytes <= peak_reserved_bytes
    required_vram_bytes == allocator_required_bytes + non_torch_bytes.total

       card capacity
    ┌──────────────────────────────────────────────────────────────┐
    │ display │ CUDA context │ paged optim │ PyTorch reserved      │ free │
    │ (other  │  (non-torch) │ (non-torch) │ ┌ allocated ┐ cache   │      │
    │ procs)  │              │             │ └───────────┘         │      │
    └──────────────────────────────────────────────────────────────┘
    usable = capacity - display;  fits  <=>  required_vram <= usable
    allocator_required: the smallest cap on PyTorch's allocator with which the steps still succeed;
    on a failed cudaMalloc the allocator frees its cache and retries, so it lies between the two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
class NonTorch:
    """GPU memory outside PyTorch's caching allocator."""

    cuda_context: int  # CUDA context + loaded kernels (cuBLAS, bitsandbytes), measured after a step
    paged_optimizer: int = 0  # bitsandbytes paged optimizer state: CUDA managed memory

    @property
    def total(self) -> int:
        return self.cuda_context + self.paged_optimizer

    def to_json(self) -> dict[str, int]:
        return {
            "cuda_context": self.cuda_context,
            "paged_optimizer": self.paged_optimizer,
            "total": self.total,
        }


@dataclass(frozen=True)
class Verdict:
    """Does the run fit on the card?"""

    fits: bool  # with the upper end of the requirement: required_vram_bytes
    capacity_bytes: int  # what the card has
    usable_bytes: int  # capacity minus what the display / other processes hold
    headroom_bytes: int  # usable - required_vram (negative: short by that much)
    gpu: str | None = None  # card name when given with --gpu
    may_fit: bool | None = None  # with the low end (required_vram_low_bytes); True whenever fits

    @property
    def status(self) -> str:
        """``fits``, ``may fit`` (only if the allocator places the large tensors well) or ``does not fit``."""
        if self.fits:
            return "fits"
        return "may fit" if self.may_fit else "does not fit"

    def to_json(self) -> dict:
        return {**asdict(self), "status": self.status}


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

    @property
    def allocator_required_low(self) -> int:
        low = self.allocator_required_low_bytes
        return self.allocator_required_bytes if low is None else low

    @property
    def required_vram_bytes(self) -> int:
        return self.allocator_required_bytes + self.non_torch.total

    @property
    def required_vram_low_bytes(self) -> int:
        return self.allocator_required_low + self.non_torch.total

    def to_json(self) -> dict:
        out = {
            "kind": "estimate",
            "model": self.model,
            "config": self.config,
            "breakdown": self.breakdown.to_json(),
            "peak_phase": self.peak_phase,
            "peak_allocated_bytes": self.peak_allocated_bytes,
            "peak_reserved_bytes": self.peak_reserved_bytes,
            "allocator_required_bytes": self.allocator_required_bytes,
            "allocator_required_low_bytes": self.allocator_required_low,
            "non_torch_bytes": self.non_torch.to_json(),
            "required_vram_bytes": self.required_vram_bytes,
            "required_vram_low_bytes": self.required_vram_low_bytes,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "phases": [p.to_json() for p in self.phases],
            "warnings": list(self.warnings),
            "assumptions": self.assumptions,
        }
        if self.verdict is not None:
            out["verdict"] = self.verdict.to_json()
        return out
