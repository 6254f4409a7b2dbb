"""Memory-regression checks for CI: named training configurations against a baseline and budgets.

A project lists the runs it cares about in ``vramfit.toml``::

    # Top-level keys are defaults for every configuration below.
    model = "llama-3.2-1b"
    budget = "8GB"            # required VRAM must stay at or below this (binary units: GB = GiB)
    tolerance = "2%"          # allowed move against the baseline ("2%" or 0.02); --tolerance overrides

    [configs.default]         # an empty table: the reference QLoRA recipe on the default model

    [configs.long-context]
    seq_len = 2048
    budget = "12GB"           # a configuration's own budget wins over --budget and the default

    [configs.mistral-on-3060]
    model = "mistral-7b"
    gpu = "rtx-3060"          # a card (gpu, vram, cuda_context, display_reserve): its bf16 support
                              # and CUDA context enter the estimate; with no budget anywhere, the
                              # card's usable memory is the budget
    rank = 64
    targets = ["all-linear"]  # or "q_proj,v_proj"

The other keys of a configuration are the fields of :class:`vramfit.config.TrainConfig` (the
``vramfit estimate`` flags with ``_`` for ``-``): method, quant, double_quant, load_dtype,
compute_dtype, rank, alpha, dropout, targets, seq_len, batch_size, grad_accum,
gradient_checkpointing, optimizer, attn, kbit_upcast. Unknown keys are errors naming the table.

Budget precedence: a configuration's ``budget`` > ``--budget`` > the top-level ``budget`` > the
card's usable memory. The compared quantity is ``required_vram_bytes`` (what decides a fit).

The baseline (``vramfit-baseline.json``) is written only by ``vramfit check --update``. It records
the mode (estimate or probe), the versions that produced it (vramfit; for probes also the GPU,
driver, CUDA, torch, transformers, peft, bitsandbytes, accelerate) and, per configuration, the
model, the resolved configuration and the memory numbers, so that a move can name its likely cause.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from vramfit.config import TrainConfig
from vramfit.errors import ConfigErrors, InputError, VramfitError
from vramfit.units import format_bytes, parse_size

BASELINE_FORMAT = 1
DEFAULT_TOLERANCE = 0.02
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
CARD_KEYS = ("gpu", "vram", "cuda_context", "display_reserve")
CONFIG_KEYS = ("model", "budget", *CARD_KEYS, *TRAIN_KEYS)
TOP_KEYS = ("configs", "tolerance", *CONFIG_KEYS)
_BOOL_KEYS = ("double_quant", "gradient_checkpointing", "kbit_upcast")
_STR_KEYS = ("model", "gpu", "method", "quant", "load_dtype", "compute_dtype", "optimizer", "attn")
METRICS = ("required_vram_bytes", "peak_allocated_bytes", "peak_reserved_bytes", "allocator_required_bytes")

# Statuses of one configuration; the first two fail the check.
OVER_BUDGET, REGRESSION, IMPROVED, NEW, OK = "over budget", "regression", "improved", "new", "ok"
FAILING = (OVER_BUDGET, REGRESSION)


# ---- vramfit.toml ---------------------------------------------------------------------------------


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
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)", text)
    if not m:
        raise InputError(flag, f"cannot read {value!r}; accepted: {accepted}")
    number = float(m.group(1))
    if m.group(2):
        return number / 100
    if number >= 1:
        raise InputError(
            flag, f"{value!r} would allow a move of {number:.0%}; did you mean {text}%? accepted: {accepted}"
        )
    return number


def _did_you_mean(key: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else f"; accepted: {', '.join(choices)}"


def _located(where: str, message: str) -> InputError:
    """'vramfit.toml: [configs.small] unknown key ...' (the location reads as part of the sentence)."""
    e = InputError("", f"{where} {message}")
    e.flag = where
    return e


def _flag_to_key(flag: str) -> str:
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
    return CheckConfig(name, str(model), cfg, budget, defaults.get("_budget_bytes"), card, where)


def _validated(cfg: TrainConfig, where: str) -> TrainConfig:
    """TrainConfig validation, with each flag renamed to its vramfit.toml key."""
    from vramfit.config import validate
    from vramfit.estimate import OPTIMIZERS

    try:
        return validate(cfg, tuple(OPTIMIZERS))
    except ConfigErrors as e:
        raise ConfigErrors(
            [InputError(f"{where} {_flag_to_key(x.flag)}", x.message) for x in e.errors]
        ) from None
    except InputError as e:
        raise InputError(f"{where} {_flag_to_key(e.flag)}", e.message) from None


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
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("--config", f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("--config", f"{p}: cannot read: {e}") from None
    return parse_check_toml(text, source=p.name)


# ---- measuring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """The memory numbers of one configuration, from the estimator or the probe."""

    required_vram_bytes: int
    peak_allocated_bytes: int
    peak_reserved_bytes: int | None
    allocator_required_bytes: int | None
    peak_phase: str | None
    usable_bytes: int | None = None  # the card's, when the configuration names one

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _card(c: CheckConfig):
    if not c.card:
        return None
    from vramfit.gpus import resolve_card

    try:
        return resolve_card(**c.card)
    except InputError as e:
        raise InputError(f"{c.where} {_flag_to_key(e.flag)}", e.message) from None


def measure_estimate(c: CheckConfig) -> tuple[Measurement, dict, dict]:
    """(measurement, resolved config JSON, environment) from the estimator."""
    from vramfit.estimate import estimate

    try:
        est = estimate(c.model, c.config, _card(c))
    except InputError as e:
        flag = _flag_to_key(e.flag) if e.flag.startswith("--") else e.flag
        raise InputError(f"{c.where} {flag}", e.message) from None
    m = Measurement(
        required_vram_bytes=est.required_vram_bytes,
        peak_allocated_bytes=est.peak_allocated_bytes,
        peak_reserved_bytes=est.peak_reserved_bytes,
        allocator_required_bytes=est.allocator_required_bytes,
        peak_phase=est.peak_phase,
        usable_bytes=est.verdict.usable_bytes if est.verdict else None,
    )
    return m, est.config, {}


def measure_probe(c: CheckConfig) -> tuple[Measurement, dict, dict]:
    """(measurement, config JSON, environment) from real training steps (needs a CUDA GPU).

    Without ``find_min`` the probe does not search the allocator requirement, so the required VRAM
    recorded here is its upper bound: peak reserved + non-PyTorch memory (deterministic for a given
    stack and GPU, which is what a regression check needs).
    """
    from vramfit.probe import probe

    try:
        result = probe(c.model, c.config, _card(c))
    except InputError as e:
        flag = (
            "--probe" if e.flag == "--device" else _flag_to_key(e.flag) if e.flag.startswith("--") else e.flag
        )
        raise InputError(f"{c.where} {flag}" if flag != "--probe" else flag, e.message) from None
    d = result.to_json()
    meas = d.get("measured") or {}
    if meas.get("oom"):
        oom = meas["oom"]
        raise VramfitError(
            f"{c.where}: the probe ran out of memory in {oom.get('phase')}: {oom.get('message')}"
        )
    nt = meas.get("non_torch_bytes") or {}
    if not isinstance(meas.get("peak_reserved_bytes"), int) or not isinstance(nt.get("total"), int):
        raise InputError(
            "--probe", f"{c.where}: the probe measured no memory (device {meas.get('device')!r})"
        )
    required = meas["required_vram_bytes"]
    if not isinstance(required, int):
        required = meas["peak_reserved_bytes"] + nt["total"]
    m = Measurement(
        required_vram_bytes=required,
        peak_allocated_bytes=int(meas.get("peak_allocated_bytes") or 0),
        peak_reserved_bytes=meas.get("peak_reserved_bytes"),
        allocator_required_bytes=meas.get("allocator_required_bytes"),
        peak_phase=meas.get("peak_phase"),
        usable_bytes=(d.get("verdict") or {}).get("usable_bytes"),
    )
    return m, d.get("config") or c.config.to_json(), dict(d.get("environment") or {})


# ---- the baseline -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineEntry:
    model: str
    config: dict
    card: dict
    measurement: Measurement

    def to_json(self) -> dict:
        return {"model": self.model, "config": self.config, "card": self.card, **self.measurement.to_json()}


@dataclass(frozen=True)
class Baseline:
    mode: str  # "estimate" or "probe"
    versions: dict
    entries: dict[str, BaselineEntry]

    def to_json(self) -> dict:
        return {
            "kind": "vramfit-baseline",
            "format": BASELINE_FORMAT,
            "mode": self.mode,
            "versions": self.versions,
            "configs": {name: e.to_json() for name, e in sorted(self.entries.items())},
        }

    @classmethod
    def from_json(cls, d: object, source: str = "baseline") -> Baseline:
        if not isinstance(d, dict) or d.get("kind") != "vramfit-baseline":
            raise InputError(
                source, 'not a vramfit baseline (no "kind": "vramfit-baseline"); write one with --update'
            )
        if d.get("format") != BASELINE_FORMAT:
            raise InputError(
                source,
                f"baseline format {d.get('format')!r} is not {BASELINE_FORMAT}; rewrite it with --update",
            )
        if d.get("mode") not in ("estimate", "probe"):
            raise InputError(source, f"mode {d.get('mode')!r}; accepted: estimate, probe")
        configs = d.get("configs")
        if not isinstance(configs, dict):
            raise InputError(source, "'configs' must be an object")
        entries = {}
        for name, e in configs.items():
            if not isinstance(e, dict):
                raise InputError(source, f"configs.{name} must be an object")
            for key in ("required_vram_bytes", "peak_allocated_bytes"):
                if not isinstance(e.get(key), int) or isinstance(e.get(key), bool):
                    raise InputError(
                        source, f"configs.{name}.{key} must be a whole number of bytes, got {e.get(key)!r}"
                    )
            meas = Measurement(**{f.name: e.get(f.name) for f in fields(Measurement)})
            entries[name] = BaselineEntry(
                str(e.get("model", "")), dict(e.get("config") or {}), dict(e.get("card") or {}), meas
            )
        return cls(d["mode"], dict(d.get("versions") or {}), entries)


def load_baseline(path: str | Path) -> Baseline:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("--baseline", f"{p}: file not found; create it with --update") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("--baseline", f"{p}: cannot read: {e}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            "--baseline", f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    return Baseline.from_json(d, source=f"--baseline {p.name}")


def write_baseline(path: str | Path, baseline: Baseline) -> None:
    """Write the baseline (only ``vramfit check --update`` calls this)."""
    Path(path).write_text(json.dumps(baseline.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def versions(mode: str, probe_environment: dict | None = None) -> dict:
    """What produced the numbers: vramfit for estimates; for probes the stack and GPU of the run."""
    from vramfit.report.environment import ENVIRONMENT_KEYS, environment

    if mode == "estimate":
        return {"vramfit": environment(query_gpu=False)["vramfit"]}
    env = dict(probe_environment) if probe_environment else environment(query_gpu=True)
    return {k: env.get(k) for k in ENVIRONMENT_KEYS}


# ---- the check --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigCheck:
    """The verdict on one configuration."""

    name: str
    model: str
    status: str  # over budget, regression, improved, new, ok
    current: Measurement
    config: dict
    card: dict
    baseline_bytes: int | None
    budget_bytes: int | None
    messages: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status in FAILING

    @property
    def delta_bytes(self) -> int | None:
        return None if self.baseline_bytes is None else self.current.required_vram_bytes - self.baseline_bytes

    @property
    def delta_fraction(self) -> float | None:
        if self.baseline_bytes is None or self.baseline_bytes <= 0:
            return None
        return self.delta_bytes / self.baseline_bytes  # type: ignore[operator]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "model": self.model,
            "status": self.status,
            "failed": self.failed,
            "required_vram_bytes": self.current.required_vram_bytes,
            "baseline_bytes": self.baseline_bytes,
            "delta_bytes": self.delta_bytes,
            "delta_fraction": self.delta_fraction,
            "budget_bytes": self.budget_bytes,
            "messages": list(self.messages),
            "current": self.current.to_json(),
            "config": self.config,
            "card": self.card,
        }


@dataclass(frozen=True)
class CheckResult:
    mode: str
    tolerance: float
    checks: tuple[ConfigCheck, ...]
    removed: tuple[str, ...]  # in the baseline, not in vramfit.toml
    versions: dict
    baseline_versions: dict | None
    version_changes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    def to_baseline(self) -> Baseline:
        entries = {c.name: BaselineEntry(c.model, c.config, c.card, c.current) for c in self.checks}
        return Baseline(self.mode, self.versions, entries)

    def to_json(self) -> dict:
        return {
            "kind": "check",
            "ok": self.ok,
            "mode": self.mode,
            "tolerance": self.tolerance,
            "checks": [c.to_json() for c in self.checks],
            "removed": list(self.removed),
            "versions": self.versions,
            "baseline_versions": self.baseline_versions,
            "version_changes": list(self.version_changes),
        }


def _config_changes(old: dict, new: dict) -> list[str]:
    keys = [k for k in new if k in old and old[k] != new[k]] + [k for k in new if k not in old]
    return [f"{k} {old.get(k)!r} -> {new[k]!r}" for k in keys]


def _judge(
    c: CheckConfig,
    m: Measurement,
    config: dict,
    base: BaselineEntry | None,
    tolerance: float,
    budget: int | None,
    version_changes: list[str],
) -> ConfigCheck:
    messages: list[str] = []
    effective_budget = c.budget_bytes or budget or c.default_budget_bytes or m.usable_bytes
    over = effective_budget is not None and m.required_vram_bytes > effective_budget
    if over:
        messages.append(
            f"needs {format_bytes(m.required_vram_bytes)}, over the budget of {format_bytes(effective_budget)} "
            f"by {format_bytes(m.required_vram_bytes - effective_budget)}"
        )
    status = OVER_BUDGET if over else OK
    base_bytes = None
    if base is None:
        messages.append("not in the baseline")
        status = status if over else NEW
    else:
        base_bytes = base.measurement.required_vram_bytes
        delta = m.required_vram_bytes - base_bytes
        moved = abs(delta) > tolerance * base_bytes
        if moved:
            direction = "grew" if delta > 0 else "shrank"
            messages.append(
                f"required VRAM {direction} by {format_bytes(abs(delta))} ({delta / base_bytes:+.1%}), "
                f"beyond the tolerance of {tolerance:.1%}"
            )
            causes = []
            if base.model != c.model:
                causes.append(f"model {base.model} -> {c.model}")
            causes += _config_changes(base.config, config)
            if base.card != c.card:
                causes.append(f"card {base.card or 'none'} -> {c.card or 'none'}")
            causes += version_changes
            if causes:
                messages.append("likely cause: " + "; ".join(causes))
            else:
                messages.append("same configuration and versions: the estimator or measurement changed")
            if not over:
                status = REGRESSION if delta > 0 else IMPROVED
            if delta < 0:
                messages.append("--update lowers the baseline to it")
    return ConfigCheck(
        c.name, c.model, status, m, config, dict(c.card), base_bytes, effective_budget, tuple(messages)
    )


def check(
    configs: list[CheckConfig] | tuple[CheckConfig, ...],
    baseline: Baseline | None,
    tolerance: float = DEFAULT_TOLERANCE,
    budget: int | None = None,
    probe: bool = False,
) -> CheckResult:
    """Evaluate each configuration (estimator, or probe with ``probe=True``) and compare it with the
    baseline (None: no comparison, e.g. the first ``--update``) and with its budget."""
    mode = "probe" if probe else "estimate"
    if baseline is not None and baseline.mode != mode:
        raise InputError(
            "--baseline",
            f"the baseline holds {baseline.mode} numbers and this check makes {mode} numbers; "
            f"run {'with' if baseline.mode == 'probe' else 'without'} --probe, or record a new baseline with --update",
        )
    measure = measure_probe if probe else measure_estimate
    measured = []
    errors: list[InputError] = []
    env: dict = {}
    for c in configs:
        try:
            m, config, run_env = measure(c)
        except ConfigErrors as e:
            errors += e.errors
            continue
        except InputError as e:
            errors.append(e)
            continue
        env = env or run_env
        measured.append((c, m, config))
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    current_versions = versions(mode, env)
    from vramfit.report.environment import describe_changes

    changes = describe_changes(baseline.versions, current_versions) if baseline else []
    results = []
    for c, m, config in measured:
        base = baseline.entries.get(c.name) if baseline else None
        results.append(_judge(c, m, config, base, tolerance, budget, changes))
    names = {c.name for c in configs}
    removed = tuple(sorted(n for n in (baseline.entries if baseline else {}) if n not in names))
    return CheckResult(
        mode,
        tolerance,
        tuple(results),
        removed,
        current_versions,
        baseline.versions if baseline else None,
        tuple(changes),
    )


# ---- JUnit XML ----------------------------------------------------------------------------------------


def junit_xml(result: CheckResult) -> str:
    """JUnit XML: one testcase per configuration; failures for regressions and exceeded budgets."""
    import xml.etree.ElementTree as ET

    failures = sum(c.failed for c in result.checks)
    suites = ET.Element(
        "testsuites", name="vramfit check", tests=str(len(result.checks)), failures=str(failures)
    )
    suite = ET.SubElement(
        suites, "testsuite", name=f"vramfit check ({result.mode})", tests=str(len(result.checks)),
        failures=str(failures), errors="0", skipped="0",
    )  # fmt: skip
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="tolerance", value=f"{result.tolerance:g}")
    for k, v in result.versions.items():
        if v is not None:
            ET.SubElement(props, "property", name=k, value=str(v))
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"vramfit.check.{result.mode}", name=c.name)
        text = "\n".join(c.messages)
        if c.failed:
            first = c.messages[0] if c.messages else c.status
            fail = ET.SubElement(
                case, "failure", message=f"{c.status}: {first}", type=c.status.replace(" ", "_")
            )
            fail.text = text
        out = ET.SubElement(case, "system-out")
        base = "none" if c.baseline_bytes is None else str(c.baseline_bytes)
        out.text = f"model: {c.model}\nrequired_vram_bytes: {c.current.required_vram_bytes}\nbaseline_bytes: {base}\n{text}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
