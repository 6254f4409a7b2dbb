"""A decoder layer's activations from a trace of the model's own step (models that are not built in).

The trace (:mod:`vramfit.models.trace`) gives what one layer keeps for backward per token (and per s^2
for eager scores) and its peak transients in forward and backward; they fill the same
:class:`LayerActivations` the hand-written formulas of :mod:`vramfit.estimate.activations` fill for the
built-in families, so the phases, checkpointing and the head are combined the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from math import ceil
from types import SimpleNamespace

from vramfit.config import TrainConfig
from vramfit.estimate.activations import LayerActivations
from vramfit.models.spec import ArchSpec


def trace_key(cfg: TrainConfig, attn: str):
    from vramfit.models.trace import TraceKey

    return TraceKey(
        method=cfg.method,
        quant=cfg.resolved_quant,
        load_dtype=cfg.load_dtype,
        compute_dtype=cfg.compute_dtype,
        kbit_upcast=cfg.kbit_upcast,
        targets=tuple(cfg.targets) if cfg.uses_lora else (),
        rank=cfg.rank,
        dropout=cfg.dropout > 0,
        attn=attn,
    )


_SHIPPED_ONLY: ContextVar[bool] = ContextVar("shipped_only", default=False)


@contextmanager
def shipped_only() -> Iterator[None]:
    """Within it, a layer whose trace is not shipped is an :class:`InputError`, as in the base install, instead
    of a fresh trace: a sweep over other registry models (the plan's models that fit) then imports neither
    torch nor transformers, nor bitsandbytes through peft, and answers the same with or without them."""
    token = _SHIPPED_ONLY.set(True)
    try:
        yield
    finally:
        _SHIPPED_ONLY.reset(token)


def _not_shipped(arch: ArchSpec):
    from vramfit.errors import InputError
    from vramfit.models.shipped import shipped_keys

    shipped = sorted({f"{k['method']} {','.join(k['targets']) or '-'} r{k['rank']} {k['attn']}"
                      for k in shipped_keys(arch.hf_config)})  # fmt: skip
    return InputError(
        "--model",
        f"{arch.name}: this configuration's layer activations are not in the shipped data "
        f"(shipped: {'; '.join(shipped) or 'none'}); "
        "other configurations are traced from the model, which needs torch and transformers "
        "(pip install 'vramfit[probe]')",
    )


def _layer_trace(arch: ArchSpec, key):
    """The shipped trace of a registry model under ``key``, else a fresh trace (needs torch)."""
    from vramfit.errors import MissingDependency
    from vramfit.models.shipped import shipped_trace

    config = arch.hf_config
    hit = shipped_trace(config, key)
    if hit is not None:
        return SimpleNamespace(**hit)
    if _SHIPPED_ONLY.get():
        raise _not_shipped(arch)
    try:
        from vramfit.models.trace import trace_layer

        return trace_layer(config, key)
    except (ImportError, MissingDependency):
        raise _not_shipped(arch) from None


def traced_layer_activations(arch: ArchSpec, cfg: TrainConfig, attn: str) -> LayerActivations:
    t = _layer_trace(arch, trace_key(cfg, attn))
    saved = ceil(t.saved_per_token)
    return LayerActivations(
        per_token={"layer (traced)": saved, "attention": 0},
        quadratic_per_s2=ceil(t.saved_per_s2),
        transient_per_token=ceil(t.fwd_transient_per_token),
        backward_per_token=ceil(t.bwd_transient_per_token),
        saved_per_token=saved,
        kept_under_checkpointing=0,
    )
