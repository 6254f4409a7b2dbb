"""The check: each configuration against its baseline entry (tolerance) and its budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vramfit.check.baseline import Baseline, BaselineEntry, versions
from vramfit.check.configfile import DEFAULT_TOLERANCE, CheckConfig
from vramfit.check.measure import measure_estimate, measure_probe
from vramfit.errors import ConfigErrors, InputError
from vramfit.memory import MemoryRecord, judge
from vramfit.units import format_bytes

# Statuses of one configuration; the first two fail the check.
CheckStatus = Literal["over budget", "regression", "improved", "new", "ok"]
OVER_BUDGET: CheckStatus = "over budget"
REGRESSION: CheckStatus = "regression"
IMPROVED: CheckStatus = "improved"
NEW: CheckStatus = "new"
OK: CheckStatus = "ok"
FAILING = (OVER_BUDGET, REGRESSION)


@dataclass(frozen=True)
class ConfigCheck:
    """The verdict on one configuration."""

    name: str
    model: str
    status: CheckStatus
    current: MemoryRecord
    config: dict
    card: dict
    baseline_bytes: int | None
    budget_bytes: int | None
    messages: tuple[str, ...] = ()
    usable_bytes: int | None = None  # the card's, when the configuration names one

    @property
    def required_vram_bytes(self) -> int:
        """The compared figure: the high end of the record's range."""
        return self.current.required_high_bytes

    @property
    def failed(self) -> bool:
        return self.status in FAILING

    @property
    def delta_bytes(self) -> int | None:
        return None if self.baseline_bytes is None else self.required_vram_bytes - self.baseline_bytes

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
            "required_vram_bytes": self.required_vram_bytes,
            "baseline_bytes": self.baseline_bytes,
            "delta_bytes": self.delta_bytes,
            "delta_fraction": self.delta_fraction,
            "budget_bytes": self.budget_bytes,
            "messages": list(self.messages),
            "current": {
                **self.current.to_json(),
                "required_vram_bytes": self.required_vram_bytes,
                "usable_bytes": self.usable_bytes,
            },  # fmt: skip
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
        entries = {
            c.name: BaselineEntry.of(c.model, c.config, c.card, c.current, c.usable_bytes)
            for c in self.checks
        }
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


def _over_budget(required: int, budget: int | None) -> list[str]:
    """The budget is a card of that size: judged by the one rule (``memory.judge``)."""
    if budget is None:
        return []
    v = judge(required, required, budget, budget)
    if v.fits:
        return []
    return [
        f"needs {format_bytes(required)}, over the budget of {format_bytes(budget)} by {format_bytes(-v.headroom_bytes)}"
    ]


def _moved(c: CheckConfig, required: int, config: dict, base: BaselineEntry, tolerance: float,
           version_changes: list[str]) -> list[str]:  # fmt: skip
    """Why the required VRAM moved beyond the tolerance against the baseline ([] when it did not)."""
    base_bytes = base.required_vram_bytes
    delta = required - base_bytes
    if abs(delta) <= tolerance * base_bytes:
        return []
    messages = [
        f"required VRAM {'grew' if delta > 0 else 'shrank'} by {format_bytes(abs(delta))} ({delta / base_bytes:+.1%}), "
        f"beyond the tolerance of {tolerance:.1%}"
    ]
    causes = [f"model {base.model} -> {c.model}"] if base.model != c.model else []
    causes += _config_changes(base.config, config)
    if base.card != c.card:
        causes.append(f"card {base.card or 'none'} -> {c.card or 'none'}")
    causes += version_changes
    if causes:
        messages.append("likely cause: " + "; ".join(causes))
    else:
        messages.append("same configuration and versions: the estimator or measurement changed")
    if delta < 0:
        messages.append("--update lowers the baseline to it")
    return messages


def _judge(
    c: CheckConfig,
    m: MemoryRecord,
    config: dict,
    base: BaselineEntry | None,
    tolerance: float,
    budget: int | None,
    version_changes: list[str],
    usable: int | None = None,
) -> ConfigCheck:
    required = m.required_high_bytes
    effective_budget = c.budget_bytes or budget or c.default_budget_bytes or usable
    messages = _over_budget(required, effective_budget)
    over = bool(messages)
    status: CheckStatus = OVER_BUDGET if over else OK
    base_bytes = None
    if base is None:
        messages.append("not in the baseline")
        status = status if over else NEW
    else:
        base_bytes = base.required_vram_bytes
        moved = _moved(c, required, config, base, tolerance, version_changes)
        messages += moved
        if moved and not over:
            status = REGRESSION if required > base_bytes else IMPROVED
    return ConfigCheck(
        c.name,
        c.model,
        status,
        m,
        config,
        dict(c.card),
        base_bytes,
        effective_budget,
        tuple(messages),
        usable,
    )


def _measure_all(
    configs, probe: bool
) -> tuple[list[tuple[CheckConfig, MemoryRecord, int | None, dict]], dict]:
    """Each configuration's record (all errors together), and the environment of the first."""
    measure = measure_probe if probe else measure_estimate
    measured = []
    errors: list[InputError] = []
    env: dict = {}
    for c in configs:
        try:
            m, usable, config, run_env = measure(c)
        except ConfigErrors as e:
            errors += e.errors
            continue
        except InputError as e:
            errors.append(e)
            continue
        env = env or run_env
        measured.append((c, m, usable, config))
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return measured, env


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
    measured, env = _measure_all(configs, probe)
    current_versions = versions(mode, env)
    from vramfit.environment import describe_changes

    changes = describe_changes(baseline.versions, current_versions) if baseline else []
    results = []
    for c, m, usable, config in measured:
        base = baseline.entries.get(c.name) if baseline else None
        results.append(_judge(c, m, config, base, tolerance, budget, changes, usable))
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
