"""The GPU a measurement was made on, and the estimate put beside it.

A probe emulates a card by capping the allocator of a bigger GPU, but the measuring GPU still allocates its
own cuBLAS workspaces, whose size follows its compute capability
(:func:`vramfit.estimate.allocator.cublas_workspace_bytes`: 64 MiB on Hopper and newer, 16.25 MiB before).
The estimate compared with the measurement counts those (:func:`as_measured`); the verdict on the emulated
card stays the card's own estimate's. Importing this module imports no torch.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vramfit.config import TrainConfig
    from vramfit.estimate.result import Estimate
    from vramfit.gpus import Card
    from vramfit.models.spec import ArchSpec


def measured_card(env: dict) -> Card | None:
    """The card a run was measured on (its cuBLAS workspaces, its context), from the run's environment
    (``gpu`` and ``gpu_memory_bytes`` as the probe records them); None when the GPU is not in the catalog
    or the run had none."""
    from vramfit.gpus import match_device, resolve_card

    gpu = match_device(env["gpu"], env.get("gpu_memory_bytes")) if env.get("gpu") else None
    return resolve_card(gpu=gpu.name) if gpu is not None else None


def as_measured(card: Card | None, compute_capability: tuple[int, int] | None) -> Card | None:
    """``card`` with the measuring GPU's compute capability (``compute_capability``), which sizes cuBLAS's
    workspaces: the estimate beside a measurement counts what that GPU allocates; the cap, the context and
    the verdict's capacity stay the card's. ``card`` itself when either is None."""
    if card is None or compute_capability is None:
        return card
    return replace(card, compute_capability=tuple(compute_capability))


def estimate_beside(
    spec: ArchSpec, cfg: TrainConfig, card: Card | None, env: dict, on_card: Estimate, **options
) -> Estimate:
    """The estimate a single-GPU probe shows beside its measurement made where ``env`` says: ``on_card``
    (``estimate(spec, cfg, card, **options)``, for the emulated ``card``) made again with the measuring
    GPU's compute capability (:func:`measured_card`, :func:`as_measured`), keeping ``on_card``'s verdict,
    which judges the card with its own workspaces. Without a card, the estimate for the measuring GPU itself
    (its context and workspaces). ``on_card`` itself without a known measuring GPU, or when the two share
    their compute capability."""
    from vramfit.estimate import estimate

    if card is None:  # nothing emulated: the estimate for the GPU that measured, where it is known
        measuring = measured_card(env)
        if measuring is None:
            return on_card
        return replace(estimate(spec, cfg, measuring, **options), verdict=on_card.verdict)
    beside = as_measured(card, measuring_capability(env))
    if beside.compute_capability == card.compute_capability:
        return on_card
    return replace(estimate(spec, cfg, beside, **options), verdict=on_card.verdict)


def measuring_capability(env: dict) -> tuple[int, int] | None:
    """The compute capability of the GPU a run was measured on (:func:`measured_card`), or None."""
    measuring = measured_card(env)
    return measuring.compute_capability if measuring is not None else None


def workspace_note(card: Card | None, env: dict) -> str | None:
    """What a probe says where the estimate beside its measurement counts other cuBLAS workspaces than
    the emulated card's own (None where they are the same)."""
    from vramfit.estimate.allocator import cublas_workspace_bytes
    from vramfit.units import format_bytes

    cc = measuring_capability(env)
    if cc is None:
        return None
    if card is None:
        return (
            f"no card emulated: the estimate beside the measurement is for the measuring GPU ({env['gpu']}: its "
            f"CUDA context and {format_bytes(cublas_workspace_bytes(cc))} of cuBLAS workspaces)"
        )
    theirs, own = cublas_workspace_bytes(cc), cublas_workspace_bytes(card.compute_capability)
    if theirs == own:
        return None
    name = card.name or "the emulated card"
    return (
        f"the estimate beside the measurement counts the cuBLAS workspaces of the measuring GPU ({env['gpu']}: "
        f"{format_bytes(theirs)}); {name} allocates {format_bytes(own)}, which the estimate's verdict on it counts"
    )
