"""The measured runs: the probe results under benchmarks/results/probe/, one per configuration, and
vramfit's estimate of each beside its measurement."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from vramfit.config import TrainConfig
from vramfit.estimate import estimate
from vramfit.estimate.weights import dequantized_weight_bytes
from vramfit.models import registry_spec
from vramfit.models.registry import REGISTRY
from vramfit.probe.measuring import measured_card

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file: benchmarks/accuracy/runs.py)
RESULTS = ROOT / "benchmarks" / "results" / "probe"
# Same measurement as h100_calib_mistral-7b_seq512_gc (one probe invocation, timed for two targets).
DUPLICATES = {"h100_verdict", "h100_findmin"}
# The eight families of the accuracy issue; registry families grouped onto them.
FAMILY = {
    "Llama 2": "Llama-2",
    "Llama 3": "Llama-3",
    "Llama 3.1": "Llama-3",
    "Llama 3.2": "Llama-3",
    "Mistral": "Mistral",
    "Qwen2.5": "Qwen2.5",
    "Qwen3": "Qwen3",
    "Phi-3": "Phi-3",
    "Phi-3.5": "Phi-3",
    "Gemma 2": "Gemma-2",
    "TinyLlama": "TinyLlama / SmolLM2",
    "SmolLM2": "TinyLlama / SmolLM2",
}
TOOLS = ("vramfit", "fitcheck", "accelerate", "accelerate_fp16")
TOOL_LABEL = {
    "vramfit": "vramfit",
    "fitcheck": "fitcheck-llm",
    "accelerate": "accelerate (run's dtype)",
    "accelerate_fp16": "accelerate (float16 row)",
}
QUANTITIES = ("peak", "required")
QUANTITY_LABEL = {
    "peak": "peak allocated",
    "required": "required (find-min, else reserved)",
}


@dataclass
class Run:
    name: str
    path: Path
    result: dict
    command: str
    model: str = ""
    family: str = ""
    hf_id: str = ""
    config: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)  # quantity -> bytes
    required_source: str = ""  # "find-min" | "reserved"
    batch: str = ""  # "calib", or the accuracy_grid.py grid that measured it ("1" ... "5", "fm")
    repeats: list = field(default_factory=list)  # other runs of the same configuration (not counted)
    measured_breakdown: dict | None = None
    fp32_logits: int = 0  # batch x seq x vocab x 4: what vramfit's allocator slack grows with
    dequant: int = 0  # one dequantized weight (k-bit bases): the slack's second term
    predicted: dict = field(default_factory=dict)  # tool -> {quantity: bytes}
    vramfit_breakdown: dict = field(default_factory=dict)
    vramfit_attn: str = ""
    fitcheck_args: list = field(default_factory=list)
    fitcheck_unmapped: list = field(default_factory=list)
    fitcheck_error: str = ""
    accelerate_dtype: str = ""

    def error(self, tool: str, quantity: str) -> float | None:
        p = self.predicted.get(tool, {}).get(quantity)
        return None if p is None else p / self.measured[quantity] - 1


# ---- the measurements --------------------------------------------------------------------------------


def load_runs(results: Path = RESULTS) -> list[Run]:
    runs = []
    for path in sorted(results.glob("h[0-9]*_*.json")):  # h100_..., h200_...: the GPU that measured it
        if path.stem in DUPLICATES:
            continue
        data = json.loads(path.read_text())
        result = data.get("result", data)
        if "config" not in result or result.get("measured", {}).get("device") != "cuda":
            continue  # the builder comparison: no training configuration
        m = result["measured"]
        entry = REGISTRY[result["model"]]
        spec = registry_spec(entry.name)
        cfg = result["config"]
        required = m.get("allocator_required_bytes")
        paged = (m.get("non_torch_bytes") or {}).get("paged_optimizer") or 0
        run = Run(
            name=path.stem.split("_", 1)[1],
            path=path,
            result=result,
            command=str(data.get("command", "")),
            model=entry.name,
            family=FAMILY[entry.family],
            hf_id=entry.hf_id,
            config=cfg,
            measured={
                "peak": m["peak_allocated_bytes"],
                "required": (required or m["peak_reserved_bytes"]) + paged,
            },
            required_source="find-min" if required else "reserved",
            batch=_batch(data),
            measured_breakdown=m.get("breakdown"),
            fp32_logits=cfg["batch_size"] * cfg["seq_len"] * spec.vocab_size * 4,
            dequant=dequantized_weight_bytes(spec, TrainConfig.from_json(cfg)),
        )
        runs.append(run)
    return merge_repeats(runs)


def _batch(data: dict) -> str:
    grid = data.get("grid")
    if not grid:
        return "calib"
    m = re.search(r"--grid (\S+)", grid)
    return m.group(1) if m else "1"


def merge_repeats(runs: list[Run]) -> list[Run]:
    """One run per configuration: the one with find-min if any (else the first); the others are kept
    on it as ``repeats`` (the same configuration measured again: how reproducible a measurement is)."""
    by_key: dict[tuple, list[Run]] = {}
    for r in runs:
        by_key.setdefault((r.model, json.dumps(r.config, sort_keys=True)), []).append(r)
    out = []
    for group in by_key.values():
        keep = next((r for r in group if r.required_source == "find-min"), group[0])
        keep.repeats = [r for r in group if r is not keep]
        out.append(keep)
    return out


def allocator_required_measured(run: Run) -> int:
    """Measured allocator requirement (without the paged optimizer state, which is outside PyTorch)."""
    m = run.result["measured"]
    return m.get("allocator_required_bytes") or m["peak_reserved_bytes"]


def exact_runs(runs: list[Run]) -> list[Run]:
    """The runs whose requirement was searched with --find-min: the only ones where it is known exactly."""
    return [r for r in runs if r.required_source == "find-min"]


# ---- vramfit -----------------------------------------------------------------------------------------


def add_vramfit(runs: list[Run]) -> None:
    for run in runs:
        card = measured_card(run.result["environment"])
        est = estimate(run.model, TrainConfig.from_json(run.config), card)
        run.predicted["vramfit"] = {
            "peak": est.peak_allocated_bytes,
            "required": est.required_vram_bytes - est.non_torch.cuda_context,
            "allocator_required": est.allocator_required_bytes,
            "paged": est.non_torch.paged_optimizer,
        }
        run.vramfit_breakdown = est.breakdown.to_json()
        run.vramfit_attn = est.config["attn"]
