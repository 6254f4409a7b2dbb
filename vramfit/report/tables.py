"""Typed results in, rows out: what the HTML and Markdown reports show, shaped once for both.

A result is an :class:`~vramfit.estimate.result.Estimate`, a :class:`~vramfit.plan.result.PlanResult`
or a :class:`~vramfit.probe.result.ProbeResult`. A saved result (its JSON: ``"kind"`` says which, or
its keys do) is read into that record once, by :func:`typed`, before anything is rendered; the
readers are tolerant (extra keys are ignored, missing optional ones leave their section out).

The stacked bar of a result adds up to its required VRAM::

    required_vram = weights + quant_state + ... + temporaries     (= peak allocated, the 8 components)
                  + allocator cache                                (allocator_required - peak allocated)
                  + CUDA context + paged optimizer                 (non-PyTorch memory)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vramfit.catalog import METHODS, QUANTS
from vramfit.errors import InputError
from vramfit.estimate.result import COMPONENTS, Breakdown
from vramfit.memory import NonTorch, Verdict
from vramfit.report.verdict import VerdictText, probe_verdict_text, verdict_text
from vramfit.units import format_bytes
from vramfit.userfiles import read_user_json

if TYPE_CHECKING:
    from vramfit.estimate.result import Estimate
    from vramfit.plan.result import Candidate, KnobPrice, PlanResult
    from vramfit.probe.result import Measured, ProbeResult

    Result = Estimate | PlanResult | ProbeResult

KINDS = ("estimate", "plan", "probe")

COMPONENT_LABELS = {
    "weights": "weights",
    "quant_state": "quantization state",
    "adapters": "LoRA adapters",
    "gradients": "gradients",
    "optimizer": "optimizer state",
    "activations": "activations",
    "logits": "logits / loss",
    "temporaries": "temporaries",
}
UNATTRIBUTED = "unattributed"
SLACK = "allocator cache"
CONTEXT = "CUDA context"
PAGED = "paged optimizer"
SEGMENTS = (*COMPONENTS, UNATTRIBUTED, SLACK, CONTEXT, PAGED)


def result_json(result: object) -> dict:
    """The JSON dict of a result object or dict, with its ``"kind"`` (inferred when absent)."""
    if isinstance(result, dict):
        d = dict(result)
    elif hasattr(result, "to_json"):
        d = dict(result.to_json())  # type: ignore[attr-defined]
    else:
        raise TypeError(f"not a vramfit result: {type(result).__name__}")
    d["kind"] = result_kind(d)
    return d


def result_kind(d: dict, where: str = "result") -> str:
    kind = d.get("kind")
    if kind is None:  # older files / library objects: infer from the keys
        if "measured" in d:
            return "probe"
        if "recommended" in d or "alternatives" in d:
            return "plan"
        if "breakdown" in d:
            return "estimate"
        raise InputError(
            where, "not a vramfit result: no 'kind' and none of the keys breakdown, recommended, measured"
        )
    if kind not in KINDS:
        raise InputError(where, f"unknown kind {kind!r}; accepted: {', '.join(KINDS)}")
    return kind


def load_result(path: str | Path) -> dict:
    """Read a saved result (``vramfit estimate --json``, ``plan --json``, ``probe --out``)."""
    p = Path(path)
    d = read_user_json(p, "RESULT")
    if "kind" not in d and isinstance(d.get("result"), dict):
        # a published measurement: {"result": <probe JSON>, "command": ..., ...}
        provenance = {k: v for k, v in d.items() if k != "result"}
        d = dict(d["result"])
        if provenance:
            d.setdefault("provenance", provenance)
    d["kind"] = result_kind(d, where=str(p))
    if d["kind"] == "estimate" and not isinstance(d.get("breakdown"), dict):
        raise InputError(str(p), "an estimate result needs a 'breakdown' object")
    if d["kind"] == "probe" and not isinstance(d.get("measured"), dict):
        raise InputError(str(p), "a probe result needs a 'measured' object")
    return d


def typed(result: object) -> Result:
    """The typed record of a result: an Estimate, PlanResult or ProbeResult as it is, a JSON dict (or
    anything with ``to_json()``) read into the record of its kind."""
    from vramfit.estimate.result import Estimate
    from vramfit.plan.result import PlanResult
    from vramfit.probe.result import ProbeResult

    if isinstance(result, (Estimate, PlanResult, ProbeResult)):
        return result
    d = result_json(result)
    reader = {"estimate": Estimate.from_json, "plan": PlanResult.from_json, "probe": ProbeResult.from_json}
    return reader[d["kind"]](d)


def kind_of(r: Result) -> str:
    from vramfit.plan.result import PlanResult
    from vramfit.probe.result import ProbeResult

    return "plan" if isinstance(r, PlanResult) else "probe" if isinstance(r, ProbeResult) else "estimate"


def estimate_part(r: Result) -> Estimate | None:
    """The estimate a result shows, or None (a probe saved without an estimate). For a plan: the
    recommendation, or where nothing fits the smallest configuration (``PlanResult.judged``)."""
    from vramfit.plan.result import PlanResult
    from vramfit.probe.result import ProbeResult

    if isinstance(r, PlanResult):
        return r.judged.estimate if r.judged else None
    if isinstance(r, ProbeResult):
        return r.estimated
    return r


def measured_part(r: Result) -> Measured | None:
    """A probe's measurement when it has memory numbers (a CPU pipeline check has none)."""
    from vramfit.probe.result import ProbeResult

    m = r.measured if isinstance(r, ProbeResult) else None
    return m if m is not None and m.peak_allocated_bytes is not None else None


def config_of(r: Result, part: Estimate | None) -> dict:
    from vramfit.probe.result import ProbeResult

    if part is not None and part.config:
        return part.config
    return r.config if isinstance(r, ProbeResult) else {}


def card_of(r: Result, part: Estimate | None) -> tuple[str | None, int | None, int | None]:
    """(name, capacity, usable) of the card a result was judged on; Nones when it names none."""
    from vramfit.plan.result import PlanResult

    v = r.verdict if isinstance(r, PlanResult) else part.verdict if part else None
    if v is not None:
        return v.gpu, v.capacity_bytes, v.usable_bytes
    card = r.card if isinstance(r, PlanResult) else {}
    return card.get("name"), card.get("capacity_bytes"), card.get("usable_bytes")


def model_name(r: Result) -> str:
    return str(r.model or "unknown model")


def stack_segments(part: Estimate | Measured | dict) -> list[tuple[str, int]]:
    """[(segment, bytes)] in :data:`SEGMENTS` order; they sum to the part's required VRAM.

    A measurement whose attribution does not cover its whole peak gets an ``unattributed`` segment.
    """
    part = _record(part)
    values = part.breakdown.to_json() if isinstance(part.breakdown, Breakdown) else part.breakdown or {}
    comps = [(c, int(values.get(c) or 0)) for c in COMPONENTS]
    attributed = sum(b for _, b in comps)
    peak = part.peak_allocated_bytes
    allocated = max(attributed, peak) if peak is not None else attributed
    nt = part.memory.non_torch if part.memory else NonTorch(0)
    required = part.required_vram_bytes
    if required is not None:
        slack = max(0, required - nt.total - allocated)
    else:  # a probe that did not search the allocator requirement: reserved is the upper bound
        alloc_req = part.allocator_required_bytes or part.peak_reserved_bytes or allocated
        slack = max(0, alloc_req - allocated)
    extra = [(UNATTRIBUTED, allocated - attributed)] if allocated > attributed else []
    return [*comps, *extra, (SLACK, slack), (CONTEXT, nt.cuda_context), (PAGED, nt.paged_optimizer)]


def _record(part: Estimate | Measured | dict) -> Estimate | Measured:
    if isinstance(part, dict):  # a saved estimate's JSON
        from vramfit.estimate.result import Estimate

        return Estimate.from_json(part)
    return part


def required_bytes(part: Estimate | Measured | None) -> int:
    if part is None:
        return 0
    req = part.required_vram_bytes
    return req if req is not None else sum(b for _, b in stack_segments(part))


def segment_label(name: str) -> str:
    return COMPONENT_LABELS.get(name, name)


def fmt_value(v: object) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    if v is None:
        return "default"
    return str(v)


CONFIG_LABELS = {
    "method": "method",
    "quant": "quantization",
    "double_quant": "double quantization",
    "load_dtype": "load dtype",
    "compute_dtype": "compute dtype",
    "rank": "LoRA rank",
    "alpha": "LoRA alpha",
    "dropout": "LoRA dropout",
    "targets": "LoRA targets",
    "seq_len": "sequence length",
    "batch_size": "micro-batch",
    "grad_accum": "gradient accumulation",
    "gradient_checkpointing": "gradient checkpointing",
    "optimizer": "optimizer",
    "attn": "attention",
    "kbit_upcast": "fp32 upcast of norms and embeddings (prepare_model_for_kbit_training)",
}
_LORA_ONLY = ("rank", "alpha", "dropout", "targets")


def _trains_lora(config: dict) -> bool:
    """Whether a saved configuration trains LoRA adapters (its method's row; an unknown method: yes)."""
    spec = METHODS.get(str(config.get("method")))
    return spec.lora if spec else True


def config_rows(config: dict) -> list[tuple[str, str]]:
    """[(label, value)] of a TrainConfig JSON; LoRA fields are left out for full fine-tuning."""
    rows = []
    full = not _trains_lora(config)
    for key, value in config.items():
        if full and key in _LORA_ONLY:
            continue
        rows.append((CONFIG_LABELS.get(key, key), fmt_value(value)))
    return rows


def config_summary(config: dict) -> str:
    """'qlora nf4+dq, r=16 on q_proj,v_proj, seq 512 x batch 1, checkpointing on, paged_adamw_8bit'."""
    if not config:
        return ""
    method = str(config.get("method", "?"))
    quant = config.get("quant")
    spec = QUANTS.get(quant) if isinstance(quant, str) else None
    dq = "+dq" if config.get("double_quant") and spec and spec.double_quant_applies else ""
    head = method if quant is None or (spec and spec.bits is None) else f"{method} {quant}{dq}"
    parts = [head]
    if _trains_lora(config) and "rank" in config:
        targets = config.get("targets")
        on = f" on {','.join(targets)}" if isinstance(targets, (list, tuple)) else ""
        parts.append(f"r={config['rank']}{on}")
    parts.append(f"seq {config.get('seq_len', '?')} x batch {config.get('batch_size', '?')}")
    if "gradient_checkpointing" in config:
        parts.append(f"checkpointing {'on' if config['gradient_checkpointing'] else 'off'}")
    if config.get("optimizer"):
        parts.append(str(config["optimizer"]))
    return ", ".join(parts)


def result_verdict(r: Result) -> Verdict | None:
    """The verdict a report states: a plan's (with its margin), an estimate's, or a probe's measured
    range judged on the estimate's card (all by ``memory.judge``)."""
    return r.verdict


def verdict_words(r: Result) -> VerdictText | None:
    """The verdict sentence of a result (:mod:`vramfit.report.verdict`); None without a card."""
    from vramfit.probe.result import ProbeResult

    if isinstance(r, ProbeResult):
        return probe_verdict_text(r.verdict, r.measured)
    return verdict_text(r.verdict) if r.verdict else None


def verdict_line(r: Result, required: int) -> str:
    """The verdict sentence, or 'needs X' when the result names no card."""
    words = verdict_words(r)
    return words.plain if words else f"needs {format_bytes(required)}"


def environment_of(r: Result) -> dict | None:
    """Where a probe ran (an estimate or a plan records none)."""
    from vramfit.probe.result import ProbeResult

    return r.environment if isinstance(r, ProbeResult) else None


def environment_rows(env: dict | None) -> list[tuple[str, str]]:
    if not env:
        return []
    rows = []
    for k, v in env.items():
        if v is None:
            continue
        if k.endswith("_bytes") and isinstance(v, int):
            v = format_bytes(v)
        rows.append((k.replace("_bytes", "").replace("_", " "), str(v)))
    return rows


def trade_text(alternative: Candidate) -> str:
    """How a plan's alternative differs from the recommendation."""
    return "; ".join(alternative.trades)


def knob_change(knob: KnobPrice) -> str:
    """'on → off': the knob's change as the reports print it."""
    return knob.change.replace("->", "→")


def plan_commands(r: PlanResult) -> list[tuple[str, str]]:
    """[(label, command)] of a plan: the estimate / probe commands of the recommendation."""
    return [(label, cmd) for label, cmd in (("estimate", r.estimate_command), ("verify on a GPU", r.probe_command))
            if cmd]  # fmt: skip


def warnings_of(r: Result, part: Estimate | None, notes: bool) -> list[str]:
    """The result's warnings, once each: the estimate's, the probe's and (``notes``) a plan's notes."""
    from vramfit.plan.result import PlanResult
    from vramfit.probe.result import ProbeResult

    warns = [*(part.warnings if part else ())]
    if isinstance(r, ProbeResult):
        warns += r.warnings
    if notes and isinstance(r, PlanResult):
        warns += r.notes
    return list(dict.fromkeys(str(w) for w in warns))
