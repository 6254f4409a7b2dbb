"""An :class:`ArchSpec` for any model transformers can build, read from the model (its :class:`Inventory`).

The scalar fields (hidden size, heads, vocabulary) come from the config as transformers completes it;
parameter counts, quantized tensors, LoRA targets and expert storage come from the inventory, and the
activations from a trace of the model's own step (:mod:`vramfit.models.trace`). No per-family code.
"""

from __future__ import annotations

from vramfit.catalog import ATTNS
from vramfit.errors import InputError
from vramfit.models.inventory import PROBE_HINT, Inventory, inventory_from_config
from vramfit.models.spec import ArchSpec

_VISION = ("vision_config", "vision_tower", "image_token_index", "image_token_id")


def _first_int(cfg: dict, *keys: str) -> int | None:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def spec_from_model(config: dict, name: str, source: str = "", family: str = "") -> ArchSpec:
    """Build ``config`` on the meta device and describe it as an ArchSpec carrying its inventory."""
    where = source or name
    if any(k in config for k in _VISION) and "text_config" in config:
        raise InputError(
            where,
            f"{config.get('model_type')!r} has a vision tower, which vramfit does not estimate; use the "
            f"text model's config (its text_config), or {PROBE_HINT}",
        )
    inv = inventory_from_config(config, where)
    return _spec(inv, name, source, family, config)


def spec_from_inventory(
    inv: Inventory, config: dict, name: str, source: str = "", family: str = ""
) -> ArchSpec:
    """An ArchSpec from an inventory read before (the shipped data of the registry models)."""
    return _spec(inv, name, source, family, config)


def _spec(inv: Inventory, name: str, source: str, family: str, config: dict) -> ArchSpec:
    c = inv.config
    hidden = _first_int(c, "hidden_size", "n_embd", "d_model")
    heads = _first_int(c, "num_attention_heads", "n_head")
    vocab = _first_int(c, "vocab_size")
    if not (hidden and heads and vocab and inv.num_layers):
        raise InputError(
            source or name, f"{inv.model_type!r}: no hidden_size / heads / vocabulary; {PROBE_HINT}"
        )
    linears = inv.layer_linears(0)
    widest = max((max(m.in_features, m.out_features) for m in linears), default=hidden)
    attn = inv.attn_implementation if inv.attn_implementation in ATTNS else "eager"
    window = c.get("sliding_window") if isinstance(c.get("sliding_window"), int) else None
    softcap = c.get("final_logit_softcapping")
    return ArchSpec(
        name=name,
        model_type=inv.model_type,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=_first_int(c, "intermediate_size", "ffn_dim", "n_inner") or widest,
        num_layers=inv.num_layers,
        num_heads=heads,
        num_kv_heads=_first_int(c, "num_key_value_heads") or heads,
        head_dim=_first_int(c, "head_dim") or hidden // heads,
        tie_word_embeddings=inv.tied,
        final_logit_softcapping=float(softcap) if isinstance(softcap, (int, float)) else None,
        attn_logit_softcapping=c.get("attn_logit_softcapping"),
        sliding_window=window,
        torch_dtype=str(c.get("dtype") or c.get("torch_dtype") or "bfloat16").replace("torch.", ""),
        default_attn=attn,
        max_position_embeddings=_first_int(c, "max_position_embeddings", "n_positions") or 4096,
        hidden_act=str(c.get("hidden_act") or c.get("hidden_activation") or "silu"),
        family=family or inv.model_type,
        source=source,
        hf_config=dict(config),  # the config.json as given (the trace and the shipped data read it)
        inventory=inv,
    )
