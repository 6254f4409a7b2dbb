"""The memory of a run and its verdict on a card: one record whether estimated, measured or checked.

Every size is ``int`` bytes::

       card capacity
    ┌──────────────────────────────────────────────────────────────┐
    │ display │ CUDA context │ paged optim │ PyTorch reserved      │ free │
    │ (other  │  (non-torch) │ (non-torch) │ ┌ allocated ┐ cache   │      │
    │ procs)  │              │             │ └───────────┘         │      │
    └──────────────────────────────────────────────────────────────┘
    usable = capacity - driver reserve - display
    required_vram = allocator_required + non-torch        (what the card must have free)
    peak_allocated <= allocator_required_low <= allocator_required <= peak_reserved

``allocator_required`` is the smallest cap on PyTorch's allocator with which the steps still succeed:
on a failed cudaMalloc the allocator frees its cache and retries, so it lies between the peaks. Where
it is only known to lie in a range (an estimate: where the allocator places the large tensors; a
probe without ``--find-min``: between its peaks), :meth:`MemoryRecord.required_range` gives the two
ends, and :func:`judge` is the one rule that turns them into a verdict::

    fits          high end + margin <= usable
    may fit       low end + margin <= usable < high end + margin
    does not fit  usable < low end + margin
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from vramfit.gpus import Card

VerdictStatus = Literal["fits", "may fit", "does not fit"]
STATUSES: tuple[VerdictStatus, ...] = ("fits", "may fit", "does not fit")


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

    @classmethod
    def from_json(cls, d: dict | None) -> NonTorch | None:
        if not isinstance(d, dict) or not isinstance(d.get("cuda_context"), int):
            return None
        return cls(d["cuda_context"], int(d.get("paged_optimizer") or 0))


@dataclass(frozen=True)
class MemoryRecord:
    """The measured quantities of one run (estimated or measured), by their names in the JSON.

    ``allocator_required_bytes`` is None when it was not searched (a probe without ``--find-min``);
    ``allocator_bounds`` then holds what the run itself showed of it: (more than, at most), e.g. a run
    that succeeded under a cap needs at most that cap.
    """

    peak_allocated_bytes: int
    peak_reserved_bytes: int | None
    allocator_required_bytes: int | None
    non_torch: NonTorch
    allocator_required_low_bytes: int | None = None  # None: the same as allocator_required_bytes
    peak_phase: str | None = None
    allocator_bounds: tuple[int, int] | None = None

    @property
    def allocator_required_low(self) -> int | None:
        low = self.allocator_required_low_bytes
        return self.allocator_required_bytes if low is None else low

    @property
    def required_vram_bytes(self) -> int | None:
        """allocator_required + non-torch memory: what the card must have free (None: not measured)."""
        if self.allocator_required_bytes is None:
            return None
        return self.allocator_required_bytes + self.non_torch.total

    @property
    def required_vram_low_bytes(self) -> int | None:
        low = self.allocator_required_low
        return None if low is None else low + self.non_torch.total

    def allocator_range(self) -> tuple[int, int]:
        """(low, high) ends of allocator_required: searched, or bounded by the peaks and any capped run."""
        if self.allocator_required_bytes is not None:
            return self.allocator_required_low or self.allocator_required_bytes, self.allocator_required_bytes
        # NOTE: below the allocated peak nothing fits; the uncapped run never reserved more than its peak
        low, high = self.peak_allocated_bytes, self.peak_reserved_bytes or self.peak_allocated_bytes
        if self.allocator_bounds is not None:
            low, high = max(low, self.allocator_bounds[0]), min(high, self.allocator_bounds[1])
        return low, max(low, high)

    def required_range(self) -> tuple[int, int]:
        """(low, high) ends of the required VRAM: the two figures a verdict is judged on."""
        low, high = self.allocator_range()
        return low + self.non_torch.total, high + self.non_torch.total

    @property
    def required_high_bytes(self) -> int:
        """The high end of the required VRAM: what a budget or a baseline is compared with."""
        return self.required_range()[1]

    @property
    def required_is_bound(self) -> bool:
        """Whether the high end is a bound from the peaks, not a searched requirement."""
        return self.allocator_required_bytes is None

    def to_json(self) -> dict:
        """The record's keys as every result writes them."""
        return {
            "peak_allocated_bytes": self.peak_allocated_bytes,
            "peak_reserved_bytes": self.peak_reserved_bytes,
            "allocator_required_bytes": self.allocator_required_bytes,
            "allocator_required_low_bytes": self.allocator_required_low,
            "non_torch_bytes": self.non_torch.to_json(),
            "required_vram_bytes": self.required_vram_bytes,
            "required_vram_low_bytes": self.required_vram_low_bytes,
            "peak_phase": self.peak_phase,
        }

    @classmethod
    def from_json(cls, d: dict) -> MemoryRecord | None:
        """The record of a result's JSON (an estimate, or a probe's "measured"), or None without numbers."""
        nt = NonTorch.from_json(d.get("non_torch_bytes"))
        if nt is None or not isinstance(d.get("peak_allocated_bytes"), int):
            return None
        low = d.get("allocator_required_low_bytes")
        return cls(
            peak_allocated_bytes=d["peak_allocated_bytes"],
            peak_reserved_bytes=d.get("peak_reserved_bytes"),
            allocator_required_bytes=d.get("allocator_required_bytes"),
            non_torch=nt,
            allocator_required_low_bytes=low if isinstance(low, int) else None,
            peak_phase=d.get("peak_phase"),
        )


@dataclass(frozen=True)
class Verdict:
    """Does the run fit on the card? Made by :func:`judge` only."""

    fits: bool  # with the high end of the requirement (+ margin)
    capacity_bytes: int  # what the card has
    usable_bytes: int  # capacity minus what the driver and the display / other processes hold
    headroom_bytes: int  # usable - high end - margin (negative: short by that much)
    gpu: str | None = None  # card name when given with --gpu
    may_fit: bool = False  # with the low end; True whenever fits
    required_vram_bytes: int = 0  # the high end judged
    required_vram_low_bytes: int = 0  # the low end judged
    margin_bytes: int = 0  # kept free beyond the requirement (the planner's safety margin)

    @property
    def status(self) -> VerdictStatus:
        """``fits``, ``may fit`` (only if the allocator places the large tensors well) or ``does not fit``."""
        return "fits" if self.fits else "may fit" if self.may_fit else "does not fit"

    @property
    def short_at_best_bytes(self) -> int:
        """What the low end misses by (positive when it does not fit even at best)."""
        return self.required_vram_low_bytes + self.margin_bytes - self.usable_bytes

    def rejudge(self, low: int, high: int) -> Verdict:
        """The same card and margin, judged on other figures (a measurement of the same run)."""
        return judge(low, high, self.usable_bytes, self.capacity_bytes, self.gpu, self.margin_bytes)

    def to_json(self) -> dict:
        return {
            "fits": self.fits,
            "capacity_bytes": self.capacity_bytes,
            "usable_bytes": self.usable_bytes,
            "headroom_bytes": self.headroom_bytes,
            "gpu": self.gpu,
            "may_fit": self.may_fit,
            "required_vram_bytes": self.required_vram_bytes,
            "required_vram_low_bytes": self.required_vram_low_bytes,
            "margin_bytes": self.margin_bytes,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, d: object, required: tuple[int, int] | None = None) -> Verdict | None:
        """The verdict of a saved result, judged again by :func:`judge` (older files lack the figures:
        ``required`` gives them)."""
        if not isinstance(d, dict) or not isinstance(d.get("usable_bytes"), int):
            return None
        high = d.get("required_vram_bytes")
        low = d.get("required_vram_low_bytes")
        if not isinstance(high, int):
            if required is None:
                return None
            low, high = required
        low = low if isinstance(low, int) else high
        capacity = d.get("capacity_bytes")
        capacity = capacity if isinstance(capacity, int) else d["usable_bytes"]
        return judge(low, high, d["usable_bytes"], capacity, d.get("gpu"), int(d.get("margin_bytes") or 0))


def judge(
    low: int, high: int, usable_bytes: int, capacity_bytes: int, gpu: str | None = None, margin_bytes: int = 0
) -> Verdict:
    """The one rule (module docstring): the two ends of the required VRAM against the usable memory."""
    headroom = usable_bytes - high - margin_bytes
    may_fit = low + margin_bytes <= usable_bytes
    return Verdict(
        headroom >= 0, capacity_bytes, usable_bytes, headroom, gpu, may_fit, high, low, margin_bytes
    )


def judge_on_card(low: int, high: int, card: Card, margin_bytes: int = 0) -> Verdict:
    """:func:`judge` on a :class:`vramfit.gpus.Card`."""
    return judge(low, high, card.usable_bytes, card.capacity_bytes, card.name, margin_bytes)


__all__ = ["NonTorch", "MemoryRecord", "Verdict", "VerdictStatus", "STATUSES", "judge", "judge_on_card"]
