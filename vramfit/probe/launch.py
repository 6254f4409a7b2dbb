"""Launch the real engine: ``accelerate launch`` with the emitted FSDP2 config, one process per GPU.

``launch_trial`` writes the trial (architecture, configuration, steps, cap) and the accelerate YAML of
:mod:`vramfit.plan.engine_config` to a temporary folder, runs ``python -m accelerate.commands.launch
--config_file F --num_processes N -m vramfit.probe.engine_child TRIAL OUT`` in its own process group with
a timeout, and returns every rank's result (``OUT/rank<R>.json``). Without CUDA the ranks talk over gloo
(the code path of several GPUs, exercised on the CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict

from vramfit.config import TrainConfig
from vramfit.errors import VramfitError
from vramfit.models.spec import ArchSpec
from vramfit.plan.engine_config import accelerate_yaml


class LaunchFailed(VramfitError):
    """The launched engine neither finished nor ran out of memory."""


def _environment(expandable_segments: bool | None, load: str) -> dict[str, str]:
    """The ranks' environment: the allocator setting as the installed torch reads it; one OpenMP thread per
    rank unless the base is quantized on the CPU (bitsandbytes' CPU kernels use the threads)."""
    from vramfit.allocator_settings import NEWEST_SUPPORTED_TORCH, child_environment, installed_torch_version

    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    if load != "cpu":
        env["OMP_NUM_THREADS"] = "1"
    version = installed_torch_version() or NEWEST_SUPPORTED_TORCH
    return child_environment(expandable_segments, env, version)


TRACE_ENTRIES = 400_000  # allocator events kept per rank when a trace is asked for


def launch_command(config_file: str, gpus: int, trial: str, out: str, port: int) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file,
            "--num_processes", str(gpus), "--main_process_port", str(port),
            "-m", "vramfit.probe.engine_child", trial, out]  # fmt: skip


def launch_trial(spec: ArchSpec, cfg: TrainConfig, gpus: int = 1, offload: str = "none", steps: int = 3,
                 cap_bytes: int | None = None, timeout: float = 900, port: int = 29517,
                 expandable_segments: bool | None = None, load: str = "gpu",
                 trace_to: str | None = None) -> list[dict]:  # fmt: skip
    """Every rank's result of ``steps`` training steps of ``cfg`` under FSDP2 (see module docstring).
    ``expandable_segments``: the ranks' caching allocator (None: as the environment says); ``load``:
    ``cpu`` loads and quantizes the base on the CPU as the emitted script does, ``gpu`` quantizes it on the
    GPU and moves it to the host before the cap (faster; the load is then not measured). ``trace_to``: a
    path prefix; each rank's allocator trace of the steps is written to ``{trace_to}.rank{N}.trace.json.gz``."""
    with tempfile.TemporaryDirectory(prefix="vramfit-engine-") as work:
        trial = {"spec": asdict(spec), "config": cfg.to_json(), "steps": steps, "offload": offload,
                 "cap_bytes": cap_bytes, "load": load,
                 "snapshot_entries": TRACE_ENTRIES if trace_to else None}  # fmt: skip
        paths = {k: os.path.join(work, k) for k in ("trial.json", "fsdp2.yaml", "out", "log")}
        with open(paths["trial.json"], "w") as f:
            json.dump(trial, f)
        with open(paths["fsdp2.yaml"], "w") as f:
            f.write(accelerate_yaml(spec, cfg, gpus, offload))  # type: ignore[arg-type]
        cmd = launch_command(paths["fsdp2.yaml"], gpus, paths["trial.json"], paths["out"], port)
        env = _environment(expandable_segments, load)
        with open(paths["log"], "w") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                raise LaunchFailed(f"the engine ran past {timeout:g} s and was stopped") from None
        files = sorted(os.listdir(paths["out"])) if os.path.isdir(paths["out"]) else []
        results = [json.load(open(os.path.join(paths["out"], f))) for f in files if f.endswith(".json")]
        for f in (f for f in files if f.endswith(".trace.json.gz") and trace_to):
            shutil.copyfile(os.path.join(paths["out"], f), f"{trace_to}.{f}")
        if len(results) != gpus:
            with open(paths["log"], errors="replace") as f:
                tail = f.read()[-3000:]
            raise LaunchFailed(
                f"accelerate launch exited {code} with {len(results)} of {gpus} rank results:\n{tail}"
            )
        return results
