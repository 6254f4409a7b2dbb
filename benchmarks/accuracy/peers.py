"""The two other tools, fitcheck-llm and ``accelerate estimate-memory``, run on the same configurations,
with config.json read from a local Hugging Face cache written from vramfit's registry (offline)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import types
from pathlib import Path

from vramfit.models import registry_spec
from vramfit.models.registry import REGISTRY
from vramfit.units import MiB

from .runs import Run

# ---- a local Hugging Face cache (the only source of config.json for the other two tools) -------------


def write_hub_cache(home: Path, runs: list[Run]) -> None:
    for hf_id in sorted({r.hf_id for r in runs}):
        org, name = hf_id.split("/")
        repo = home / "hub" / f"models--{org}--{name}"
        snap = repo / "snapshots" / "0000000000000000000000000000000000000000"
        snap.mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(snap.name)
        (snap / "config.json").write_text(json.dumps(registry_spec(_entry_for(hf_id)).hf_config))


def _entry_for(hf_id: str) -> str:
    return next(e.name for e in REGISTRY.values() if e.hf_id == hf_id)


@contextlib.contextmanager
def offline_hub(home: Path):
    """HF_HOME at ``home``, offline: for this process, including a huggingface_hub imported before."""
    keys = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(
        HF_HOME=str(home),
        HF_HUB_CACHE=str(home / "hub"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    patched = {}
    if "huggingface_hub" in sys.modules:  # constants are read at import: patch them for this block
        from huggingface_hub import constants

        patched = {k: getattr(constants, k) for k in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")}
        constants.HF_HOME, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = (
            str(home),
            str(home / "hub"),
            True,
        )
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if patched:
            from huggingface_hub import constants

            for k, v in patched.items():
                setattr(constants, k, v)


# ---- accelerate estimate-memory ----------------------------------------------------------------------


ACCELERATE_DTYPES = ("float32", "float16", "int8", "int4")


def accelerate_dtype(cfg: dict) -> str:
    """The `--dtypes` row of accelerate that matches the run: what the base weights are stored in."""
    if cfg["method"] == "qlora":
        return {"nf4": "int4", "fp4": "int4", "int8": "int8"}[cfg.get("quant") or "nf4"]
    return "float32" if cfg["load_dtype"] == "fp32" else "float16"


def accelerate_training_bytes(hf_ids: list[str]) -> dict[str, dict[str, int | None]]:
    """hf_id -> dtype -> the "Training using Adam" figure of `accelerate estimate-memory` (None: N/A).

    accelerate's ``gather_data`` runs unchanged; only its Hub metadata call (``verify_on_hub``) is replaced
    by the registry's config.json, which ``AutoConfig.from_pretrained`` then reads from the local cache."""
    import accelerate.commands.estimate as acc

    out: dict[str, dict[str, int | None]] = {}
    original = acc.verify_on_hub
    try:
        for hf_id in hf_ids:
            config = registry_spec(_entry_for(hf_id)).hf_config
            acc.verify_on_hub = lambda repo, token=None, c=config: types.SimpleNamespace(
                config=c, library_name="transformers"
            )
            args = types.SimpleNamespace(
                model_name=hf_id,
                library_name="transformers",
                trust_remote_code=False,
                dtypes=ACCELERATE_DTYPES,
            )
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                rows = acc.gather_data(args)
            # estimate_command prints max(training dict values), "N/A" when that is -1
            out[hf_id] = {
                dtype: (None if max(usage.values()) == -1 else int(max(usage.values())))
                for dtype, _largest, _total, usage in rows
            }
    finally:
        acc.verify_on_hub = original
    return out


def add_accelerate(runs: list[Run]) -> str | None:
    try:
        figures = accelerate_training_bytes(sorted({r.hf_id for r in runs}))
    except Exception as exc:  # noqa: BLE001 - reported in the output, not hidden
        return f"accelerate could not run: {type(exc).__name__}: {exc}"
    for run in runs:
        run.accelerate_dtype = accelerate_dtype(run.config)
        value = figures[run.hf_id][run.accelerate_dtype]
        if value is not None:
            run.predicted["accelerate"] = {"peak": value, "required": value}
        fp16 = figures[run.hf_id]["float16"]
        run.predicted["accelerate_fp16"] = {"peak": fp16, "required": fp16}
    return None


# ---- fitcheck-llm ------------------------------------------------------------------------------------


FITCHECK_OPTIMIZER = {  # vramfit optimizer -> (fitcheck --optimizer, what is lost)
    "adamw_torch": ("adamw", ""),
    "adamw_torch_fused": ("adamw", ""),
    "adamw_8bit": ("adam8bit", ""),
    "paged_adamw_8bit": ("adam8bit", "paged state (CUDA managed memory) counted as device memory"),
    "paged_adamw_32bit": ("adamw", "paged state (CUDA managed memory) counted as device memory"),
    "sgd": ("sgd", ""),
    "adafactor": ("sgd", "adafactor has no fitcheck equivalent: sgd (no state) is the closest"),
}


def _precision_args(cfg: dict, lost: list[str]) -> list[str]:
    """fitcheck's --quant / --precision for the run's base model (what they cannot say goes to ``lost``)."""
    method, quant = cfg["method"], cfg.get("quant")
    if method == "qlora":
        if quant == "fp4":
            lost.append("fp4: no fitcheck option, priced as nf4 (same 4-bit storage)")
            quant = "nf4"
        args = ["--quant", quant]
        if cfg.get("double_quant") and quant == "nf4":
            args.append("--double-quant")
        return args + ["--precision", cfg["compute_dtype"]]
    # fitcheck prices unquantized base weights at --precision: give it the dtype they are loaded in
    if cfg["load_dtype"] != cfg["compute_dtype"]:
        lost.append(f"load {cfg['load_dtype']} / compute {cfg['compute_dtype']}: one --precision for both")
    return ["--quant", "none", "--precision", cfg["load_dtype"]]


FITCHECK_TARGETS = {  # vramfit --targets -> fitcheck --lora-targets, where the names differ
    ("all-linear",): "full",
    ("attention",): "standard",
    ("qkv_proj", "o_proj"): "q,k,v,o",
}


def _lora_args(run: Run, lost: list[str]) -> list[str]:
    """fitcheck's LoRA flags for the run (--no-lora for full fine-tuning)."""
    cfg = run.config
    if cfg["method"] == "full":
        return ["--no-lora"]
    targets = tuple(cfg["targets"])
    args = ["--lora-r", str(cfg["rank"]), "--lora-targets", FITCHECK_TARGETS.get(targets, ",".join(targets))]
    if any(m.name in ("qkv_proj", "gate_up_proj") for m in registry_spec(run.model).layer_linears):
        lost.append("fused qkv_proj / gate_up_proj: LoRA priced on separate projections")
    return args


def fitcheck_args(run: Run) -> tuple[list[str], list[str]]:
    """The `fitcheck` command line for a run, and what of the run it cannot express."""
    cfg, lost = run.config, []
    args = [run.hf_id, "--gpu", "h100", "--json", *_precision_args(cfg, lost), *_lora_args(run, lost)]
    args += ["--seq-len", str(cfg["seq_len"]), "--batch-size", str(cfg["batch_size"])]
    if cfg.get("grad_accum", 1) > 1:
        args += ["--grad-accum", str(cfg["grad_accum"])]
    opt, why = FITCHECK_OPTIMIZER[cfg["optimizer"]]
    args += ["--optimizer", opt]
    if why:
        lost.append(why)
    if cfg.get("gradient_checkpointing"):
        args.append("--grad-checkpoint")
    if run.vramfit_attn in ("sdpa", "flash_attention_2"):
        args.append("--flash-attn")  # SDPA picks the flash kernel on this card (no score matrix)
    if cfg.get("kbit_upcast") is False:
        lost.append("no fp32 upcast of norms / embeddings (prepare_model_for_kbit_training skipped)")
    return args, lost


def fitcheck_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fitcheck-llm")
    except PackageNotFoundError:
        return None


def add_fitcheck(runs: list[Run]) -> str | None:
    """Run fitcheck's own CLI (in this process) for every run; None, or why it could not run at all."""
    if fitcheck_version() is None:
        return "fitcheck-llm is not installed (`pip install fitcheck-llm`); its columns are empty."
    from click.testing import CliRunner
    from fitcheck.cli import estimate_command
    from fitcheck.gpu_db import get_gpu, gpu_key_for
    from fitcheck.overhead_db import get_overhead_profile

    runner = CliRunner()
    gpu_key = gpu_key_for(get_gpu("h100"))
    for run in runs:
        run.fitcheck_args, run.fitcheck_unmapped = fitcheck_args(run)
        res = runner.invoke(estimate_command, run.fitcheck_args)
        if res.exit_code not in (0, 1):  # 1 is a "does not fit" verdict, 2 an error
            run.fitcheck_error = (res.stderr or res.stdout or str(res.exception)).strip().splitlines()[-1]
            continue
        mem = json.loads(res.stdout)["memory_mib"]
        flash = "--flash-attn" in run.fitcheck_args
        quant = run.fitcheck_args[run.fitcheck_args.index("--quant") + 1]
        context = get_overhead_profile(gpu_key, flash, quant).base_context_mib
        run.predicted["fitcheck"] = {
            # its components without "overhead" (CUDA context + fragmentation): what is allocated
            "peak": round((mem["total"] - mem["overhead"]) * MiB),
            # its total without the CUDA context part of "overhead"
            "required": round((mem["total"] - context) * MiB),
        }
    if all("fitcheck" not in r.predicted for r in runs):
        return "fitcheck-llm ran but gave no estimate: " + runs[0].fitcheck_error
    return None
