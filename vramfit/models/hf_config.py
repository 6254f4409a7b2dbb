"""Hugging Face ``config.json`` -> :class:`ArchSpec`, and where such a file comes from.

One mapping per supported ``model_type``; each says which ``nn.Linear`` modules carry a bias, which
are fused, how many norms a layer has. Keys a ``config.json`` may leave out take the default of
transformers' config class for that type (``models/<type>/configuration_<type>.py``), because that
is what transformers builds: e.g. Qwen3 without ``head_dim`` gets 128, not hidden/heads, and Gemma
ties its embeddings unless told otherwise. The meta-device tests hold this file to transformers.

Nothing here imports torch or transformers; huggingface_hub is imported only to read a hub config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vramfit.catalog import DEFAULT_ATTN, DTYPES
from vramfit.errors import InputError
from vramfit.inputs import ARCH_RANGES
from vramfit.models.spec import ArchSpec
from vramfit.userfiles import read_user_json

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2")

# Defaults of transformers' config classes (transformers 5.x, configuration_<type>.py) for the keys
# that change shapes. None for num_key_value_heads / head_dim means "derived": heads and hidden/heads.
# NOTE: qwen2/qwen3 default to 32 KV heads and mistral to 8 when the key is absent (not to the
# number of attention heads); an explicit null means "same as num_attention_heads" everywhere.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
              "max_position_embeddings": 2048, "sliding_window": None},
    "mistral": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": False,
                "max_position_embeddings": 4096 * 32, "sliding_window": 4096},
    "qwen2": {"num_key_value_heads": 32, "head_dim": None, "tie_word_embeddings": False,
              "max_position_embeddings": 32768, "sliding_window": 4096},
    "qwen3": {"num_key_value_heads": 32, "head_dim": 128, "tie_word_embeddings": False,
              "max_position_embeddings": 32768, "sliding_window": 4096},
    "phi3": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
             "max_position_embeddings": 4096, "sliding_window": None},
    "gemma": {"num_key_value_heads": 16, "head_dim": 256, "tie_word_embeddings": True,
              "max_position_embeddings": 8192, "sliding_window": None},
    "gemma2": {"num_key_value_heads": 4, "head_dim": 256, "tie_word_embeddings": True,
               "max_position_embeddings": 8192, "sliding_window": 4096,
               "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0},
}  # fmt: skip

# What transformers uses when no attn_implementation is given: PreTrainedModel.get_correct_attn_implementation
# (modeling_utils.py) starts from "sdpa" and falls back to "eager" when _sdpa_can_dispatch raises, which
# it does only when the class sets _supports_sdpa = False; no device or CUDA check is involved.
# Gemma2PreTrainedModel sets _supports_sdpa = False ("sdpa does not support softcapping",
# models/gemma2/modeling_gemma2.py); the other supported types set True. The test reads
# model.config._attn_implementation of a meta-device build to hold this table to transformers.
_DEFAULT_ATTN = {"gemma2": "eager"}

_FAMILIES = {
    "llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "phi3": "Phi-3",
    "gemma": "Gemma", "gemma2": "Gemma 2",
}  # fmt: skip

_DTYPES = tuple(d.torch_name for d in DTYPES.values())  # config.json's torch_dtype spellings

ALTERNATIVES = (
    "use a registry name (see `vramfit models`), a local config.json or a model folder that has one"
)


# ---- config.json -> ArchSpec ----------------------------------------------------------------------


def from_hf_config(config: dict, name: str, source: str = "", family: str = "") -> ArchSpec:
    """Map a Hugging Face ``config.json`` (as a dict) to an :class:`ArchSpec`.

    ``name`` is what the model is called in output; ``source`` where the config came from (a path or
    URL): errors name it. Raises :class:`InputError` for an unsupported ``model_type`` or a missing
    or ill-typed field.
    """
    where = source or name
    if not isinstance(config, dict):
        raise InputError(where, f"a config.json must hold a JSON object, got {type(config).__name__}")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        if model_type is None:
            raise InputError(
                where, f"has no model_type; supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        return _from_model(config, name, source, family, where)
    return _supported_spec(config, model_type, name, source, family, where)


def _supported_spec(
    config: dict, model_type: str, name: str, source: str, family: str, where: str
) -> ArchSpec:
    """:func:`from_hf_config` for a ``model_type`` of :data:`SUPPORTED_MODEL_TYPES`: read from its fields
    (errors name ``where``)."""
    get = _getter(config, _DEFAULTS[model_type])
    hidden, heads, kv_heads, head_dim = _attention_shape(config, get, where)
    fields = _family_fields(model_type, get, where)
    window = _sliding_window(model_type, config, get, where)
    # Gemma's MLP reads hidden_activation (GemmaMLP: ACT2FN[config.hidden_activation]).
    act = get("hidden_activation", "hidden_act") if model_type.startswith("gemma") else get("hidden_act")
    dtype = _torch_dtype(config, where)

    try:
        return ArchSpec(
            name=name,
            model_type=model_type,
            vocab_size=_positive_int(config, "vocab_size", where),
            hidden_size=hidden,
            intermediate_size=_positive_int(config, "intermediate_size", where),
            num_layers=_positive_int(config, "num_hidden_layers", where),
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            tie_word_embeddings=_bool(get("tie_word_embeddings"), "tie_word_embeddings", where),
            sliding_window=window,
            torch_dtype=dtype or ArchSpec.torch_dtype,
            default_attn=_DEFAULT_ATTN.get(model_type, DEFAULT_ATTN),
            max_position_embeddings=_check_int("max_position_embeddings", get("max_position_embeddings"), where),
            hidden_act=str(act or "silu"),
            family=family or _FAMILIES[model_type],
            source=source,
            hf_config=dict(config),
            **fields,
        )  # fmt: skip
    except InputError:  # a field's own check above (InputError is a ValueError: do not wrap it twice)
        raise
    except ValueError as e:  # ArchSpec's own consistency checks (heads vs KV heads)
        raise InputError(where, str(e)) from None


def _getter(config: dict, defaults: dict[str, Any]) -> Callable[..., Any]:
    """``get(key, *alt)``: the first of ``key`` and its alternative names in ``config``, else the family's
    default for ``key`` (None when it has none)."""

    def get(key: str, *alt: str) -> Any:
        for k in (key, *alt):
            if k in config:
                return config[k]
        return defaults.get(key)

    return get


def _attention_shape(config: dict, get: Callable[..., Any], where: str) -> tuple[int, int, int, int]:
    """(hidden_size, attention heads, KV heads, head_dim), checked; KV heads default to the heads and
    head_dim to hidden_size / heads, as in the modeling code."""
    hidden = _positive_int(config, "hidden_size", where)
    heads = _positive_int(config, "num_attention_heads", where)
    kv_heads = get("num_key_value_heads")
    kv_heads = heads if kv_heads is None else _check_int("num_key_value_heads", kv_heads, where)
    head_dim = get("head_dim")
    head_dim = hidden // heads if head_dim is None else _check_int("head_dim", head_dim, where)
    return hidden, heads, kv_heads, head_dim


def _family_fields(model_type: str, get: Callable[..., Any], where: str) -> dict[str, Any]:
    """The ArchSpec fields each family's modeling code fixes (biases, norms, fused projections)."""
    attention_bias = _bool(get("attention_bias") or False, "attention_bias", where)
    mlp_bias = _bool(get("mlp_bias") or False, "mlp_bias", where)

    fields: dict[str, Any] = {}
    if model_type == "llama":
        # LlamaAttention: attention_bias on q, k, v and o; LlamaMLP: mlp_bias on gate, up and down.
        fields.update(attention_bias=attention_bias, o_bias=attention_bias, mlp_bias=mlp_bias)
    elif model_type == "mistral":
        pass  # MistralAttention / MistralMLP: bias=False everywhere
    elif model_type == "qwen2":
        fields.update(attention_bias=True)  # Qwen2Attention: bias=True on q, k, v; o has none
    elif model_type == "qwen3":
        # Qwen3Attention: attention_bias on q, k, v and o; q_norm and k_norm are RMSNorm(head_dim).
        fields.update(attention_bias=attention_bias, o_bias=attention_bias, qk_norm=True)
    elif model_type == "phi3":
        fields.update(fused_qkv=True, fused_gate_up=True)  # qkv_proj and gate_up_proj, bias=False
    elif model_type in ("gemma", "gemma2"):
        fields.update(attention_bias=attention_bias, o_bias=attention_bias)
        if model_type == "gemma2":
            # Gemma2DecoderLayer: input, post_attention, pre_feedforward and post_feedforward norms.
            fields.update(
                norms_per_layer=4,
                final_logit_softcapping=_float_or_none(get("final_logit_softcapping"), "final_logit_softcapping", where),
                attn_logit_softcapping=_float_or_none(get("attn_logit_softcapping"), "attn_logit_softcapping", where),
            )  # fmt: skip

    return fields


def _sliding_window(model_type: str, config: dict, get: Callable[..., Any], where: str) -> int | None:
    # Qwen2/Qwen3 apply a window only with use_sliding_window (Qwen2Config.__post_init__).
    window = get("sliding_window")
    if model_type in ("qwen2", "qwen3") and not config.get("use_sliding_window", False):
        window = None
    return None if window is None else _check_int("sliding_window", window, where)


def _torch_dtype(config: dict, where: str) -> str | None:
    dtype = config.get("torch_dtype", config.get("dtype"))
    if dtype is not None and dtype not in _DTYPES:
        raise InputError(where, f"field 'torch_dtype' must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    return dtype


def _from_model(config: dict, name: str, source: str, family: str, where: str) -> ArchSpec:
    """Any other model_type: read from the shipped data (registry models), else built by the installed
    transformers on the meta device and read from it. Sizes are checked first: nothing absurd is built."""
    from vramfit.errors import MissingDependency
    from vramfit.models.shipped import shipped_inventory

    _check_arch_ranges(config, where)
    inv = shipped_inventory(config)
    if inv is not None:
        from vramfit.models.derived import spec_from_inventory

        return spec_from_inventory(inv, config, name=name, source=source, family=family)
    try:
        from vramfit.models.derived import spec_from_model

        return spec_from_model(config, name=name, source=source, family=family)
    except MissingDependency:
        raise InputError(
            where,
            f"model_type {config['model_type']!r} is not a built-in family ({', '.join(SUPPORTED_MODEL_TYPES)}); "
            "other models are read from the model itself, which needs torch and transformers "
            "(pip install 'vramfit[probe]')",
        ) from None


def _check_arch_ranges(config: dict, where: str) -> None:
    """Every size field a config has (top level and text_config) inside ARCH_RANGES, before any build."""
    for cfg in (config, config.get("text_config")):
        if not isinstance(cfg, dict):
            continue
        for key in ARCH_RANGES:
            if cfg.get(key) is not None:
                _check_int(key, cfg[key], where)


def _positive_int(config: dict, key: str, where: str) -> int:
    if key not in config:
        raise InputError(where, f"field {key!r} is missing (a {config.get('model_type')} config.json has it)")
    return _check_int(key, config[key], where)


def _check_int(key: str, value: Any, where: str) -> int:
    r = ARCH_RANGES.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(where, f"field {key!r} must be a positive integer, got {value!r}")
    if r is not None and not r.holds(value):
        raise InputError(where, f"field {key!r} is {value:,}; accepted: {r.describe()}")
    return value


def _bool(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(where, f"field {key!r} must be true or false, got {value!r}")
    return value


def _float_or_none(value: Any, key: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
        raise InputError(where, f"field {key!r} must be a positive number below 10^6 or null, got {value!r}")
    return float(value)


# ---- where a config comes from --------------------------------------------------------------------


def load_config_file(path: str | os.PathLike) -> tuple[dict, Path]:
    """Read a local ``config.json`` (or a model folder holding one): (the dict, the file read)."""
    p = Path(path).expanduser()
    if os.path.isdir(p):
        if not os.access(p, os.R_OK | os.X_OK):
            raise InputError("--model", f"folder {p} cannot be read (permission denied)")
        file = p / "config.json"
        if not os.path.lexists(file):
            raise InputError("--model", f"folder {p} has no config.json; {ALTERNATIVES}")
    elif not os.path.lexists(p):
        raise InputError("--model", f"no such file: {p}; {ALTERNATIVES}")
    else:
        file = p
    return read_user_json(file, "--model"), file  # a regular file of bounded size, or one clear line


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_cache_dir() -> str:
    """huggingface_hub's cache folder, read from the environment now (its constants are read at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.environ["HUGGINGFACE_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return os.path.join(home, "hub")


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint opens within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def load_hub_config(hub_id: str) -> tuple[dict, str]:
    """The ``config.json`` of a Hugging Face hub repository: (the dict, where it was read).

    Reads the local HF cache first; fetches with huggingface_hub only when it is installed and
    ``HF_HUB_OFFLINE`` is not set. Offline or missing -> :class:`InputError` naming the alternatives.
    """
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:
        raise InputError(
            "--model",
            f"{hub_id!r} is not a registry name, so it would be read from the Hugging Face hub, but "
            f"huggingface_hub is not installed (pip install huggingface_hub); or {ALTERNATIVES}",
        ) from None
    cache_dir = _hub_cache_dir()
    cached = try_to_load_from_cache(hub_id, "config.json", cache_dir=cache_dir)
    if isinstance(cached, str):
        config, file = load_config_file(cached)
        return config, str(file)
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        raise InputError(
            "--model",
            f"{hub_id!r} is not in the local Hugging Face cache ({cache_dir}) and HF_HUB_OFFLINE is set; "
            f"unset it to fetch its config.json, or {ALTERNATIVES}",
        )
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    not_fetched = f"{hub_id!r} is not in the local Hugging Face cache ({cache_dir}) and could not be fetched"
    if not _reachable(endpoint):
        # Checked first: huggingface_hub retries a failed connection for about half a minute.
        raise InputError("--model", f"{not_fetched}: {endpoint} is unreachable (offline?); {ALTERNATIVES}")
    try:
        path = hf_hub_download(hub_id, "config.json", cache_dir=cache_dir, etag_timeout=10)
    except Exception as e:  # network, gated or missing repository: all end the same way for the user
        reason = type(e).__name__
        if "Gated" in reason:
            why = "is gated (accept its license on huggingface.co and log in with `hf auth login`)"
        elif "RepositoryNotFound" in reason:
            why = "does not exist on the Hugging Face hub (or is private)"
        elif reason == "EntryNotFoundError" or reason == "RemoteEntryNotFoundError":
            why = "has no config.json"
        else:
            raise InputError("--model", f"{not_fetched} ({reason}); {ALTERNATIVES}") from None
        raise InputError("--model", f"{hub_id!r} {why}; {ALTERNATIVES}") from None
    config, file = load_config_file(path)
    return config, str(file)
