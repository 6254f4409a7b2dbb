"""Which caching allocator a run uses: ``expandable_segments`` on or off, read as torch reads it.

No torch import: the installed torch's version comes from its package metadata, and the environment
variables are parsed here the way c10 parses them.

Which variable torch reads. ``c10/core/AllocatorConfig.cpp`` (``AcceleratorAllocatorConfig::instance``)
tries ``PYTORCH_ALLOC_CONF`` first and warns that ``PYTORCH_CUDA_ALLOC_CONF`` is deprecated (from torch 2.10,
pytorch/pytorch#167659), but the CUDA allocator's own ``CUDAAllocatorConfig::instance``, which decides
``expandable_segments`` for CUDA, reads::

    auto env = c10::utils::get_env("PYTORCH_CUDA_ALLOC_CONF");
    // Note: keep the parsing order and logic stable to avoid potential
    // performance regressions in internal tests.
    if (!env.has_value()) {
      env = c10::utils::get_env("PYTORCH_ALLOC_CONF");
    }

Measured on an H200 with torch 2.11.0 (``benchmarks/allocator_env_check.py``,
``benchmarks/results/expandable/h200_allocator_env_check.json``): each variable alone turns expandable
segments on, and with both set ``PYTORCH_CUDA_ALLOC_CONF`` wins. In torch 2.9 ``PYTORCH_ALLOC_CONF`` is
silently ignored for CUDA (pytorch/pytorch#183387: "only the deprecated PYTORCH_CUDA_ALLOC_CONF alias
works"), and before 2.9 it did not exist. So: torch >= 2.10 reads ``PYTORCH_CUDA_ALLOC_CONF``, then
``PYTORCH_ALLOC_CONF``; older torch ``PYTORCH_CUDA_ALLOC_CONF`` only. Command lines vramfit prints set
``PYTORCH_ALLOC_CONF`` (the name torch asks for) on torch >= 2.10. The probe records what its child's
torch actually used (the memory snapshot's ``allocator_settings``), so the rule is checked on every run.

Expandable segments need the CUDA driver API (``#if !defined(USE_ROCM) &&
defined(PYTORCH_C10_DRIVER_API_SUPPORTED)`` around ``struct ExpandableSegment``): not ROCm, and torch's
Windows builds ignore the setting with a warning.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Platform = Literal["linux", "windows", "wsl2", "rocm", "macos"]
PLATFORMS: tuple[str, ...] = ("linux", "windows", "wsl2", "rocm", "macos")
Source = Literal["flag", "config", "PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF", "default"]

NEW_VARIABLE = "PYTORCH_ALLOC_CONF"
OLD_VARIABLE = "PYTORCH_CUDA_ALLOC_CONF"
NEW_VARIABLE_SINCE = (2, 10)
# The newest torch this allocator model was read from and measured with (the H200 runs): assumed when
# torch is not installed (the estimator does not need it).
NEWEST_SUPPORTED_TORCH = "2.11.0"

ISSUE_MAX_SPLIT = "pytorch/pytorch#123548"
ISSUE_NEW_VARIABLE = "pytorch/pytorch#183387"


def _version_tuple(version: str) -> tuple[int, int]:
    parts = version.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def installed_torch_version() -> str | None:
    """The installed torch's version from its package metadata (torch is not imported)."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def variables_read(torch_version: str) -> tuple[str, ...]:
    """The variables this torch's CUDA allocator reads, the first one set winning."""
    if _version_tuple(torch_version) >= NEW_VARIABLE_SINCE:
        return (OLD_VARIABLE, NEW_VARIABLE)
    return (OLD_VARIABLE,)


def variable_to_set(torch_version: str) -> str:
    """The variable a command line should set for this torch (the other one must then be unset)."""
    return NEW_VARIABLE if _version_tuple(torch_version) >= NEW_VARIABLE_SINCE else OLD_VARIABLE


def parse_conf(value: str) -> dict[str, str]:
    """``"expandable_segments:True,max_split_size_mb:128"`` -> {key: value}, as c10's tokenizer splits it
    (``,`` between options, ``:`` between key and value; a value may be a bracketed list)."""
    out: dict[str, str] = {}
    depth, item = 0, ""
    for ch in value + ",":
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            key, _, val = item.strip().partition(":")
            if key:
                out[key.strip()] = val.strip()
            item = ""
        else:
            item += ch
    return out


def conf_expandable(value: str) -> bool | None:
    """True / False when the conf string sets expandable_segments, else None (c10 accepts True/False)."""
    v = parse_conf(value).get("expandable_segments")
    if v is None:
        return None
    return v == "True"


def platform_of_this_machine() -> Platform:
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    try:
        with open("/proc/version") as f:
            if "microsoft" in f.read().lower():
                return "wsl2"
    except OSError:
        pass
    return "linux"


def supports_expandable(platform: str) -> bool:
    """Whether torch honours expandable_segments on this platform (native Linux CUDA)."""
    return platform == "linux"


PLATFORM_NOTE = {
    "windows": "torch's Windows builds ignore expandable_segments (with a warning): planned without it",
    "rocm": "expandable segments are CUDA-only in torch (the ROCm build has no ExpandableSegment): planned "
    "without them",
    "wsl2": "expandable segments under WSL2 fail on many drivers (the CUDA virtual-memory API is "
    "partial there): planned without them; --expandable-segments plans with them anyway",
    "macos": "no CUDA on macOS: planned for the default allocator",
}


@dataclass(frozen=True)
class AllocatorSetting:
    """The allocator a run uses and why vramfit thinks so."""

    expandable_segments: bool
    source: Source
    torch_version: str  # installed, or NEWEST_SUPPORTED_TORCH when torch is not installed
    torch_installed: bool
    variable: str | None = None  # the variable that decided, when one did
    value: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return "expandable segments" if self.expandable_segments else "default caching allocator"

    def env_line(self) -> str:
        """The shell line that gives a run this allocator (for the installed / assumed torch)."""
        return f"{variable_to_set(self.torch_version)}=expandable_segments:{self.expandable_segments}"

    def text(self) -> str:
        how = {"flag": "from the command line", "config": "from vramfit.toml",
               "default": "no allocator variable is set"}.get(self.source, f"{self.variable}={self.value}")  # fmt: skip
        torch = f"torch {self.torch_version}" + ("" if self.torch_installed else " assumed (not installed)")
        return f"{self.name} ({how}; {torch} reads {' then '.join(variables_read(self.torch_version))})"

    def to_json(self) -> dict:
        return {"expandable_segments": self.expandable_segments, "source": self.source,
                "torch_version": self.torch_version, "torch_installed": self.torch_installed,
                "variable": self.variable, "value": self.value,
                "variables_read": list(variables_read(self.torch_version)),
                "env_line": self.env_line()}  # fmt: skip


def _pitfalls(env: Mapping[str, str], torch_version: str, platform: str, expandable: bool) -> list[str]:
    w = []
    new = env.get(NEW_VARIABLE)
    if new is not None and _version_tuple(torch_version) < NEW_VARIABLE_SINCE:
        w.append(
            f"{NEW_VARIABLE} is set, but torch {torch_version} ignores it for CUDA (read from 2.10 on; "
            f"{ISSUE_NEW_VARIABLE}): set {OLD_VARIABLE} instead"
        )
    for var in variables_read(torch_version):
        if var in env and "max_split_size_mb" in parse_conf(env[var]) and expandable:
            w.append(
                f"{var} sets max_split_size_mb together with expandable_segments: reserved memory can then "
                f"grow without bound ({ISSUE_MAX_SPLIT}); drop max_split_size_mb"
            )
            break
    if expandable and platform in ("windows", "rocm"):
        w.append(f"expandable segments requested, but {PLATFORM_NOTE[platform].split(':')[0]}")
    return w


def resolve(
    flag: bool | None = None,
    env: Mapping[str, str] | None = None,
    torch_version: str | None = None,
    platform: str | None = None,
    source_of_flag: Source = "flag",
) -> AllocatorSetting:
    """The allocator setting: ``flag`` (a CLI flag or a vramfit.toml entry) when given, else what the
    installed torch would read from ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    installed = installed_torch_version() if torch_version is None else torch_version
    version = installed or NEWEST_SUPPORTED_TORCH
    plat = platform or platform_of_this_machine()
    if flag is not None:
        setting = AllocatorSetting(flag, source_of_flag, version, installed is not None)
    else:
        setting = AllocatorSetting(False, "default", version, installed is not None)
        for var in variables_read(version):
            if var in env:
                value = env[var]
                setting = AllocatorSetting(bool(conf_expandable(value)), var, version, installed is not None,
                                           var, value)  # fmt: skip
                break
    effective = setting.expandable_segments and plat not in ("windows", "rocm")
    warnings = tuple(_pitfalls(env, version, plat, setting.expandable_segments))
    return AllocatorSetting(effective, setting.source, setting.torch_version, setting.torch_installed,
                            setting.variable, setting.value, warnings)  # fmt: skip


def child_environment(expandable: bool | None, env: Mapping[str, str], torch_version: str) -> dict[str, str]:
    """``env`` for a probe child that uses ``expandable`` (None: ``env`` unchanged). The other options of a
    user's conf string are kept; the variable this torch reads first carries the setting, and the one it
    would fall back to is removed so that nothing else decides."""
    out = dict(env)
    if expandable is None:
        return out
    first = variable_to_set(torch_version)
    base = next((out[v] for v in variables_read(torch_version) if v in out), "")
    opts = parse_conf(base)
    opts["expandable_segments"] = str(bool(expandable))
    for v in (NEW_VARIABLE, OLD_VARIABLE):
        out.pop(v, None)
    out[first] = ",".join(f"{k}:{v}" if v else k for k, v in opts.items())
    return out
