"""Result JSON in, rows out: what the HTML and Markdown reports show, shaped once for both.

A result is the JSON of an estimate (``"kind": "estimate"``), a plan (``"plan"``) or a probe
(``"probe"``: the estimate's keys plus ``"measured"``). Objects with ``to_json()`` are accepted too.
Readers are tolerant: extra keys are ignored, missing optional ones leave their section out.

The stacked bar of a result adds up to its required VRAM::

    required_vram = weights + quant_state + ... + temporaries     (= peak allocated, the 8 components)
                  + allocator cache                                (allocator_required - peak allocated)
                  + CUDA context + paged optimizer                 (non-PyTorch memory)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vramfit.errors import InputError
from vramfit.estimate.result import COMPONENTS
from vramfit.memory import MemoryRecord, Verdict
from vramfit.report.verdict import VerdictText, probe_verdict_text, verdict_text
from vramfit.units import format_bytes
from vramfit.userfiles import read_user_json

if TYPE_CHECKING:
    from vramfit.probe.result import Measured

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


def estimate_part(d: dict) -> dict | None:
    """The part of a result with the estimate's keys, or None (a probe saved without an estimate).

    For a plan: the recommendation, or where nothing fits the smallest configuration (see
    :func:`plan_fits`)."""
    if d.get("kind") == "plan":
        rec = d.get("recommended")
        if not isinstance(rec, dict):  # nothing fits: show the smallest configuration there is
            rec = (d.get("no_fit") or {}).get("smallest") if isinstance(d.get("no_fit"), dict) else None
        if not isinstance(rec, dict):
            return None
        rec = dict(rec)
        rec.setdefault("model", d.get("model"))
        rec.setdefault("verdict", d.get("verdict"))
        return rec
    return d if isinstance(d.get("breakdown"), dict) else None


def plan_fits(d: dict) -> bool:
    return isinstance(d.get("recommended"), dict)


def measured_part(d: dict) -> dict | None:
    """A probe's measurement when it has memory numbers (a CPU pipeline check has none)."""
    m = d.get("measured") if d.get("kind") == "probe" else None
    if not isinstance(m, dict) or not isinstance(m.get("peak_allocated_bytes"), int):
        return None
    return m


def config_of(d: dict) -> dict:
    part = estimate_part(d) or {}
    cfg = part.get("config") or d.get("config") or {}
    return cfg if isinstance(cfg, dict) else {}


def verdict_of(d: dict) -> dict | None:
    part = estimate_part(d) or {}
    v = part.get("verdict") or d.get("verdict")
    return v if isinstance(v, dict) else None


def model_name(d: dict) -> str:
    part = estimate_part(d) or {}
    return str(d.get("model") or part.get("model") or "unknown model")


def _int(x: object) -> int:
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else 0


def non_torch(part: dict) -> tuple[int, int]:
    """(CUDA context, paged optimizer) bytes of an estimate or a measurement."""
    nt = part.get("non_torch_bytes") or {}
    return _int(nt.get("cuda_context")), _int(nt.get("paged_optimizer"))


def stack_segments(part: dict) -> list[tuple[str, int]]:
    """[(segment, bytes)] in :data:`SEGMENTS` order; they sum to the part's required VRAM.

    A measurement whose attribution does not cover its whole peak gets an ``unattributed`` segment.
    """
    bd = part.get("breakdown") or {}
    comps = [(c, _int(bd.get(c))) for c in COMPONENTS]
    attributed = sum(b for _, b in comps)
    peak = part.get("peak_allocated_bytes")
    allocated = max(attributed, _int(peak)) if isinstance(peak, int) else attributed
    ctx, paged = non_torch(part)
    required = part.get("required_vram_bytes")
    if isinstance(required, int):
        slack = max(0, required - ctx - paged - allocated)
    else:  # a probe that did not search the allocator requirement: reserved is the upper bound
        alloc_req = part.get("allocator_required_bytes") or part.get("peak_reserved_bytes") or allocated
        slack = max(0, _int(alloc_req) - allocated)
    extra = [(UNATTRIBUTED, allocated - attributed)] if allocated > attributed else []
    return [*comps, *extra, (SLACK, slack), (CONTEXT, ctx), (PAGED, paged)]


def required_bytes(part: dict) -> int:
    req = part.get("required_vram_bytes")
    return _int(req) if isinstance(req, int) else sum(b for _, b in stack_segments(part))


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


def config_rows(config: dict) -> list[tuple[str, str]]:
    """[(label, value)] of a TrainConfig JSON; LoRA fields are left out for full fine-tuning."""
    rows = []
    full = config.get("method") == "full"
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
    head = (
        method
        if quant in (None, "none")
        else f"{method} {quant}{'+dq' if config.get('double_quant') and quant in ('nf4', 'fp4') else ''}"
    )
    parts = [head]
    if method != "full" and "rank" in config:
        targets = config.get("targets")
        on = f" on {','.join(targets)}" if isinstance(targets, (list, tuple)) else ""
        parts.append(f"r={config['rank']}{on}")
    parts.append(f"seq {config.get('seq_len', '?')} x batch {config.get('batch_size', '?')}")
    if "gradient_checkpointing" in config:
        parts.append(f"checkpointing {'on' if config['gradient_checkpointing'] else 'off'}")
    if config.get("optimizer"):
        parts.append(str(config["optimizer"]))
    return ", ".join(parts)


def result_verdict(d: dict) -> Verdict | None:
    """The verdict a report states, judged again by ``memory.judge`` from the result's figures: a plan's
    (with its margin), an estimate's, or a probe's measured range on the estimate's card."""
    if d.get("kind") == "plan":
        return Verdict.from_json(d.get("verdict"))
    part = estimate_part(d)
    rec = MemoryRecord.from_json(part) if part else None
    v = Verdict.from_json((part or {}).get("verdict"), rec.required_range() if rec else None)
    if d.get("kind") != "probe":
        return v
    mem = probe_measured(d).memory
    return v.rejudge(*mem.required_range()) if v and mem else None


def probe_measured(d: dict) -> Measured:
    """A probe result's measurement, typed."""
    from vramfit.probe.result import Measured

    m = d.get("measured")
    return Measured.from_json(m if isinstance(m, dict) else {"device": None})


def verdict_words(d: dict) -> VerdictText | None:
    """The verdict sentence of a result (:mod:`vramfit.report.verdict`); None without a card."""
    v = result_verdict(d)
    if d.get("kind") == "probe":
        return probe_verdict_text(v, probe_measured(d))
    return verdict_text(v) if v else None


def verdict_line(d: dict, required: int) -> str:
    """The verdict sentence, or 'needs X' when the result names no card."""
    words = verdict_words(d)
    return words.plain if words else f"needs {format_bytes(required)}"


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


def phase_rows(part: dict) -> list[tuple[str, int]]:
    """[(phase, allocated bytes)] of an estimate."""
    out = []
    for p in part.get("phases") or ():
        if isinstance(p, dict) and "name" in p:
            out.append((str(p["name"]), _int(p.get("allocated_bytes", p.get("peak_allocated_bytes")))))
    return out


def trade_text(alternative: dict) -> str:
    """How a plan's alternative differs from the recommendation ("trade" or a list of "trades")."""
    trades = alternative.get("trades")
    if isinstance(trades, (list, tuple)) and trades:
        return "; ".join(str(t) for t in trades)
    return str(alternative.get("trade") or "")


def knob_change(knob: dict) -> str:
    """'on -> off' from a knob price ("change", or "from" and "to")."""
    if knob.get("change"):
        return str(knob["change"]).replace("->", "→")
    return f"{fmt_value(knob.get('from'))} → {fmt_value(knob.get('to'))}"


def plan_commands(d: dict) -> list[tuple[str, str]]:
    """[(label, command)] of a plan: the estimate / probe commands of the recommendation."""
    code = d.get("code")
    if not isinstance(code, dict):
        return []
    return [(label, str(code[key])) for key, label in (("estimate", "estimate"), ("probe", "verify on a GPU"))
            if code.get(key)]  # fmt: skip
