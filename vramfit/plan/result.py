"""What ``plan()`` returns: the pick, the alternatives, the knob prices, or the honest no.

``PlanResult.to_json()`` is what ``vramfit plan --json`` prints (``"kind": "plan"``). ``recommended`` and
each alternative carry the estimate's keys (``Estimate.to_json()``) plus ``margin_bytes`` and
``headroom_bytes`` (usable - required - margin).
"""

from __future__ import annotations

from dataclasses import dataclass

from vramfit.config import TrainConfig
from vramfit.estimate.result import Estimate
from vramfit.memory import Verdict, judge
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

    @classmethod
    def from_json(cls, d: dict) -> Candidate:
        """A candidate saved with ``to_json()``: its estimate, judged again with its margin."""
        est = Estimate.from_json(d)
        v = est.verdict
        if v is None:
            raise ValueError("a plan's configuration needs the verdict of its card")
        margin = int(d.get("margin_bytes") or 0)
        verdict = judge(v.required_vram_low_bytes, v.required_vram_bytes, v.usable_bytes, v.capacity_bytes, v.gpu,
                        margin)  # fmt: skip
        trades = d.get("trades") or ([d["trade"]] if d.get("trade") else [])
        return cls(TrainConfig.from_saved(est.config), est, verdict, tuple(str(t) for t in trades))


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

    @classmethod
    def from_json(cls, d: dict) -> SearchStats:
        return cls(int(d.get("shapes") or 0), int(d.get("dominated_shapes") or 0), int(d.get("pruned_shapes") or 0),
                   int(d.get("configurations") or 0), int(d.get("estimate_calls") or 0),
                   float(d.get("seconds") or 0.0))  # fmt: skip


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

    @classmethod
    def from_json(cls, d: dict) -> KnobPrice:
        from vramfit.plan.knobs import show

        change = d.get("change") or f"{show(d.get('from'))} -> {show(d.get('to'))}"
        return cls(str(d.get("knob", "?")), str(change), dict(d.get("changes") or {}),
                   int(d.get("required_vram_bytes") or 0), int(d.get("delta_bytes") or 0), bool(d.get("fits")),
                   bool(d.get("fixed")), str(d.get("note") or ""))  # fmt: skip


@dataclass(frozen=True)
class ModelFit:
    name: str
    total_params: int
    required_bytes: int  # the smallest configuration with the user's constraints
    headroom_bytes: int

    def to_json(self) -> dict:
        return {"name": self.name, "total_params": self.total_params,
                "required_vram_bytes": self.required_bytes, "headroom_bytes": self.headroom_bytes}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> ModelFit:
        return cls(str(d.get("name")), int(d.get("total_params") or 0), int(d.get("required_vram_bytes") or 0),
                   int(d.get("headroom_bytes") or 0))  # fmt: skip


@dataclass(frozen=True)
class NoFit:
    """The honest no: the smallest configuration, why it does not fit, and what would."""

    smallest: Candidate | None  # the least memory the space allows, with its estimate (None: not saved)
    reasons: tuple[str, ...]  # each with numbers
    models_that_fit: tuple[ModelFit, ...]  # largest registry models that fit, largest first
    card_needed_bytes: int  # the smallest card capacity on which the smallest configuration fits
    cards_that_fit: tuple[str, ...]  # smallest cards of the GPU database with that much

    def to_json(self) -> dict:
        return {
            "smallest": self.smallest.to_json() if self.smallest else None,
            "reasons": list(self.reasons),
            "models_that_fit": [m.to_json() for m in self.models_that_fit],
            "card_needed_bytes": self.card_needed_bytes,
            "cards_that_fit": list(self.cards_that_fit),
        }

    @classmethod
    def from_json(cls, d: dict) -> NoFit:
        small = d.get("smallest")
        return cls(
            smallest=Candidate.from_json(small) if isinstance(small, dict) else None,
            reasons=tuple(str(r) for r in d.get("reasons") or ()),
            models_that_fit=tuple(
                ModelFit.from_json(m) for m in d.get("models_that_fit") or () if isinstance(m, dict)
            ),
            card_needed_bytes=int(d.get("card_needed_bytes") or 0),
            cards_that_fit=tuple(str(c) for c in d.get("cards_that_fit") or ()),
        )


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

    @classmethod
    def from_json(cls, d: dict) -> VerifyTrial:
        pred, meas = d.get("predicted") or {}, d.get("measured") or {}
        return cls(int(d.get("rank") or 0), dict(d.get("config") or {}), int(pred.get("required_vram_bytes") or 0),
                   int(pred.get("peak_allocated_bytes") or 0), meas.get("peak_allocated_bytes"),
                   meas.get("required_vram_bytes"), d.get("fits"), d.get("oom"), d.get("gpu"))  # fmt: skip


@dataclass(frozen=True)
class PlanResult:
    model: str
    card: dict  # name, capacity_bytes, usable_bytes, cuda_context_bytes, supports_bf16, assumed
    margin: Margin | None  # None: a saved plan that did not record it
    recommended: Candidate | None
    alternatives: tuple[Candidate, ...]
    knob_prices: tuple[KnobPrice, ...]
    no_fit: NoFit | None
    search: SearchStats
    space: dict  # Space.to_json()
    notes: tuple[str, ...]  # assumptions the output must state
    objective: tuple[str, ...]
    code: str | None = None  # the recommendation's training code (codegen.training_code)
    code_kind: str = (
        "recipe"  # recipe: the reference recipe on one GPU; fsdp2: train.py for accelerate launch
    )
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
            "margin": {**self.margin.to_json(), "description": self.margin.describe()}
            if self.margin
            else None,
            "recommended": self.recommended.to_json() if self.recommended else None,
            "alternatives": [a.to_json() for a in self.alternatives],
            "knob_prices": [k.to_json() for k in self.knob_prices],
            "no_fit": self.no_fit.to_json() if self.no_fit else None,
            "code": {
                "python": self.code,
                "kind": self.code_kind,
                "estimate": self.estimate_command,
                "probe": self.probe_command,
            },  # fmt: skip
            "verification": [v.to_json() for v in self.verification],
            "search": {**self.search.to_json(), "space": self.space},
            "objective": list(self.objective),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, d: dict) -> PlanResult:
        """A plan saved with ``to_json()`` (``vramfit plan --json``), typed again."""
        rec, no_fit, code = d.get("recommended"), d.get("no_fit"), d.get("code") or {}
        search = d.get("search") or {}
        margin = d.get("margin")
        return cls(
            model=str(d.get("model") or "unknown model"),
            card=dict(d.get("card") or {}),
            margin=Margin.from_json(margin) if isinstance(margin, dict) else None,
            recommended=Candidate.from_json(rec) if isinstance(rec, dict) else None,
            alternatives=tuple(
                Candidate.from_json(a) for a in d.get("alternatives") or () if isinstance(a, dict)
            ),
            knob_prices=tuple(
                KnobPrice.from_json(k) for k in d.get("knob_prices") or () if isinstance(k, dict)
            ),
            no_fit=NoFit.from_json(no_fit) if isinstance(no_fit, dict) else None,
            search=SearchStats.from_json(search),
            space=dict(search.get("space") or {}),
            notes=tuple(str(n) for n in d.get("notes") or ()),
            objective=tuple(str(o) for o in d.get("objective") or ()),
            code=code.get("python"),
            code_kind=str(code.get("kind") or "recipe"),
            estimate_command=code.get("estimate"),
            probe_command=code.get("probe"),
            verification=tuple(
                VerifyTrial.from_json(v) for v in d.get("verification") or () if isinstance(v, dict)
            ),
        )
