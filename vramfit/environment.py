"""Where a result came from: GPU, driver, CUDA, library versions, vramfit version, Python.

Read by the probe (what it measured on), by `check` (what changed since a baseline) and by the reports
(what they show); it depends on none of them.

Library versions come from package metadata (:mod:`importlib.metadata`), so nothing heavy is imported
to learn them. The GPU is read from torch only when torch is already imported (the probe has it);
otherwise from ``nvidia-smi`` when it is on PATH, and left ``None`` when there is neither.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from importlib import metadata

# The libraries whose versions move measured memory (the probe's training stack).
LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")

ENVIRONMENT_KEYS = ("gpu", "gpu_memory_bytes", "driver", "cuda", *LIBRARIES, "vramfit", "python")


def package_version(name: str) -> str | None:
    """Installed version of a distribution, without importing it; None when not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _vramfit_version() -> str:
    from vramfit import __version__

    return __version__


def _gpu_from_torch() -> dict:
    torch = sys.modules.get("torch")  # only when the caller already paid for importing it
    if torch is None:
        return {}
    try:
        if not torch.cuda.is_available():
            return {"cuda": getattr(torch.version, "cuda", None)}
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return {"gpu": props.name, "gpu_memory_bytes": int(props.total_memory), "cuda": torch.version.cuda}
    except Exception:  # a broken driver must not break a report
        return {}


def _gpu_from_nvidia_smi() -> dict:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    first = out.strip().splitlines()[0] if out.strip() else ""
    parts = [p.strip() for p in first.split(",")]
    if len(parts) != 3:
        return {}
    name, mem_mib, driver = parts
    info: dict = {"gpu": name, "driver": driver}
    if mem_mib.isdigit():
        info["gpu_memory_bytes"] = int(mem_mib) << 20  # NOTE: nvidia-smi reports MiB
    return info


def environment(query_gpu: bool = True) -> dict:
    """The environment as a flat dict with :data:`ENVIRONMENT_KEYS` (None where unknown).

    ``query_gpu=False`` skips ``nvidia-smi`` (estimates do not depend on the GPU that computed them).
    """
    env: dict = dict.fromkeys(ENVIRONMENT_KEYS)
    for lib in LIBRARIES:
        env[lib] = package_version(lib)
    env["vramfit"] = _vramfit_version()
    env["python"] = platform.python_version()
    if query_gpu:
        smi = _gpu_from_nvidia_smi()
        env.update({k: v for k, v in smi.items() if v is not None})
        env.update({k: v for k, v in _gpu_from_torch().items() if v is not None})
    return env


def describe_changes(old: dict, new: dict, keys: tuple[str, ...] = ENVIRONMENT_KEYS) -> list[str]:
    """['transformers 4.45.0 -> 4.46.1', ...] for the keys whose values differ (both sides known or not)."""
    changes = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if k in old and k in new and a != b:
            changes.append(f"{k} {a if a is not None else 'absent'} -> {b if b is not None else 'absent'}")
    return changes
