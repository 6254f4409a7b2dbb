"""The recommendation as code a person can paste: the reference recipe with the planned values filled in.

``python_code`` writes the ``BitsAndBytesConfig``, ``from_pretrained``, ``prepare_model_for_kbit_training``,
``LoraConfig`` and ``TrainingArguments`` calls of the recipe (see README); ``command_line`` writes the
equivalent ``vramfit estimate`` / ``vramfit probe`` command. Values are written with ``repr`` so that
what is printed is what was planned (tests compile the code and read the values back).
"""

from __future__ import annotations

import os
import shlex

from vramfit.catalog import DTYPES
from vramfit.catalog.quants import bnb_kwargs
from vramfit.config import TrainConfig
from vramfit.estimate.adapters import resolve_targets
from vramfit.models.spec import ArchSpec


def model_id(arch: ArchSpec) -> str:
    """What ``from_pretrained`` takes: the hub id of a registry model, else the name or folder given."""
    from vramfit.models import REGISTRY

    entry = REGISTRY.get(arch.name)
    if entry is not None:
        return entry.hf_id
    if arch.name.endswith(".json"):
        return os.path.dirname(arch.name) or "."
    return arch.name


def lora_target_modules(arch: ArchSpec, cfg: TrainConfig) -> str | list[str]:
    """peft's ``target_modules``: "all-linear" as peft spells it, else the module names."""
    if cfg.targets == ("all-linear",):
        return "all-linear"
    return [m.name for m in resolve_targets(arch, cfg.targets)]


def torch_dtype_code(dtype: str) -> str:
    """``torch.bfloat16`` for ``bf16``: the dtype as code."""
    return f"torch.{DTYPES[dtype].torch_name}"


class _Code(str):
    """Source text that ``repr`` writes as is (the compute dtype inside bnb_kwargs)."""

    def __repr__(self) -> str:
        return str(self)


def bnb_config_lines(cfg: TrainConfig, extra: dict | None = None) -> list[str]:
    """``bnb_config = BitsAndBytesConfig(...)`` from the quantization's row ([] without bitsandbytes);
    ``extra``: more keyword arguments, as source text."""
    kwargs = bnb_kwargs(cfg.resolved_quant, _Code(torch_dtype_code(cfg.compute_dtype)), cfg.double_quant)
    if not kwargs:
        return []
    kwargs.update({k: _Code(v) for k, v in (extra or {}).items()})
    args = [f"{k}={v!r}" for k, v in kwargs.items()]
    if len(args) == 1:
        return [f"bnb_config = BitsAndBytesConfig({args[0]})"]
    return ["bnb_config = BitsAndBytesConfig(", *(f"    {a}," for a in args), ")"]


def load_lines(
    arch: ArchSpec, cfg: TrainConfig, attn: str, bnb_extra: dict | None = None, load_args: tuple = ()
) -> list[str]:
    """BitsAndBytesConfig and from_pretrained, as the recipe loads the model; ``bnb_extra`` (source text)
    and ``load_args`` (argument lines) are what an engine adds."""
    lines = bnb_config_lines(cfg, bnb_extra)
    lines += ["model = AutoModelForCausalLM.from_pretrained(", f"    {model_id(arch)!r},"]
    if cfg.is_kbit:
        lines.append("    quantization_config=bnb_config,")
    lines += [
        f"    dtype={torch_dtype_code(cfg.load_dtype)},  # torch_dtype= before transformers 4.56",
        f"    attn_implementation={attn!r},",
        *load_args,
        ")",
        "model.config.use_cache = False  # the KV cache is useless in training and costs memory",
    ]
    return lines


def python_code(
    arch: ArchSpec, cfg: TrainConfig, attn: str | None = None, env_line: str | None = None
) -> str:
    """The training setup for ``cfg`` as a runnable Python snippet: the reference recipe around
    transformers' Trainer (:mod:`vramfit.plan.emit.hf`). ``env_line``: ``VAR=value`` the allocator needs,
    set before torch is imported."""
    from vramfit.plan.emit import emit

    return emit("transformers", arch, cfg, attn, env_line)


def training_code(
    arch: ArchSpec, cfg: TrainConfig, env_line: str | None, offload: str = "none", gpus: int = 1
) -> str:
    """The pick's training code: the recipe on one GPU, the FSDP2 script (:mod:`vramfit.plan.emit.fsdp`)
    when an engine offloads or shards the run."""
    if offload == "none" and gpus == 1:
        return python_code(arch, cfg, env_line=env_line)
    from vramfit.plan.emit import with_env
    from vramfit.plan.emit.fsdp import fsdp_script

    return with_env(
        "transformers", fsdp_script(arch, cfg, cfg.attn or arch.default_attn, offload, gpus), env_line
    )


def engine_flags(offload: str = "none", gpus: int = 1) -> list[str]:
    """``--offload`` / ``--gpus`` as the command lines need them ([] on one GPU without offload)."""
    out = ["--offload", offload] if offload != "none" else []
    return out + (["--gpus", str(gpus)] if gpus != 1 else [])


def _num(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() else repr(float(x))


def config_flags(cfg: TrainConfig) -> list[str]:
    """Every configuration flag of ``cfg``, so the command does not depend on the defaults."""
    flags = ["--method", cfg.method, "--quant", cfg.resolved_quant]
    if cfg.is_4bit:
        flags.append("--double-quant" if cfg.double_quant else "--no-double-quant")
    flags += ["--load-dtype", cfg.load_dtype, "--compute-dtype", cfg.compute_dtype]
    if cfg.uses_lora:
        flags += ["--rank", str(cfg.rank), "--alpha", _num(cfg.resolved_alpha), "--dropout", repr(cfg.dropout),
                  "--targets", ",".join(cfg.targets)]  # fmt: skip
    flags += [
        "--seq-len", str(cfg.seq_len), "--batch-size", str(cfg.batch_size), "--grad-accum", str(cfg.grad_accum),
        "--gradient-checkpointing" if cfg.gradient_checkpointing else "--no-gradient-checkpointing",
        "--optimizer", cfg.optimizer,
    ]  # fmt: skip
    if cfg.attn:
        flags += ["--attn", cfg.attn]
    if cfg.is_kbit:
        flags.append("--kbit-upcast" if cfg.kbit_upcast else "--no-kbit-upcast")
    flags += ["--trainer", cfg.trainer, "--loss", cfg.resolved_loss] + (
        ["--padding-free"] if cfg.padding_free else []
    )
    return flags


def command_line(
    command: str, model: str, cfg: TrainConfig, card_flags: list[str], env_line: str | None = None
) -> str:
    """``vramfit estimate|probe --model ... <every config flag> <card flags>``, shell-quoted; with
    ``env_line`` (the allocator's variable) in front and ``--expandable-segments`` among the flags."""
    words = ["vramfit", command, "--model", model, *config_flags(cfg), *card_flags]
    if env_line:
        words.append("--expandable-segments" if env_line.endswith("True") else "--no-expandable-segments")
    line = " ".join(shlex.quote(w) for w in words)
    return f"{env_line} {line}" if env_line else line
