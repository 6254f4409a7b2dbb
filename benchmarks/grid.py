"""Probe grids as data: ``benchmarks/grids/*.toml`` in the ``vramfit.toml`` format that ``vramfit check``
reads (``[configs.NAME]`` tables with ``model`` and the training keys), validated by vramfit's own parser
(:func:`vramfit.check.parse_check_toml`). A configuration becomes ``vramfit probe`` flags with
:func:`probe_flags`, or a model and a ``TrainConfig`` with :func:`load_configs`."""

from __future__ import annotations

from pathlib import Path

from vramfit.check import CheckConfig, parse_check_toml

GRIDS_DIR = Path(__file__).resolve().parent / "grids"
_BOOL_FLAGS = ("double_quant", "gradient_checkpointing", "kbit_upcast")


def _tables(path: Path) -> dict[str, dict]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    return tomllib.loads(path.read_text())["configs"]


def probe_flags(table: dict) -> str:
    """``vramfit probe`` flags of one ``[configs.NAME]`` table, in the table's order."""
    out = []
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        if key in _BOOL_FLAGS:
            out.append(flag if value else "--no-" + flag[2:])
        elif key == "targets":
            out += [flag, ",".join(value) if isinstance(value, list) else str(value)]
        else:
            out += [flag, str(value)]
    return " ".join(out)


def load_configs(path: Path) -> dict[str, CheckConfig]:
    """Every configuration of a grid file, validated as ``vramfit check`` validates vramfit.toml."""
    return {c.name: c for c in parse_check_toml(path.read_text(), source=path.name).configs}


def load_grid(name: str) -> dict[str, str]:
    """``benchmarks/grids/NAME.toml`` as ``{configuration: vramfit probe flags}`` (validated first)."""
    path = GRIDS_DIR / f"{name}.toml"
    load_configs(path)
    return {n: probe_flags(t) for n, t in _tables(path).items()}
