"""Models that are not built-in families, shipped as data: their inventory and traced layer terms.

``vramfit/data/derived_models.json`` holds, for every registry entry whose ``model_type`` the hand-written
formulas do not know, what :mod:`vramfit.models.inventory` reads from the model transformers builds and what
:mod:`vramfit.models.trace` measures for a set of trace keys (shape classes). ``benchmarks/derive_models.py``
writes it with the transformers and torch versions it ran; a CPU test holds it to a fresh build and trace.
Reading it needs neither torch nor transformers, so these registry models are estimated offline.

Entries are keyed by a digest of the config dict, so a local config.json with exactly the registry's keys
finds them too; anything else is built and traced with the installed transformers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields
from functools import cache
from importlib import resources
from typing import Any

from vramfit.models.inventory import BufferInfo, Inventory, LinearInfo, ParamInfo

DATA_FILE = "derived_models.json"


def config_digest(config: dict) -> str:
    """A stable digest of a config dict (its JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def key_text(key: Any) -> str:
    """A trace key (a frozen dataclass) as the JSON string the data file indexes by."""
    return json.dumps(asdict(key), sort_keys=True)


@cache
def _data() -> dict:
    try:
        text = resources.files("vramfit").joinpath("data", DATA_FILE).read_text()
    except FileNotFoundError:
        return {"models": {}}
    return json.loads(text)


def inventory_to_dict(inv: Inventory) -> dict:
    d = asdict(inv)
    d["config"] = {k: v for k, v in inv.config.items() if not k.startswith("_")}
    return d


def _tuple_fields(cls, d: dict) -> Any:
    kw = {}
    for f in fields(cls):
        v = d[f.name]
        kw[f.name] = tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
    return cls(**kw)


def inventory_from_dict(d: dict) -> Inventory:
    return Inventory(
        model_type=d["model_type"],
        architecture=d["architecture"],
        transformers_version=d["transformers_version"],
        num_layers=d["num_layers"],
        attn_implementation=d["attn_implementation"],
        params=tuple(_tuple_fields(ParamInfo, p) for p in d["params"]),
        linears=tuple(LinearInfo(**m) for m in d["linears"]),
        buffers=tuple(BufferInfo(**b) for b in d["buffers"]),
        all_linear=tuple(d["all_linear"]),
        output_embedding=d["output_embedding"],
        config=d["config"],
    )


def shipped_inventory(config: dict) -> Inventory | None:
    """The shipped inventory of ``config``, or None when the data file has none for it."""
    entry = _data()["models"].get(config_digest(config))
    return inventory_from_dict(entry["inventory"]) if entry else None


def shipped_trace(config: dict, key: Any) -> dict | None:
    """The shipped :class:`LayerTrace` fields of ``config`` under ``key``, or None."""
    entry = _data()["models"].get(config_digest(config))
    return entry["traces"].get(key_text(key)) if entry else None


def shipped_keys(config: dict) -> list[dict]:
    """The trace keys shipped for ``config`` (for the error that names what is available)."""
    entry = _data()["models"].get(config_digest(config))
    return [json.loads(k) for k in entry["traces"]] if entry else []


def arch_from_dict(d: dict):
    """An ArchSpec back from ``dataclasses.asdict`` (the probe's trial file): its inventory, where it has one,
    becomes an :class:`Inventory` again."""
    from vramfit.models.spec import ArchSpec

    inv = d.get("inventory")
    return ArchSpec(**{**d, "inventory": inventory_from_dict(inv) if isinstance(inv, dict) else inv})
