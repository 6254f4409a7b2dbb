"""The engine's own configuration for a run that offloads to the CPU or spans several GPUs.

Two files a person can hand to the engine beside the training code (``codegen.python_code``):

* an ``accelerate launch --config_file`` YAML selecting FSDP2 (``fsdp_version: 2``): accelerate reads the
  ``fsdp_config`` keys into ``FullyShardedDataParallelPlugin`` (``accelerate/commands/launch.py`` turns
  ``fsdp_config.x`` into ``--fsdp_x``; ``utils/dataclasses.py`` reads them back as ``FSDP_*`` variables);
  ``fsdp_offload_params: true`` becomes ``CPUOffloadPolicy()`` (``set_cpu_offload``: pin_memory=True);
* a DeepSpeed ZeRO-3 JSON with the same offload (``offload_param`` / ``offload_optimizer`` to ``cpu`` with
  ``pin_memory``), for those who run DeepSpeed instead.

Pure Python (no yaml, no torch): the YAML is written by hand, flat enough to need nothing else.
"""

from __future__ import annotations

import json
from typing import Literal

from vramfit.config import TrainConfig
from vramfit.models.spec import ArchSpec

Offload = Literal["none", "cpu"]
OFFLOADS: tuple[Offload, ...] = ("none", "cpu")

# transformers' class-name prefix of each model_type vramfit knows (models/<type>/modeling_<type>.py
# defines <Prefix>DecoderLayer, the unit FSDP wraps: the model's ``_no_split_modules``).
CLASS_PREFIX = {
    "llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma": "Gemma",
    "gemma2": "Gemma2", "phi3": "Phi3",
}  # fmt: skip
MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}


def decoder_layer_class(arch: ArchSpec) -> str | None:
    """``<Prefix>DecoderLayer`` of the model, or None when vramfit does not know the prefix (accelerate
    then wraps the model's ``_no_split_modules``, which is the same class)."""
    prefix = CLASS_PREFIX.get(str(arch.hf_config.get("model_type", "")))
    return f"{prefix}DecoderLayer" if prefix else None


def fsdp_config(arch: ArchSpec, cfg: TrainConfig, gpus: int, offload: Offload) -> dict:
    """The ``fsdp_config`` keys of the accelerate YAML (FSDP2)."""
    out: dict = {
        "fsdp_version": 2,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_offload_params": offload == "cpu",
        "fsdp_reshard_after_forward": True,
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        # NOTE: accelerate skips the rank-0 loading path for bitsandbytes Params4bit models
        # (fsdp2_prepare_model: ``not model_has_params4bit``), so it stays off for QLoRA.
        "fsdp_cpu_ram_efficient_loading": not cfg.is_kbit,
        # checkpointing is the model's own (gradient_checkpointing_enable), as in the single-GPU recipe
        "fsdp_activation_checkpointing": False,
    }
    layer = decoder_layer_class(arch)
    if layer:
        out["fsdp_transformer_layer_cls_to_wrap"] = layer
    return out


def accelerate_yaml(
    arch: ArchSpec, cfg: TrainConfig, gpus: int, offload: Offload, use_cpu: bool = False
) -> str:
    """``accelerate launch --config_file`` YAML for FSDP2 on ``gpus`` processes of one machine."""
    top = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "FSDP",
        "mixed_precision": MIXED_PRECISION[cfg.compute_dtype],
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": gpus,
        "use_cpu": use_cpu,
        "main_training_function": "main",
        "rdzv_backend": "static",
        "same_network": True,
    }
    lines = [f"{k}: {_yaml(v)}" for k, v in top.items()]
    lines.append("fsdp_config:")
    lines += [f"  {k}: {_yaml(v)}" for k, v in fsdp_config(arch, cfg, gpus, offload).items()]
    return "\n".join(lines) + "\n"


def _yaml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def deepspeed_config(cfg: TrainConfig, gpus: int, offload: Offload) -> dict:
    """A DeepSpeed ZeRO-3 config (runtime/zero/config.py keys) for the same run. ``auto`` values are filled
    by transformers' HfTrainerDeepSpeedConfig from the TrainingArguments."""
    zero: dict = {
        "stage": 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        # DeepSpeed's defaults (runtime/zero/config.py): 5e7 elements prefetched, 1e9 live parameters
        "stage3_prefetch_bucket_size": 50_000_000,
        "stage3_max_live_parameters": 1_000_000_000,
        "stage3_param_persistence_threshold": 100_000,
        "stage3_gather_16bit_weights_on_model_save": True,
    }
    if offload == "cpu":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    out: dict = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "zero_optimization": zero,
        "gradient_clipping": "auto",
    }
    if cfg.compute_dtype == "bf16":
        out["bf16"] = {"enabled": True}
    elif cfg.compute_dtype == "fp16":
        out["fp16"] = {"enabled": True}
    return out


def deepspeed_json(cfg: TrainConfig, gpus: int, offload: Offload) -> str:
    return json.dumps(deepspeed_config(cfg, gpus, offload), indent=2) + "\n"


def launch_command(gpus: int, script: str = "train.py") -> str:
    """How the YAML is used: one process per GPU."""
    return f"accelerate launch --config_file fsdp2.yaml --num_processes {gpus} {script}"
