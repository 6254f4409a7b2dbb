"""LoRA adapters: which modules they wrap, how many parameters, in which dtype.

peft adds ``lora_A`` (r x in_features) and ``lora_B`` (out_features x r) to every targeted module of every
decoder layer (Hu et al. 2021, eq. 3). With ``autocast_adapter_dtype=True`` (peft's default) adapters of
a bf16/fp16 base are created in fp32 (``catalog.dtypes.adapter_dtype``).
"""

from __future__ import annotations

from functools import lru_cache

from vramfit.catalog import DTYPES
from vramfit.catalog.dtypes import adapter_dtype
from vramfit.config import TrainConfig
from vramfit.errors import InputError, suggest
from vramfit.estimate.alloc import block
from vramfit.models.spec import ArchSpec, LinearModule


@lru_cache(maxsize=1024)
def resolve_targets(arch: ArchSpec, targets: tuple[str, ...]) -> tuple[LinearModule, ...]:
    """The layer linears that ``--targets`` selects, in forward order.

    Accepts module names of the model, ``all-linear`` (peft: every linear but the output layer),
    ``attention`` and ``mlp`` (vramfit groups).
    """
    if arch.inventory is not None:  # peft's own matching on the model's modules
        from vramfit.models.inventory import resolve_lora_targets

        found = resolve_lora_targets(arch.inventory, targets)
        by_leaf = {m.leaf: m for m in found if m.layer == 0}
        return tuple(m for m in arch.layer_linears if m.name in by_leaf)
    chosen: set[str] = set()
    for t in targets:
        if t == "all-linear":
            chosen.update(m.name for m in arch.layer_linears)
        elif t in ("attention", "mlp"):
            chosen.update(m.name for m in arch.layer_linears if m.kind == t)
        elif t in arch.linear_by_name:
            chosen.add(t)
        else:
            raise InputError(
                "--targets",
                f"{arch.name} has no module {t!r}{suggest(t, arch.lora_target_names)}; "
                f"accepted: {', '.join(arch.lora_target_names)}",
            )
    return tuple(m for m in arch.layer_linears if m.name in chosen)


def lora_tensors(arch: ArchSpec, targets: tuple[str, ...], rank: int) -> list[tuple[int, int, int]]:
    """LoRA tensors as (rows, cols, count): A (r x in) and B (out x r) of each targeted module, in every layer."""
    if arch.inventory is not None:  # the modules peft's matching finds in the model itself
        from vramfit.estimate import from_model
        from vramfit.models.inventory import resolve_lora_targets

        return from_model.adapter_tensors(resolve_lora_targets(arch.inventory, targets), rank)
    out: list[tuple[int, int, int]] = []
    for m in resolve_targets(arch, targets):
        out += [(rank, m.in_features, arch.num_layers), (m.out_features, rank, arch.num_layers)]
    return out


def adapter_tensors(arch: ArchSpec, cfg: TrainConfig) -> list[tuple[int, int, int]]:
    """The LoRA tensors of ``cfg`` ([] without LoRA)."""
    return lora_tensors(arch, cfg.targets, cfg.rank) if cfg.uses_lora else []


def tensors_bytes(tensors: list[tuple[int, int, int]], dtype_bytes: int) -> int:
    """Allocated bytes of (rows, cols, count) tensors, each its own allocation."""
    return sum(block(r * c * dtype_bytes) * n for r, c, n in tensors)


def adapter_autocast_copy_bytes(arch: ArchSpec, cfg: TrainConfig) -> int:
    """Compute-dtype copies of the LoRA weights that autocast keeps through the forward pass.

    Under autocast a matmul casts an fp32 weight to the compute dtype, and the cast of a leaf tensor that
    requires grad is cached until the outermost autocast region exits (``cached_cast`` in
    ``aten/src/ATen/autocast_mode.cpp``): every lora_A / lora_B gets a copy at its first use, and all of
    them are alive from the last decoder layer to the loss. Measured (H200, llama-2-7b, r=128 on the
    attention projections, batch 4): 256 MiB of 1 MiB copies from peft's lora forward alive at the peak,
    half of the 512 MiB of fp32 adapters.
    """
    if not cfg.uses_lora:
        return 0
    c = DTYPES[cfg.compute_dtype].bytes
    if c >= DTYPES[adapter_dtype(cfg)].bytes:  # no autocast (fp32 compute), or adapters in the compute dtype
        return 0
    return tensors_bytes(adapter_tensors(arch, cfg), c)


def full_tensors(arch: ArchSpec) -> list[tuple[int, int, int]]:
    """Every parameter tensor of the model as (rows, cols, count); vectors have cols == 1 (a tied
    lm_head counted once)."""
    if arch.inventory is not None:
        from vramfit.estimate import from_model

        return from_model.full_trainable_tensors(arch.inventory)
    L, h = arch.num_layers, arch.hidden_size
    out = [(arch.vocab_size, h, 2 if arch.lm_head_params else 1)]
    for m in arch.layer_linears:
        out.append((m.out_features, m.in_features, L))
        if m.bias:
            out.append((m.out_features, 1, L))
    out.append((h, 1, arch.norms_per_layer * L + 1))
    if arch.qk_norm:
        out.append((arch.head_dim, 1, 2 * L))
    return out


def trainable_tensors(arch: ArchSpec, cfg: TrainConfig) -> list[tuple[int, int, int]]:
    """Every trainable parameter tensor: the adapter matrices (LoRA), or every parameter (full)."""
    return adapter_tensors(arch, cfg) if cfg.uses_lora else full_tensors(arch)


def adapter_bytes(arch: ArchSpec, cfg: TrainConfig) -> int:
    return tensors_bytes(adapter_tensors(arch, cfg), DTYPES[adapter_dtype(cfg)].bytes)
