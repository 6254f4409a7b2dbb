"""The training script of an engine pick (CPU offload, several GPUs): FSDP2 through accelerate.

Run as ``accelerate launch --config_file fsdp2.yaml train.py`` beside the YAML of
:mod:`vramfit.plan.engine_config`. It does what the probe's engine child (:mod:`vramfit.probe.engine_child`)
runs and measures, in the same order:

* the base is loaded on the CPU (``device_map={"": "cpu"}``; bitsandbytes quantizes it there): a card that
  cannot hold the base cannot load it, and FSDP2 moves each process's shard (or, offloaded, each unit when
  it runs) to the GPU;
* 4-bit weights are stored in the compute dtype (``bnb_4bit_quant_storage``), so that FSDP2 shards them:
  accelerate's ``fsdp2_prepare_model`` leaves uint8-stored ``Params4bit`` out of sharding;
* after ``accelerator.prepare`` the QuantState of every 4-bit weight moves to the GPU: bitsandbytes keeps it
  on the ``Linear4bit`` module, where FSDP2 (which moves parameters only) does not see it;
* a plain loop with ``accelerator.accumulate`` (transformers' Trainer does not move the QuantState).
"""

from __future__ import annotations

from vramfit.config import TrainConfig
from vramfit.models.spec import ArchSpec
from vramfit.plan.codegen import torch_dtype_code
from vramfit.plan.emit.common import load_lines, lora_lines
from vramfit.plan.emit.hf import checkpointing_lines, prepare_lines

LEARNING_RATE = 2e-4  # the recipe's (README); the probe's loop uses AdamW too

QUANT_STATE_LINES = (
    "# bitsandbytes keeps each 4-bit weight's QuantState on its module, where FSDP2 does not move it",
    "for module in model.modules():",
    '    for owner in (module, getattr(module, "weight", None)):',
    '        state = getattr(owner, "quant_state", None)',
    "        if state is not None:",
    "            state.to(accelerator.device)",
)


def _load_args(offload: str, gpus: int) -> tuple[str, ...]:
    why = (
        "CPU offload: FSDP2 streams one layer at a time to the GPU"
        if offload == "cpu"
        else f"FSDP2 moves each of the {gpus} processes' shard to its GPU"
    )
    return (f'    device_map={{"": "cpu"}},  # loaded and quantized on the CPU; {why}',)


def _train_lines(cfg: TrainConfig) -> list[str]:
    return [
        "",
        "",
        "def train(batches):",
        f'    """``batches``: dicts of input_ids, attention_mask and labels, {cfg.batch_size} x {cfg.seq_len} '
        f'tokens each."""',
        "    for batch in batches:",
        "        with accelerator.accumulate(model):",
        "            batch = {k: v.to(accelerator.device) for k, v in batch.items()}",
        "            loss = model(**batch).loss",
        "            accelerator.backward(loss)",
        "            optimizer.step()",
        "            optimizer.zero_grad(set_to_none=True)",
        "",
        "",
        f"# every training example: {cfg.seq_len} tokens (tokenize with truncation=True, max_length={cfg.seq_len}),",
        f"# micro-batches of {cfg.batch_size}: train(batches_of_your_dataset)",
        f"max_seq_length = {cfg.seq_len!r}",
    ]


def fsdp_script(arch: ArchSpec, cfg: TrainConfig, attn: str, offload: str, gpus: int) -> str:
    """``train.py`` for ``accelerate launch`` with FSDP2 (see module docstring)."""
    imports = ["AutoModelForCausalLM"] + (["BitsAndBytesConfig"] if cfg.is_kbit else [])
    lines = [
        "import torch",
        "from accelerate import Accelerator",
        f"from transformers import {', '.join(imports)}",
    ]
    if cfg.uses_lora:
        kbit = ["prepare_model_for_kbit_training"] if cfg.is_kbit and cfg.kbit_upcast else []
        lines.append(f"from peft import {', '.join(['LoraConfig', 'get_peft_model', *kbit])}")
    storage = {"bnb_4bit_quant_storage": torch_dtype_code(cfg.compute_dtype)} if cfg.is_4bit else None
    lines += [
        "",
        f"accelerator = Accelerator(gradient_accumulation_steps={cfg.grad_accum!r})  # FSDP2: the launch config",
        *load_lines(arch, cfg, attn, bnb_extra=storage, load_args=_load_args(offload, gpus)),
        *prepare_lines(cfg),
        *checkpointing_lines(cfg),
    ]
    if cfg.uses_lora:
        lines += [*lora_lines(arch, cfg), "model = get_peft_model(model, lora_config)"]
    lines += [
        "model.train()",
        f"optimizer = torch.optim.{_optimizer(cfg)}([p for p in model.parameters() if p.requires_grad], "
        f"lr={LEARNING_RATE!r})",
        "model, optimizer = accelerator.prepare(model, optimizer)",
        *(QUANT_STATE_LINES if cfg.is_4bit else ()),
        *_train_lines(cfg),
    ]
    return "\n".join(lines) + "\n"


def _optimizer(cfg: TrainConfig) -> str:
    """torch's optimizer class of the configuration (with offload it steps on the CPU: torch's own)."""
    return {"sgd": "SGD", "adafactor": "Adafactor"}.get(cfg.optimizer, "AdamW")
