"""The check: each configuration against its baseline entry (tolerance) and its budget."""

from __future__ import annotations

from dataclasses import dataclass

from vramfit.check.baseline import Baseline, BaselineEntry, versions
from vramfit.check.configfile import DEFAULT_TOLERANCE, CheckConfig
from vramfit.check.measure import Measurement, measure_estimate, measure_probe
from vramfit.errors import ConfigErrors, InputError
from vramfit.units import format_bytes

# Statuses of one configuration; the first two fail the check.
OVER_BUDGET, REGRESSION, IMPROVED, NEW, OK = "over budget", "regression", "improved", "new", "ok"
FAILING = (OVER_BUDGET, REGRESSION)


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
    from vramfit.environment import describe_changes

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
