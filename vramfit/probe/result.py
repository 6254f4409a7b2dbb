"""What the probe returns: measured memory per phase, the attributed peak, faults, and the environment.

Importable without torch (the CLI renders saved results). Every size is ``int`` bytes; a number that
was not measured (memory on the CPU pipeline check, ``allocator_required_bytes`` when not searched) is
``None``, never a stand-in value. The JSON written by ``vramfit probe --json`` is the estimate's keys
(when an estimate was made) plus ``"measured"``, ``"environment"`` and ``"kind": "probe"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vramfit.estimate.result import COMPONENTS, Estimate
from vramfit.memory import MemoryRecord, NonTorch, Verdict


@dataclass(frozen=True)
class PhaseMeasurement:
    """Peaks of one phase: the allocator's peak counters were reset when the phase began."""

    name: str
    peak_allocated_bytes: int | None
    peak_reserved_bytes: int | None
    seconds: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Oom:
    """Where a trial ran out of memory (a verdict, not a crash)."""

    phase: str
    requested_bytes: int | None  # the allocation that failed (exact from the allocator's OOM observer)
    message: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Oom:
        return cls(str(d.get("phase", "?")), d.get("requested_bytes"), str(d.get("message", "")))


@dataclass(frozen=True)
class Measured:
    """One probe run as measured. ``breakdown`` is the live allocated memory at the peak, by component."""

    device: str  # "cuda" or "cpu" (pipeline check only: no memory numbers)
    peak_allocated_bytes: int | None
    peak_reserved_bytes: int | None
    allocator_required_bytes: int | None  # None when --find-min did not search it
    cuda_context_bytes: int | None
    paged_optimizer_bytes: int | None
    breakdown: dict[str, int] | None  # the 8 COMPONENTS at the attributed peak; None without a snapshot
    peak_phase: str | None
    phases: tuple[PhaseMeasurement, ...]
    timeline: tuple[dict, ...] = ()  # [{t_ms, allocated_bytes, phase}], downsampled
    step_seconds: float | None = None  # mean time of the steady steps (step 1 when there is no other)
    fits: bool | None = None  # None when no card was emulated
    oom: Oom | None = None
    cap_bytes: int | None = None  # the allocator cap of an emulated card
    build_seconds: float | None = None
    total_seconds: float | None = None
    raw: dict = field(default_factory=dict)  # the readings behind the derived numbers (device use, trace)

    def __post_init__(self) -> None:
        if self.breakdown is not None:
            assert set(self.breakdown) == set(COMPONENTS), sorted(self.breakdown)

    @property
    def memory(self) -> MemoryRecord | None:
        """The measured figures as the one record every result carries (None: nothing measured).

        A run capped at ``cap_bytes`` shows where the requirement lies even without ``--find-min``:
        it succeeded (at most the cap) or ran out of memory (more than the cap).
        """
        if self.peak_allocated_bytes is None or self.cuda_context_bytes is None:
            return None
        bounds = None
        if self.allocator_required_bytes is None and self.cap_bytes is not None and self.fits is not None:
            bounds = (0, self.cap_bytes) if self.fits else (self.cap_bytes + 1, 1 << 62)
        return MemoryRecord(
            peak_allocated_bytes=self.peak_allocated_bytes,
            peak_reserved_bytes=self.peak_reserved_bytes,
            allocator_required_bytes=self.allocator_required_bytes,
            non_torch=NonTorch(self.cuda_context_bytes, self.paged_optimizer_bytes or 0),
            peak_phase=self.peak_phase,
            allocator_bounds=bounds,
        )

    @property
    def non_torch_bytes(self) -> dict | None:
        if self.cuda_context_bytes is None:
            return None
        return NonTorch(self.cuda_context_bytes, self.paged_optimizer_bytes or 0).to_json()

    @property
    def required_vram_bytes(self) -> int | None:
        """allocator_required + non-torch memory: what the card must have free (None: not searched; docs/ARCHITECTURE.md)."""
        return self.memory.required_vram_bytes if self.memory else None

    def to_json(self) -> dict:
        return {
            "device": self.device,
            "peak_allocated_bytes": self.peak_allocated_bytes,
            "peak_reserved_bytes": self.peak_reserved_bytes,
            "allocator_required_bytes": self.allocator_required_bytes,
            "non_torch_bytes": self.non_torch_bytes,
            "required_vram_bytes": self.required_vram_bytes,
            "breakdown": self.breakdown,
            "peak_phase": self.peak_phase,
            "phases": [p.to_json() for p in self.phases],
            "timeline": list(self.timeline),
            "step_seconds": self.step_seconds,
            "fits": self.fits,
            "oom": self.oom.to_json() if self.oom else None,
            "cap_bytes": self.cap_bytes,
            "build_seconds": self.build_seconds,
            "total_seconds": self.total_seconds,
            "raw": self.raw,
        }

    @classmethod
    def from_json(cls, d: dict) -> Measured:
        nt = d.get("non_torch_bytes") or {}
        return cls(
            device=d["device"],
            peak_allocated_bytes=d.get("peak_allocated_bytes"),
            peak_reserved_bytes=d.get("peak_reserved_bytes"),
            allocator_required_bytes=d.get("allocator_required_bytes"),
            cuda_context_bytes=nt.get("cuda_context"),
            paged_optimizer_bytes=nt.get("paged_optimizer"),
            breakdown=d.get("breakdown"),
            peak_phase=d.get("peak_phase"),
            phases=tuple(PhaseMeasurement(**p) for p in d.get("phases", [])),
            timeline=tuple(d.get("timeline", [])),
            step_seconds=d.get("step_seconds"),
            fits=d.get("fits"),
            oom=Oom.from_json(d["oom"]) if d.get("oom") else None,
            cap_bytes=d.get("cap_bytes"),
            build_seconds=d.get("build_seconds"),
            total_seconds=d.get("total_seconds"),
            raw=d.get("raw", {}),
        )


@dataclass(frozen=True)
class ProbeResult:
    """A probe: the estimate it checks (its JSON, or None), what was measured, and where."""

    model: str
    config: dict
    measured: Measured
    environment: dict
    # Estimate.to_json() of the same model, config and card, with the measuring GPU's cuBLAS workspaces;
    # its verdict: the card's own estimate's (vramfit.probe.measuring.estimate_beside)
    estimate: dict | None = None
    trials: tuple[dict, ...] = ()  # --find-min: [{cap_bytes, fits, phase, requested_bytes}]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    snapshot_path: str | None = None

    @property
    def fits(self) -> bool | None:
        return self.measured.fits

    @property
    def estimated(self) -> Estimate | None:
        """The estimate, typed."""
        return Estimate.from_json(self.estimate) if self.estimate else None

    @property
    def verdict(self) -> Verdict | None:
        """The measurement judged on the estimate's card by the same rule (``memory.judge``)."""
        est, mem = self.estimated, self.measured.memory
        if est is None or est.verdict is None or mem is None:
            return None
        return est.verdict.rejudge(*mem.required_range())

    def to_json(self) -> dict:
        out: dict = dict(self.estimate) if self.estimate else {}
        out.update({
            "kind": "probe",
            "model": out.get("model", self.model),
            "config": self.config,
            "measured": {**self.measured.to_json(), "verdict": self.verdict.to_json() if self.verdict else None},
            "environment": self.environment,
            "trials": list(self.trials),
            "probe_warnings": list(self.warnings),
            "snapshot": self.snapshot_path,
        })  # fmt: skip
        return out

    @classmethod
    def from_json(cls, d: dict) -> ProbeResult:
        """A probe result saved with ``to_json()``, typed again (its estimate keys become ``estimate``)."""
        est = (
            {k: v for k, v in d.items() if k not in _PROBE_KEYS}
            if isinstance(d.get("breakdown"), dict)
            else None
        )
        return cls(
            model=str(d.get("model") or "unknown model"),
            config=dict(d.get("config") or {}),
            measured=Measured.from_json(d["measured"]),
            environment=dict(d.get("environment") or {}),
            estimate={**est, "kind": "estimate"} if est else None,
            trials=tuple(d.get("trials") or ()),
            warnings=tuple(d.get("probe_warnings") or ()),
            snapshot_path=d.get("snapshot"),
        )


_PROBE_KEYS = ("kind", "measured", "environment", "trials", "probe_warnings", "snapshot", "provenance")
