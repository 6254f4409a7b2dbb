"""Models: what ``--model`` accepts, resolved to an :class:`ArchSpec`.

Resolution order of ``resolve_model(text)``:

1. a registry name, alias or the hub id of a registry model (``mistral-7b``, ``mistralai/Mistral-7B-v0.1``):
   built in, offline, no file I/O, no heavy import; the ArchSpec is built once and cached;
2. a local path: a ``config.json`` or a model folder that holds one;
3. a Hugging Face hub id ``org/name``: its config.json from the local HF cache, else fetched;
4. anything else: an :class:`InputError` for ``--model`` with close registry names.
"""

from __future__ import annotations

import functools
import os

from vramfit.errors import InputError, suggest
from vramfit.models.hf_config import (
    ALTERNATIVES,
    HUB_ID,
    SUPPORTED_MODEL_TYPES,
    from_hf_config,
    load_config_file,
    load_hub_config,
)
from vramfit.models.registry import ENTRIES, REGISTRY, RegistryEntry, find_entry
from vramfit.models.spec import ArchSpec, LinearModule

__all__ = [
    "REGISTRY",
    "SUPPORTED_MODEL_TYPES",
    "ArchSpec",
    "LinearModule",
    "RegistryEntry",
    "from_hf_config",
    "list_models",
    "load_config_file",
    "load_hub_config",
    "registry_spec",
    "resolve_model",
]


@functools.cache
def registry_spec(name: str) -> ArchSpec:
    """The ArchSpec of registry entry ``name`` (its exact name), built once."""
    entry = REGISTRY[name]
    return from_hf_config(entry.config, name=entry.name, source=entry.source, family=entry.family)


def list_models() -> list[ArchSpec]:
    """Every registry model, in registry order."""
    return [registry_spec(e.name) for e in ENTRIES]


def resolve_model(name_or_path: str) -> ArchSpec:
    """Resolve what a person typed after ``--model`` (see the module docstring for the order)."""
    text = str(name_or_path).strip()
    if not text:
        raise InputError("--model", f"no model given; {ALTERNATIVES}, or a hub id org/name")
    entry = find_entry(text)
    if entry is not None:
        return registry_spec(entry.name)
    path = os.path.expanduser(text)
    if os.path.exists(path):
        config, file = load_config_file(path)
        return from_hf_config(config, name=text, source=str(file))
    if HUB_ID.match(text) and not text.endswith(".json"):
        config, where = load_hub_config(text)
        return from_hf_config(config, name=text, source=where)
    if text.endswith(".json") or os.sep in text:
        raise InputError("--model", f"no such file or folder: {text}; {ALTERNATIVES}")
    names = [e.name for e in ENTRIES] + [a for e in ENTRIES for a in e.aliases]
    raise InputError(
        "--model",
        f"unknown model {text!r}{suggest(text, names)}; {ALTERNATIVES}, or a hub id org/name",
    )
