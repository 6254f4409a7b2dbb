"""vramfit.toml: named training configurations with budgets (the format is in :mod:`vramfit.check`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from vramfit.config import TrainConfig
from vramfit.errors import ConfigErrors, InputError, suggest
from vramfit.units import parse_size
from vramfit.userfiles import read_user_text

DEFAULT_TOLERANCE = 0.02
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
CARD_KEYS = ("gpu", "vram", "cuda_context", "display_reserve")
ALLOCATOR_KEY = "expandable_segments"  # the allocator the run uses (vramfit.allocator_settings)
CONFIG_KEYS = ("model", "budget", ALLOCATOR_KEY, *CARD_KEYS, *TRAIN_KEYS)
TOP_KEYS = ("configs", "tolerance", *CONFIG_KEYS)
_BOOL_KEYS = ("double_quant", "gradient_checkpointing", "kbit_upcast", "padding_free", ALLOCATOR_KEY)
_STR_KEYS = ("model", "gpu", "method", "quant", "load_dtype", "compute_dtype", "optimizer", "attn", "trainer",
             "loss")  # fmt: skip


@dataclass(frozen=True)
class CheckConfig:
    """One named configuration of vramfit.toml, validated."""

    name: str
    model: str
    config: TrainConfig
    budget_bytes: int | None = None  # this configuration's own budget
    default_budget_bytes: int | None = None  # the file's top-level budget
    card: dict = field(default_factory=dict)  # resolve_card keyword arguments as written
    where: str = ""  # "vramfit.toml: [configs.NAME]", for error messages
    expandable_segments: bool | None = None  # as written; None: read the environment as torch would


@dataclass(frozen=True)
class CheckFile:
    path: str
    configs: tuple[CheckConfig, ...]
    tolerance: float | None = None


def parse_tolerance(value: object, flag: str = "--tolerance") -> float:
    """'2%' -> 0.02, '0.02' or 0.02 -> 0.02. A bare number is a fraction and must be below 1."""
    accepted = "a percentage like 2% or a fraction like 0.02"
    if isinstance(value, bool):
        raise InputError(flag, f"expected {accepted}, got {value!r}")
    text = str(value).strip() if isinstance(value, (str, int, float)) else ""
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)", text) if len(text) <= 40 else None
    if not m:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InputError(flag, f"cannot read {shown}; accepted: {accepted}")
    number = float(m.group(1))
    if m.group(2):
        if number > 100:
            raise InputError(flag, f"{text} would allow any move; accepted: {accepted}, at most 100%")
        return number / 100
    if number >= 1:
        raise InputError(
            flag, f"{value!r} would allow a move of {number:.0%}; did you mean {text}%? accepted: {accepted}"
        )
    return number


def _did_you_mean(key: str, choices: tuple[str, ...]) -> str:
    return suggest(key, choices, n=1, cutoff=0.6) or f"; accepted: {', '.join(choices)}"


def _located(where: str, message: str) -> InputError:
    """'vramfit.toml: [configs.small] unknown key ...' (the location reads as part of the sentence)."""
    e = InputError("", f"{where} {message}")
    e.flag = where
    return e


def flag_to_key(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _config_from_table(name: str, table: dict, defaults: dict, source: str) -> CheckConfig:
    where = f"{source}: [configs.{name}]"
    errors: list[InputError] = []
    for key in table:
        if key not in CONFIG_KEYS:
            errors.append(_located(where, f"unknown key {key!r}{_did_you_mean(key, CONFIG_KEYS)}"))
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    merged = {**{k: v for k, v in defaults.items() if k != "budget" and not k.startswith("_")}, **table}
    for key, value in merged.items():
        here = where if key in table else f"{source}: top level"
        if key in _BOOL_KEYS and not isinstance(value, bool):
            errors.append(InputError(f"{here} {key}", f"expected true or false, got {value!r}"))
        elif key in _STR_KEYS and not isinstance(value, str):
            errors.append(InputError(f"{here} {key}", f"expected a string, got {value!r}"))
    model = merged.pop("model", None)
    if model is None:
        errors.append(_located(where, 'has no model: set model = "..." in it or at the top level'))
    budget = None
    if "budget" in table:
        try:
            budget = parse_size(table["budget"], flag=f"{where} budget")
        except InputError as e:
            errors.append(e)
    expandable = merged.pop(ALLOCATOR_KEY, None)
    card = {key: merged.pop(key) for key in CARD_KEYS if key in merged}  # resolve_card parses the sizes
    train = {k: merged[k] for k in TRAIN_KEYS if k in merged}
    targets = train.get("targets")
    if isinstance(targets, str):
        train["targets"] = tuple(t.strip() for t in targets.split(",") if t.strip())
    elif isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        train["targets"] = tuple(targets)
    elif targets is not None:
        errors.append(
            InputError(f"{where} targets", f"expected a list of module names or a string, got {targets!r}")
        )
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    cfg = _validated(TrainConfig(**train), where)
    return CheckConfig(name, str(model), cfg, budget, defaults.get("_budget_bytes"), card, where, expandable)


def _validated(cfg: TrainConfig, where: str) -> TrainConfig:
    """TrainConfig validation, with each flag renamed to its vramfit.toml key."""
    from vramfit.config import validate
    from vramfit.estimate import OPTIMIZERS

    try:
        return validate(cfg, tuple(OPTIMIZERS))
    except ConfigErrors as e:
        raise ConfigErrors(
            [InputError(f"{where} {flag_to_key(x.flag)}", x.message) for x in e.errors]
        ) from None
    except InputError as e:
        raise InputError(f"{where} {flag_to_key(e.flag)}", e.message) from None


def parse_check_toml(text: str, source: str = "vramfit.toml") -> CheckFile:
    """Parse the text of a vramfit.toml (format: module docstring)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(source, f"not valid TOML: {e}") from None
    except ValueError as e:  # a whole number of more than 4300 digits
        raise InputError(source, f"not a vramfit.toml: {str(e).split(';')[0]}") from None
    except RecursionError:
        raise InputError(source, "not a vramfit.toml: arrays or tables nested too deep") from None
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        k = unknown[0]
        hint = (
            " (configurations go in [configs.NAME] tables)"
            if isinstance(doc[k], dict)
            else _did_you_mean(k, TOP_KEYS)
        )
        raise InputError(source, f"unknown top-level key {k!r}{hint}")
    configs = doc.get("configs")
    if not isinstance(configs, dict) or not configs:
        raise InputError(source, "no configurations: add at least one [configs.NAME] table")
    tolerance = parse_tolerance(doc["tolerance"], flag=f"{source}: tolerance") if "tolerance" in doc else None
    defaults = {k: v for k, v in doc.items() if k not in ("configs", "tolerance")}
    if "budget" in defaults:
        defaults["_budget_bytes"] = parse_size(defaults["budget"], flag=f"{source}: budget")
    out = []
    errors: list[InputError] = []
    for name, table in configs.items():
        if not isinstance(table, dict):
            errors.append(
                InputError(f"{source}: configs.{name}", "expected a table: [configs.NAME] with keys under it")
            )
            continue
        try:
            out.append(_config_from_table(name, table, defaults, source))
        except ConfigErrors as e:
            errors += e.errors
        except InputError as e:
            errors.append(e)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return CheckFile(source, tuple(out), tolerance)


def load_check_file(path: str | Path) -> CheckFile:
    p = Path(path)
    return parse_check_toml(read_user_text(p, "--config"), source=p.name)
