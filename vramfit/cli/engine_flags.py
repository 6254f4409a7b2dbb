"""``--offload`` and ``--gpus`` of ``estimate`` and ``plan``: run the configuration through FSDP2."""

from __future__ import annotations

import argparse
from functools import partial

from vramfit.estimate.sharding import Offload

OFFLOAD_CHOICES = ("none", "cpu")


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("offload and more GPUs (FSDP2 through accelerate)")
    g.add_argument(
        "--offload", choices=OFFLOAD_CHOICES, default="none",
        help="cpu: keep the sharded parameters, gradients and optimizer state in host memory and stream one "
        "layer at a time to the GPU (FSDP2 CPUOffloadPolicy; slower) [default: none]",
    )  # fmt: skip
    g.add_argument(
        "--gpus", type=int, default=1,
        help="GPUs of one machine to shard the run over (FSDP2, one process per GPU); sizes are per GPU [default: 1]",
    )  # fmt: skip


def engine_args(args: argparse.Namespace) -> tuple[Offload, int]:
    from vramfit.config import TrainConfig
    from vramfit.estimate.engine import check_engine

    offload, gpus = getattr(args, "offload", "none"), getattr(args, "gpus", 1)
    check_engine(TrainConfig(optimizer="adamw_torch"), offload, gpus)  # the flags alone: --offload, --gpus
    return offload, gpus


def uses_engine(offload: str, gpus: int) -> bool:
    return offload != "none" or gpus != 1


def estimate_fn(offload: Offload, gpus: int, expandable_segments: bool = False):
    """The estimate of one GPU's share under the engine and the allocator given."""
    from vramfit.estimate.engine import engine_estimate

    return partial(engine_estimate, offload=offload, gpus=gpus, expandable_segments=expandable_segments)
