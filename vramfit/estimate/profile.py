"""The software stack the estimator's measured facts come from, and the versions known to change memory.

The physics of :mod:`vramfit.estimate` is read from library source (each module names its files), and
its one fitted part, the allocator slack, from probe runs on one stack (``MEASURED``). Memory depends on
that stack: where a library changed how much it allocates, ``KNOWN_CHANGES`` says which versions do
what and whether the estimate models it. :func:`drift_warnings` compares the installed versions (read
from package metadata, nothing imported) with both, so an estimate says when it may not apply; the probe
(``vramfit probe``) measures whatever stack is installed, and is the fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata

# What benchmarks/results/probe/ was measured with (each result file records its own environment).
MEASURED = {
    "torch": "2.11.0",
    "transformers": "5.17.0",
    "peft": "0.21.0",
    "bitsandbytes": "0.50.2",
    "accelerate": "1.15.0",
}

# The trainer-stack packages of vramfit.trainers and the versions their losses were read in (and are
# to be measured with: scripts/probe_trainer_stacks.sh records the environment of every run); only the
# runs that use them depend on these.
MEASURED_TRAINER_STACK = {
    "trl": "1.16.0",
    "liger-kernel": "0.8.5",
}


def _parse(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version string: '2.11.0+cu130' -> (2, 11, 0)."""
    m = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(x) for x in m.group(0).split(".")) if m else ()


@dataclass(frozen=True)
class VersionChange:
    package: str
    below: str | None  # the versions before this one behave as ``what`` says (None: no upper bound)
    since: str | None  # ... and from this one on (None: no lower bound)
    what: str
    modelled: bool  # whether vramfit's estimate follows the behaviour of the affected versions
    source: str

    def applies(self, version: str) -> bool:
        v = _parse(version)
        if not v:
            return False
        if self.below is not None and not v < _parse(self.below):
            return False
        return self.since is None or v >= _parse(self.since)


KNOWN_CHANGES = (
    VersionChange(
        "transformers", below="4.46.0", since=None,
        what="causal-LM heads upcast the logits to fp32 in the model's forward and return them, so an fp32 "
        "copy of the logits lives from the head to the end of backward; from 4.46 the upcast happens "
        "inside the loss (loss/loss_utils.py ForCausalLMLoss) and is freed with it. The estimate follows "
        ">= 4.46: on older versions expect up to one more fp32 logits tensor (batch x seq x vocab x 4 B)",
        modelled=False,
        source="huggingface/transformers #31292, #33902, #34147 (v4.46.0)",
    ),
)  # fmt: skip


@lru_cache(maxsize=1)
def installed() -> dict[str, str | None]:
    """Installed versions of the stack (None: not installed), from package metadata."""
    out: dict[str, str | None] = {}
    for name in (*MEASURED, *MEASURED_TRAINER_STACK):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def drift_warnings(versions: dict[str, str | None] | None = None) -> list[str]:
    """What the installed (or given) versions mean for the estimate: known changes that apply, and the
    packages whose major.minor differs from the measured stack."""
    versions = installed() if versions is None else versions
    out = []
    for c in KNOWN_CHANGES:
        v = versions.get(c.package)
        if v and c.applies(v):
            out.append(f"{c.package} {v}: {c.what} ({c.source})")
    differ = _differing(versions, MEASURED)
    if differ:
        measured = ", ".join(f"{k} {'.'.join(v.split('.')[:2])}" for k, v in MEASURED.items())
        out.append(
            f"installed {', '.join(differ)}: the allocator slack was measured with {measured}; "
            "`vramfit probe` measures the installed stack"
        )
    stack = _differing(versions, MEASURED_TRAINER_STACK)
    if stack:
        measured = ", ".join(f"{k} {v}" for k, v in MEASURED_TRAINER_STACK.items())
        out.append(
            f"installed {', '.join(stack)}: the --trainer trl / --loss fused / --loss liger memory was read "
            f"from {measured}; `vramfit probe --trainer ...` measures the installed stack"
        )
    return out


@lru_cache(maxsize=1)
def installed_drift_warnings() -> tuple[str, ...]:
    """:func:`drift_warnings` for the installed stack, computed once per process (the planner estimates
    thousands of configurations)."""
    return tuple(drift_warnings())


def _differing(versions: dict, measured: dict) -> list[str]:
    """``name version`` of each installed package whose major.minor differs from the measured one."""
    return [
        f"{name} {v}"
        for name, v in versions.items()
        if v and name in measured and _parse(v)[:2] != _parse(measured[name])[:2]
    ]
