"""What a model holds, read from the model itself: every parameter, buffer and tied weight.

For a ``config.json`` whose ``model_type`` the installed transformers knows, the model is built with
``AutoModelForCausalLM.from_config`` on torch's meta device (shapes, no storage, no download) and read:

* every parameter (tied weights once, with every name they go by), its module's class, its decoder layer;
* every buffer (rotary ``inv_freq`` and the like), persistent or not: they are moved to the GPU too;
* what bitsandbytes quantizes, by transformers' own rules: the modules its quantizer does not skip
  (``HfQuantizer.get_modules_to_not_convert``: ``get_keys_to_not_convert`` = the output embedding and
  what is tied to it, plus ``_keep_in_fp32_modules``), matched by ``should_convert_module``, and of those
  only ``type(module) is nn.Linear`` or ``Conv1D`` (``integrations/bitsandbytes.py::replace_with_bnb_linear``).
  Fused 3-D expert parameters of MoE models are not ``nn.Linear``: they stay in the load dtype;
* what peft's ``all-linear`` resolves to (``tuners_utils._maybe_include_all_linear_layers``), and peft's
  matching of named targets (``check_target_module_exists``).

The result is plain data (:class:`Inventory`): the estimator reads it without torch. Building it needs
torch and transformers (``pip install 'vramfit[probe]'``); the built-in models never do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from math import prod

from vramfit.errors import InputError, MissingDependency

PROBE_HINT = "`vramfit probe` measures any model transformers builds"


@dataclass(frozen=True)
class ParamInfo:
    """One parameter tensor (a tied tensor once, under all its names)."""

    name: str
    shape: tuple[int, ...]
    module_type: str  # class of the module that owns it: "Linear", "GraniteMoeExperts"
    layer: int | None  # decoder layer index, None outside the layers
    quantized: bool  # bitsandbytes replaces its module and quantizes this weight
    keep_fp32: bool  # in the model's _keep_in_fp32_modules: loaded in fp32 whatever the load dtype
    tied_names: tuple[str, ...] = ()

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def is_expert(self) -> bool:
        """A fused expert tensor (experts x rows x cols): a parameter of 3 or more dimensions."""
        return len(self.shape) >= 3


@dataclass(frozen=True)
class LinearInfo:
    """One ``nn.Linear`` (or a subclass, or ``Conv1D``) module."""

    name: str  # full module path: "model.layers.0.self_attn.q_proj"
    in_features: int
    out_features: int
    bias: bool
    layer: int | None
    kind: str  # "attention", "mlp" (inside a decoder layer, not attention) or "other"
    quantized: bool

    @property
    def leaf(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def weight_numel(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class BufferInfo:
    name: str
    numel: int
    itemsize: int


@dataclass(frozen=True)
class Inventory:
    """A model as transformers builds it, as far as memory is concerned."""

    model_type: str
    architecture: str  # the class from_config built: "GraniteMoeForCausalLM"
    transformers_version: str
    num_layers: int
    attn_implementation: str  # what transformers picks without attn_implementation
    params: tuple[ParamInfo, ...]
    linears: tuple[LinearInfo, ...]
    buffers: tuple[BufferInfo, ...]
    all_linear: tuple[str, ...]  # module paths peft's "all-linear" targets
    output_embedding: str  # module path of lm_head
    config: dict = field(compare=False, hash=False)  # the config as transformers completed it

    @property
    def total_params(self) -> int:
        return sum(p.numel for p in self.params)

    @property
    def tied(self) -> bool:
        return any(len(p.tied_names) > 1 for p in self.params)

    @property
    def quantized_params(self) -> int:
        return sum(p.numel for p in self.params if p.quantized)

    @property
    def expert_params(self) -> int:
        return sum(p.numel for p in self.params if p.is_expert)

    def layer_linears(self, layer: int = 0) -> tuple[LinearInfo, ...]:
        return tuple(m for m in self.linears if m.layer == layer)


def _torch():
    try:
        import torch
        import transformers
    except ImportError:
        raise MissingDependency(
            "models outside the built-in families are read from the model itself, which needs torch and "
            "transformers: pip install 'vramfit[probe]'"
        ) from None
    return torch, transformers


_LAYER = re.compile(r"\.(?:layers|h|blocks|layer|decoder_layers)\.(\d+)\.")


def _layer_of(name: str) -> int | None:
    m = _LAYER.search("." + name + ".")
    return int(m.group(1)) if m else None


def hf_config_object(config: dict, where: str):
    """transformers' config object for a config.json dict (the class its model_type names)."""
    _, transformers = _torch()
    from transformers import AutoConfig

    model_type = config.get("model_type")
    if model_type is None:
        raise InputError(where, "has no model_type")
    if config.get("auto_map") and model_type not in _known_model_types():
        raise InputError(
            where,
            f"model_type {model_type!r} is remote code (auto_map), which vramfit does not run; {PROBE_HINT}",
        )
    if model_type not in _known_model_types():
        raise InputError(
            where,
            f"model_type {model_type!r} is unknown to the installed transformers {transformers.__version__}; "
            f"upgrade transformers, or {PROBE_HINT}",
        )
    kwargs = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "auto_map")}
    try:
        return AutoConfig.for_model(model_type, **kwargs)
    except Exception as e:  # transformers validates its config fields
        raise InputError(where, f"transformers rejects this {model_type} config: {e}") from None


@lru_cache(maxsize=1)
def _known_model_types() -> frozenset[str]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return frozenset(CONFIG_MAPPING_NAMES)


def causal_lm_model_types() -> tuple[str, ...]:
    """Every model_type the installed transformers has a causal-LM class for."""
    _torch()
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return tuple(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def build_meta_model(
    config: dict, where: str, dtype: str = "bfloat16", device: str | None = "meta", attn: str | None = None
):
    """``AutoModelForCausalLM.from_config`` on the meta device (no storage; ``device=None``: the current
    device or tensor mode). Errors name ``where``."""
    torch, _ = _torch()
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    hf = hf_config_object(config, where)
    if hf.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and getattr(hf, "is_encoder_decoder", False):
        raise InputError(
            where,
            f"model_type {hf.model_type!r} is an encoder-decoder (its causal-LM class is the decoder alone, "
            f"not what is fine-tuned); vramfit estimates decoder-only models; {PROBE_HINT}",
        )
    if hf.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        why = (
            "an encoder-decoder"
            if getattr(hf, "is_encoder_decoder", False)
            else "not a causal language model"
        )
        raise InputError(
            where,
            f"model_type {hf.model_type!r} is {why} (transformers has no causal-LM class for it); {PROBE_HINT}",
        )
    kwargs = {"attn_implementation": attn} if attn else {}
    try:
        if device is None:
            return AutoModelForCausalLM.from_config(hf, dtype=getattr(torch, dtype), **kwargs)
        with torch.device(device):
            return AutoModelForCausalLM.from_config(hf, dtype=getattr(torch, dtype), **kwargs)
    except Exception as e:
        raise InputError(
            where,
            f"transformers cannot build {hf.model_type!r} from this config ({type(e).__name__}: {e}); {PROBE_HINT}",
        ) from None


def _modules_not_converted(model) -> list[str]:
    """transformers' skip list for bitsandbytes: HfQuantizer.get_modules_to_not_convert (with no
    llm_int8_skip_modules given, the default skips: lm_head and what is tied to it) + _keep_in_fp32_modules."""
    from transformers.quantizers.base import HfQuantizer

    keep = getattr(model, "_keep_in_fp32_modules", None)
    return list(HfQuantizer.get_modules_to_not_convert(model, None, list(keep) if keep else None))


def _kind(model, name: str) -> str:
    if _layer_of(name) is None:
        return "other"
    parts = name.split(".")
    for i in range(1, len(parts)):
        if "Attention" in type(model.get_submodule(".".join(parts[:i]))).__name__:
            return "attention"
    return "mlp"


def _linears(model, skip: list[str]) -> tuple[LinearInfo, ...]:
    from torch import nn
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.quantizers_utils import should_convert_module

    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, Conv1D)):
            continue
        if isinstance(mod, Conv1D):
            fin, fout = mod.weight.shape
        else:
            fin, fout = mod.in_features, mod.out_features
        # a subclass of nn.Linear (FalconLinear) is a LoRA target, but bitsandbytes replaces only
        # ``isinstance(module, Conv1D) or type(module) is nn.Linear`` (replace_with_bnb_linear)
        q = (type(mod) is nn.Linear or isinstance(mod, Conv1D)) and should_convert_module(name, skip)
        out.append(LinearInfo(name, fin, fout, mod.bias is not None, _layer_of(name), _kind(model, name), q))
    return tuple(out)


def _all_linear(model) -> tuple[str, ...]:
    from peft import LoraConfig
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

    cfg = _maybe_include_all_linear_layers(LoraConfig(target_modules="all-linear"), model)
    return tuple(sorted(cfg.target_modules))


def read_inventory(model, config_obj) -> Inventory:
    """The inventory of a built model (meta device or not)."""
    import transformers

    skip = _modules_not_converted(model)
    linears = _linears(model, skip)
    quantized_modules = {m.name for m in linears if m.quantized}
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    by_id: dict[int, list[str]] = {}
    first: dict[int, object] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
        first.setdefault(id(p), p)
    params = []
    for pid, names in by_id.items():
        p, name = first[pid], names[0]
        module = name.rsplit(".", 1)[0]
        params.append(
            ParamInfo(
                name=name,
                shape=tuple(p.shape),
                module_type=type(model.get_submodule(module)).__name__,
                layer=_layer_of(name),
                quantized=module in quantized_modules and name.endswith(".weight"),
                keep_fp32=any(k in name.split(".") for k in keep),
                tied_names=tuple(names),
            )
        )
    buffers = tuple(BufferInfo(n, b.numel(), b.element_size()) for n, b in model.named_buffers())
    out_emb = model.get_output_embeddings()
    head = next((n for n, m in model.named_modules() if m is out_emb), "") if out_emb is not None else ""
    return Inventory(
        model_type=config_obj.model_type,
        architecture=type(model).__name__,
        transformers_version=transformers.__version__,
        num_layers=int(getattr(config_obj, "num_hidden_layers", 0) or 0),
        attn_implementation=str(model.config._attn_implementation),
        params=tuple(params),
        linears=linears,
        buffers=buffers,
        all_linear=_all_linear(model),
        output_embedding=head,
        config=config_dict(config_obj),
    )


# The standard config names an ArchSpec is read from (vramfit/models/derived.py).
STANDARD_NAMES = ("hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers",
                  "vocab_size", "intermediate_size", "head_dim", "max_position_embeddings")  # fmt: skip


def config_dict(config_obj) -> dict:
    """The config as transformers completed it (``to_dict``), plus those of :data:`STANDARD_NAMES` its class
    aliases (``attribute_map``: MPT's ``hidden_size`` is its ``d_model``, XGLM's ``num_attention_heads`` its
    ``attention_heads``), so that what reads it finds the standard names."""
    d = config_obj.to_dict()
    for std in STANDARD_NAMES:
        if std in type(config_obj).attribute_map and std not in d:
            v = getattr(config_obj, std, None)
            if v is not None:
                d[std] = v
    return d


@lru_cache(maxsize=32)
def _inventory_cached(config_json: str, where: str) -> Inventory:
    config = json.loads(config_json)
    model = build_meta_model(config, where)
    return read_inventory(model, model.config)


def inventory_from_config(config: dict, where: str) -> Inventory:
    """Build ``config`` on the meta device and read its :class:`Inventory` (cached per config)."""
    return _inventory_cached(json.dumps(config, sort_keys=True, default=str), where)


def resolve_lora_targets(
    inv: Inventory, targets: tuple[str, ...], flag: str = "--targets"
) -> tuple[LinearInfo, ...]:
    """The linear modules LoRA wraps for ``targets``, by peft's own matching.

    ``all-linear`` is peft's resolution read from the model; ``attention`` / ``mlp`` are vramfit's groups
    (the linears inside / outside the attention modules of the decoder layers); any other name is matched
    as peft matches ``target_modules`` (a module whose path ends with ``.name``, or a regex).
    """
    chosen: set[str] = set()
    names = [t for t in targets if t not in ("all-linear", "attention", "mlp")]
    if "all-linear" in targets:
        chosen.update(inv.all_linear)
    for group in ("attention", "mlp"):
        if group in targets:
            chosen.update(m.name for m in inv.linears if m.kind == group)
    if names:
        for t in names:
            hits = [m.name for m in inv.linears if _matches([t], m.name)]
            if not hits:
                accepted = sorted({m.leaf for m in inv.linears if m.layer is not None})
                non_linear = [p for p in inv.params if p.is_expert and p.name.rsplit(".", 1)[-1] == t]
                why = (
                    f"; {t!r} names fused expert parameters, which LoRA's target_modules cannot wrap"
                    if non_linear
                    else ""
                )
                raise InputError(
                    flag,
                    f"no linear module matches {t!r}{why}; accepted: {', '.join(accepted)}, all-linear, attention, mlp",
                )
        chosen.update(m.name for m in inv.linears if _matches(names, m.name))
    return tuple(m for m in inv.linears if m.name in chosen)


def _matches(targets: list[str], module: str) -> bool:
    """peft's ``check_target_module_exists`` for a list of ``target_modules`` (peft 0.21, with no
    ``exclude_modules``, ``modules_to_save`` or ``layers_to_transform``, as vramfit's LoraConfig has none): the
    module's path is one of the names or ends with ``.name``. Written out rather than imported: importing peft
    imports transformers, torch and bitsandbytes, which ``plan`` and ``estimate`` of a shipped model never need
    (``tests/test_from_model.py`` holds it to peft's own function)."""
    return any(module == t or module.endswith("." + t) for t in targets)
