"""LoRA adapters: which modules they wrap, how many parameters, in which dtype.

peft adds ``lora_A`` (r x in_features) and ``lora_B`` (out_features x r) to every targeted module of every
decoder layer (Hu et al. 2021, eq. 3). With ``autocast_adapter_dtype=True`` (peft's default) adapters of
a bf16/fp16 base are created in fp32 (peft ``tuners/tuners_utils.py::cast_adapter_dtype``).
"""

from __future__ import annotations

from functools import lru_cache

from vramfit.config import DTYPE_BYTES, TrainConfig
from vramfit.errors import InputError
from vramfit.estimate.alloc import block
from vramfit.models.spec import ArchSpec, LinearModule


@lru_cache(maxsize=1024)
def resolve_targets(arch: ArchSpec, targets: tuple[str, ...]) -> tuple[LinearModule, ...]:
    """The layer linears that ``--targets`` selects, in forward order.

    Accepts module names of the model, ``all-linear`` (peft: every linear but the output layer),
    ``attention`` and ``mlp`` (vramfit groups).
    """
    chosen: set[str] = set()
    for t in targets:
        if t == "all-linear":
            chosen.update(m.name for m in arch.layer_linears)
        elif t in ("attention", "mlp"):
            chosen.update(m.name for m in arch.layer_linears if m.kind == t)
        elif t in arch.linear_by_name:
            chosen.add(t)
        else:
            from vramfit.errors import suggest

            raise InputError(
                "--targets",
                f"{arch.name} has no module {t!r}{suggest(t, arch.lora_target_names)}; "
                f"accepted: {', '.join(arch.lora_target_names)}",
            )
    return tuple(m for m in arch.layer_linears if m.name in chosen)


def adapter_dtype(cfg: TrainConfig) -> str:
    """fp32 for a 16-bit base (peft autocast_adapter_dtype), else the base's dtype; bf16 on a k-bit base
    under a trainer that casts them (TRL's SFTTrainer: vramfit.trainers)."""
    from vramfit.trainers import TRAINERS

    if cfg.is_kbit and TRAINERS[cfg.trainer].adapters_bf16_when_quantized:
        return "bf16"
    return "fp32" if cfg.load_dtype in ("bf16", "fp16") else cfg.load_dtype


def adapter_tensors(arch: ArchSpec, cfg: TrainConfig) -> list[tuple[int, int, int]]:
    """LoRA tensors as (rows, cols, count): A (r x in) and B (out x r) of each targeted module, in every layer."""
    if not cfg.uses_lora:
        return []
    r, L = cfg.rank, arch.num_layers
    out: list[tuple[int, int, int]] = []
    for m in resolve_targets(arch, cfg.targets):
        out += [(r, m.in_features, L), (m.out_features, r, L)]
    return out


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
    c = DTYPE_BYTES[cfg.compute_dtype]
    a = DTYPE_BYTES[adapter_dtype(cfg)]
    if c >= a:  # no autocast (fp32 compute), or adapters already in the compute dtype
        return 0
    return sum(block(r * cols * c) * n for r, cols, n in adapter_tensors(arch, cfg))


def trainable_tensors(arch: ArchSpec, cfg: TrainConfig) -> list[tuple[int, int, int]]:
    """Every trainable parameter tensor as (rows, cols, count); vectors have cols == 1.

    LoRA: the adapter matrices. Full fine-tuning: every parameter (a tied lm_head counted once).
    """
    if cfg.uses_lora:
        return adapter_tensors(arch, cfg)
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


def trainable_dtype(cfg: TrainConfig) -> str:
    return adapter_dtype(cfg) if cfg.uses_lora else cfg.load_dtype


def adapter_bytes(arch: ArchSpec, cfg: TrainConfig) -> int:
    b = DTYPE_BYTES[adapter_dtype(cfg)]
    return sum(block(r * c * b) * n for r, c, n in adapter_tensors(arch, cfg))
