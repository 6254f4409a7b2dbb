"""The training stacks vramfit models: which trainer runs the steps and which loss it computes.

One row per trainer and per loss, read by the estimator (adapter dtype, the loss' memory), the probe
(which trainer it builds), the planner (the loss lever) and the config emitters. Each row says which
versions of its library behave as modelled and where that was read.

    trainer  hf   transformers.Trainer, as the reference recipe runs it
             trl  trl.SFTTrainer (the same recipe with SFTTrainer in place of Trainer)
    loss     full   the model's own loss: (batch, seq, vocab) logits in the compute dtype + an fp32 copy
             fused  TRL's tiled LM head: logits only as tiles, never the whole (batch, seq, vocab) tensor
             liger  Liger-kernel's fused linear cross-entropy (chunks of tokens, gradient in forward)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Trainer = Literal["hf", "trl"]
Loss = Literal["full", "fused", "liger"]


@dataclass(frozen=True)
class TrainerSpec:
    name: str
    default_loss: str
    losses: tuple[str, ...]  # the losses this trainer can run, the first its default
    adapters_bf16_when_quantized: bool  # trainable weights of a 4/8-bit model cast to bf16 by the trainer
    default_gradient_checkpointing: bool  # its config's default (the recipe sets it explicitly either way)
    default_max_length: int | None  # its config's default truncation length (None: none)
    package: str
    versions: str  # the versions that behave as this row says
    source: str


TRAINERS: dict[str, TrainerSpec] = {
    "hf": TrainerSpec(
        name="hf", default_loss="full", losses=("full", "liger"),
        adapters_bf16_when_quantized=False, default_gradient_checkpointing=False, default_max_length=None,
        package="transformers", versions=">= 4.46 (the loss' fp32 upcast inside the loss: see estimate/profile.py)",
        source="transformers trainer.py (Trainer.compute_loss -> model(**inputs).loss), loss/loss_utils.py",
    ),
    "trl": TrainerSpec(
        name="trl", default_loss="fused", losses=("fused",),
        # NOTE: SFTTrainer.__init__: `if _is_quantized_model: ... param.data = param.data.to(torch.bfloat16)`
        # for every trainable parameter (peft issue 2889: autocast_adapter_dtype=False is not supported on
        # quantized models); it does not call prepare_model_for_kbit_training.
        adapters_bf16_when_quantized=True, default_gradient_checkpointing=True, default_max_length=1024,
        package="trl",
        versions=">= 1.15 (fused LM head in SFTTrainer.compute_loss; read in 1.16.0)",
        source="trl 1.16.0 trainer/sft_trainer.py (SFTTrainer.__init__, compute_loss), trainer/base_config.py "
        "(gradient_checkpointing=True), trainer/sft_config.py (max_length=1024, loss_type='nll')",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class LossSpec:
    name: str
    materializes_logits: bool  # the whole (batch, seq, vocab) logits exist at once
    package: str | None  # the library that implements it beyond the trainer (None: the trainer itself)
    versions: str
    source: str
    what: str  # one line for help texts and knob prices
    measured: str | None = None  # where GPU runs of this loss are committed (None: modelled from source only)


# The GPU runs of TRL's SFTTrainer and Liger (held to the estimate by tests/test_accuracy_trainer_stacks.py)
TRAINER_STACK_RUNS = (
    "benchmarks/results/probe/trl/ (H200; trl 1.16.0, liger-kernel 0.8.5, transformers 5.17.0, torch 2.11.0)"
)

LOSSES: dict[str, LossSpec] = {
    "full": LossSpec(
        "full", True, None, "transformers >= 4.46",
        "transformers loss/loss_utils.py ForCausalLMLoss (logits.float(), cross_entropy)",
        "the model's own loss over the full (batch, seq, vocab) logits",
    ),
    "fused": LossSpec(
        "fused", False, "trl", "trl >= 1.15 (read in 1.16.0)",
        "trl 1.16.0 trainer/utils.py add_fused_lm_head, kernels/chunked_logprob.py ChunkedLogProbFunction "
        "(tiles of 4096 tokens x 32768 vocabulary entries in the compute dtype; fp32 hidden-state gradient)",
        "TRL's tiled LM head: only (4096 x 32768) logit tiles, never the whole logits",
        measured=TRAINER_STACK_RUNS,
    ),
    "liger": LossSpec(
        "liger", False, "liger_kernel", "liger-kernel 0.8.x (read in 0.8.5)",
        "liger_kernel 0.8.5 ops/fused_linear_cross_entropy.py fused_linear_cross_entropy_forward (token chunks "
        "of next_pow2(BT / ceil(V / H)); the input gradient computed in forward and kept for backward)",
        "Liger-kernel's fused linear cross-entropy: token chunks, the gradient computed in forward",
        measured=TRAINER_STACK_RUNS,
    ),
}  # fmt: skip

TRAINER_NAMES = tuple(TRAINERS)
LOSS_NAMES = tuple(LOSSES)


def loss_warnings(trainer: str, loss: str | None) -> list[str]:
    """What an estimate with this loss must say: a loss modelled from source only, without GPU runs."""
    spec = LOSSES[resolved_loss(trainer, loss)]
    if spec.package is None or spec.measured is not None:
        return []
    return [
        f"--loss {spec.name} ({spec.what}) is modelled from the source of {spec.versions}, not yet checked "
        "against GPU runs: `vramfit probe` measures it"
    ]


def resolved_loss(trainer: str, loss: str | None) -> str:
    """The loss a run computes: the one given, else its trainer's default."""
    return loss if loss is not None else TRAINERS[trainer].default_loss
