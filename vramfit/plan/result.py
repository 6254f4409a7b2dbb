"""What ``plan()`` returns: the pick, the alternatives, the knob prices, or the honest no.

``PlanResult.to_json()`` is what ``vramfit plan --json`` prints (``"kind": "plan"``). ``recommended`` and
each alternative carry the estimate's keys (``Estimate.to_json()``) plus ``margin_bytes`` and
``headroom_bytes`` (usable - required - margin).
"""

from __future__ import annotations

from dataclasses import dataclass

from vramfit.config import TrainConfig
from vramfit.estimate.result import Estimate
from vramfit.memory import Verdict
from vramfit.plan.objective import rank_key
from vramfit.plan.space import Margin


@dataclass(frozen=True)
class Candidate:
    """A configuration with its estimate, judged on the card with the margin (``memory.judge``)."""

    config: TrainConfig
    estimate: Estimate
    verdict: Verdict  # headroom = usable - required_vram - margin; fits when >= 0
    trades: tuple[str, ...] = ()  # for an alternative: how it differs from the recommendation

    @property
    def margin_bytes(self) -> int:
        return self.verdict.margin_bytes

    @property
    def headroom_bytes(self) -> int:
        """What is left after the estimate and the margin (negative: short by that much)."""
        return self.verdict.headroom_bytes

    @property
    def fits(self) -> bool:
        return self.verdict.fits

    @property
    def required_bytes(self) -> int:
        return self.estimate.required_vram_bytes

    @property
    def key(self) -> tuple:
        return rank_key(self.config, self.estimate.trainable_params, self.headroom_bytes)

    def to_json(self) -> dict:
        out = self.estimate.to_json()
        out["margin_bytes"] = self.margin_bytes
        out["headroom_bytes"] = self.headroom_bytes
        out["fits"] = self.fits
        if self.trades:
            out["trades"] = list(self.trades)
        return out


@dataclass
class SearchStats:
    shapes: int = 0
    dominated: int = 0  # shapes settled by space.DOMINATED without an estimate
    pruned: int = 0  # shapes whose best possible quality ranks below the head of the ranking
    configurations: int = 0  # every configuration of the space, each settled (see search.py)
    estimate_calls: int = 0
    seconds: float = 0.0

    @property
    def configurations_per_second(self) -> float:
        return self.configurations / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict:
        return {
            "shapes": self.shapes,
            "dominated_shapes": self.dominated,
            "pruned_shapes": self.pruned,
            "configurations": self.configurations,
            "estimate_calls": self.estimate_calls,
            "seconds": round(self.seconds, 4),
            "configurations_per_second": round(self.configurations_per_second),
        }


@dataclass(frozen=True)
class KnobPrice:
    """What one change to the recommended configuration costs (+) or saves (-)."""

    knob: str  # TrainConfig field (or "micro-batch")
    change: str  # "on -> off", "16 -> 32"
    changes: dict  # the TrainConfig fields changed
    required_bytes: int
    delta_bytes: int  # vs the recommendation
    fits: bool  # with the margin
    fixed: bool  # the user fixed this knob
    note: str = ""

    def to_json(self) -> dict:
        return {
            "knob": self.knob,
            "change": self.change,
            "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in self.changes.items()},
            "required_vram_bytes": self.required_bytes,
            "delta_bytes": self.delta_bytes,
            "fits": self.fits,
            "fixed": self.fixed,
            "note": self.note,
        }


@dataclass(frozen=True)
class ModelFit:
    name: str
    total_params: int
    required_bytes: int  # the smallest configuration with the user's constraints
    headroom_bytes: int

    def to_json(self) -> dict:
        return {"name": self.name, "total_params": self.total_params,
                "required_vram_bytes": self.required_bytes, "headroom_bytes": self.headroom_bytes}  # fmt: skip


@dataclass(frozen=True)
class NoFit:
    """The honest no: the smallest configuration, why it does not fit, and what would."""

    smallest: Candidate  # the least memory the space allows, with its estimate
    reasons: tuple[str, ...]  # each with numbers
    models_that_fit: tuple[ModelFit, ...]  # largest registry models that fit, largest first
    card_needed_bytes: int  # the smallest card capacity on which the smallest configuration fits
    cards_that_fit: tuple[str, ...]  # smallest cards of the GPU database with that much

    def to_json(self) -> dict:
        return {
            "smallest": self.smallest.to_json(),
            "reasons": list(self.reasons),
            "models_that_fit": [m.to_json() for m in self.models_that_fit],
            "card_needed_bytes": self.card_needed_bytes,
            "cards_that_fit": list(self.cards_that_fit),
        }


@dataclass(frozen=True)
class VerifyTrial:
    """``--verify``: the probe's real run of one candidate on the emulated card."""

    rank: int  # 0 = the estimate's pick, 1 = the next candidate, ...
    config: dict
    predicted_required_bytes: int
    predicted_peak_allocated_bytes: int
    measured_peak_allocated_bytes: int | None
    measured_required_bytes: int | None  # None unless the probe searched the allocator's minimum
    fits: bool | None  # measured under the card's cap
    oom: dict | None = None  # where it ran out: {phase, requested_bytes, message}
    gpu: str | None = None  # the GPU the probe ran on

    def to_json(self) -> dict:
        return {
            "rank": self.rank,
            "config": self.config,
            "predicted": {"peak_allocated_bytes": self.predicted_peak_allocated_bytes,
                          "required_vram_bytes": self.predicted_required_bytes},
            "measured": {"peak_allocated_bytes": self.measured_peak_allocated_bytes,
                         "required_vram_bytes": self.measured_required_bytes},
            "fits": self.fits,
            "oom": self.oom,
            "gpu": self.gpu,
        }  # fmt: skip


@dataclass(frozen=True)
class PlanResult:
    model: str
    card: dict  # name, capacity_bytes, usable_bytes, cuda_context_bytes, supports_bf16, assumed
    margin: Margin
    recommended: Candidate | None
    alternatives: tuple[Candidate, ...]
    knob_prices: tuple[KnobPrice, ...]
    no_fit: NoFit | None
    search: SearchStats
    space: dict  # Space.to_json()
    notes: tuple[str, ...]  # assumptions the output must state
    objective: tuple[str, ...]
    code: str | None = None  # python_code of the recommendation
    estimate_command: str | None = None
    probe_command: str | None = None
    verification: tuple[VerifyTrial, ...] = ()  # --verify: every probe run, misses first

    @property
    def fits(self) -> bool:
        return self.recommended is not None

    @property
    def misses(self) -> tuple[VerifyTrial, ...]:
        """Candidates the estimate said fit that ran out of memory for real."""
        return tuple(v for v in self.verification if v.fits is False)

    @property
    def margin_bytes(self) -> int:
        c = self.judged
        return c.margin_bytes if c else 0

    @property
    def judged(self) -> Candidate | None:
        """The candidate the plan's verdict is about: the pick, or the smallest configuration."""
        return self.recommended or (self.no_fit.smallest if self.no_fit else None)

    @property
    def verdict(self) -> Verdict | None:
        """The pick's verdict with the margin (None when every probed candidate missed)."""
        c = self.judged
        return c.verdict if c else None

    def _verdict_json(self) -> dict:
        if self.verdict is not None:
            return self.verdict.to_json()
        return {"fits": False, "capacity_bytes": self.card["capacity_bytes"], "usable_bytes": self.card["usable_bytes"],
                "required_vram_bytes": None, "margin_bytes": 0, "headroom_bytes": None,
                "gpu": self.card.get("name"), "status": "does not fit"}  # fmt: skip

    def to_json(self) -> dict:
        return {
            "kind": "plan",
            "model": self.model,
            "card": self.card,
            "verdict": self._verdict_json(),
            "margin_bytes": self.margin_bytes,
            "margin": {**self.margin.to_json(), "description": self.margin.describe()},
            "recommended": self.recommended.to_json() if self.recommended else None,
            "alternatives": [a.to_json() for a in self.alternatives],
            "knob_prices": [k.to_json() for k in self.knob_prices],
            "no_fit": self.no_fit.to_json() if self.no_fit else None,
            "code": {"python": self.code, "estimate": self.estimate_command, "probe": self.probe_command},
            "verification": [v.to_json() for v in self.verification],
            "search": {**self.search.to_json(), "space": self.space},
            "objective": list(self.objective),
            "notes": list(self.notes),
        }
