"""Build the model of a probe: random weights, quantized on the way in, exactly as from_pretrained loads.

Memory does not depend on weight values, so the probe needs no checkpoint. It still runs
``from_pretrained(None, config=..., state_dict=..., quantization_config=BitsAndBytesConfig(...))``, the
same loader and the same bitsandbytes quantizer as a real load; only the state dict is lazy: each entry
is a :class:`RandomTensor` that makes its tensor (normal, std 0.02) on the target device when the loader
reads it (``tensor[...]`` in transformers ``core_model_loading._materialize_copy``). With on-the-fly
quantization transformers loads one tensor at a time (no thread pool), so the load peak is the quantized
model plus one full-precision weight, the same as loading a safetensors checkpoint: a 7B model loads on
an 8 GB card and no 14 GB file is written.

``--weights PATH`` loads a real local checkpoint with the same ``from_pretrained`` arguments instead.
"""

from __future__ import annotations

from vramfit.catalog import DTYPES
from vramfit.catalog.quants import bnb_kwargs
from vramfit.config import TrainConfig
from vramfit.models.spec import ArchSpec


def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name].torch_name)


class RandomTensor:
    """A lazy state-dict entry: behaves like a safetensors slice whose data is random."""

    def __init__(self, shape: tuple[int, ...], dtype, device) -> None:
        self.shape, self.dtype, self.device = tuple(shape), dtype, device

    def get_shape(self) -> list[int]:
        return list(self.shape)

    def get_dtype(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def __getitem__(self, index):
        import torch

        t = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        if t.is_floating_point():
            # NOTE: std 0.02 is the initializer_range of Llama-family configs; values do not move memory,
            # but finite, small weights keep the loss finite so every kernel path runs as in real training.
            t.normal_(0.0, 0.02)
        else:
            t.zero_()
        return t if index is Ellipsis else t[index]


def hf_config(spec: ArchSpec, cfg: TrainConfig):
    """The transformers config of ``spec`` as the recipe uses it (no KV cache in training)."""
    from transformers import AutoConfig

    if not spec.hf_config or "model_type" not in spec.hf_config:
        from vramfit.errors import InputError

        raise InputError(
            "--model",
            f"{spec.name}: no config.json keys to build the model from (ArchSpec.hf_config is empty)",
        )
    keys = {k: v for k, v in spec.hf_config.items() if k not in ("quantization_config", "auto_map")}
    config = AutoConfig.for_model(**keys)
    config.use_cache = False  # NOTE: the recipe sets model.config.use_cache = False before training
    return config


def causal_lm_class(config):
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    from vramfit.errors import InputError

    try:
        return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        raise InputError(
            "--model", f"transformers has no causal-LM class for model_type {config.model_type!r}"
        ) from None


def quantization_config(cfg: TrainConfig):
    """BitsAndBytesConfig of the recipe (docs/ARCHITECTURE.md; the quantization's row), or None for an unquantized base."""
    kwargs = bnb_kwargs(cfg.resolved_quant, torch_dtype(cfg.compute_dtype), cfg.double_quant)
    if not kwargs:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(**kwargs)


def random_state_dict(model_class, config, dtype, device) -> dict[str, RandomTensor]:
    """One lazy random tensor per checkpoint entry of ``model_class(config)``, shapes from a meta model.

    ``named_parameters`` lists tied weights once (the embedding), as a checkpoint stores them;
    non-persistent buffers (rotary ``inv_freq``) are computed by the model, not loaded.
    """
    import torch

    with torch.device("meta"):
        meta = model_class(config)
    persistent = {f"{m}.{b}" if m else b for m, mod in meta.named_modules() for b in mod._buffers
                  if b not in mod._non_persistent_buffers_set}  # fmt: skip
    state: dict[str, RandomTensor] = {}
    for name, p in meta.named_parameters():
        state[name] = RandomTensor(p.shape, dtype if p.is_floating_point() else p.dtype, device)
    for name, b in meta.named_buffers():
        if name in persistent:
            state[name] = RandomTensor(b.shape, b.dtype, device)
    return state


def build_model(spec: ArchSpec, cfg: TrainConfig, device: str = "cuda", weights: str | None = None):
    """The base model of the run on ``device``: quantized per ``cfg`` and in ``cfg.load_dtype``.

    ``weights``: a local checkpoint folder to load instead of random weights.
    """
    config = hf_config(spec, cfg)
    cls = causal_lm_class(config)
    dtype = torch_dtype(cfg.load_dtype)
    kwargs = dict(
        dtype=dtype,
        quantization_config=quantization_config(cfg),
        device_map={"": device},
        attn_implementation=cfg.attn or spec.default_attn,
    )
    if weights is not None:
        model = cls.from_pretrained(weights, **kwargs)
    else:
        state = random_state_dict(cls, config, dtype, device)
        model = cls.from_pretrained(None, config=config, state_dict=state, **kwargs)
    model.config.use_cache = False
    return model
