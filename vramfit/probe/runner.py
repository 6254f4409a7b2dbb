"""Run probe trials as child processes (:mod:`vramfit.probe.child`), one or several at a time.

Every child runs in its own process group with a timeout. An out-of-memory inside a child is a result
(``measured.oom``), not an error here; a child that dies, hangs or is interrupted is killed with its
whole group, so no GPU memory stays held (the driver frees a process's memory when it exits).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from vramfit.errors import InputError, VramfitError


class TrialFailed(VramfitError):
    """A trial that neither finished nor ran out of memory (crash, timeout)."""


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    except ProcessLookupError:
        pass


class _Child:
    def __init__(
        self, trial: dict, workdir: str, index: int, on_event: Callable[[dict], None] | None
    ) -> None:
        self.index = index
        self.trial_path = os.path.join(workdir, f"trial{index}.json")
        self.result_path = os.path.join(workdir, f"result{index}.json")
        self.log_path = os.path.join(workdir, f"trial{index}.log")
        with open(self.trial_path, "w") as f:
            json.dump(trial, f)
        env = dict(
            os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error"
        )
        if trial.get("expandable_segments") is not None:
            from vramfit.allocator_settings import (
                NEWEST_SUPPORTED_TORCH,
                child_environment,
                installed_torch_version,
            )

            version = installed_torch_version() or NEWEST_SUPPORTED_TORCH
            env = child_environment(trial["expandable_segments"], env, version)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vramfit.probe.child", self.trial_path, self.result_path],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            start_new_session=True,  # its own process group: Ctrl-C here, then killpg there
        )
        self.reader = threading.Thread(target=self._read, args=(on_event,), daemon=True)
        self.reader.start()
        self.started = time.monotonic()

    def _read(self, on_event) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if on_event is None:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            event["trial"] = self.index
            on_event(event)

    def result(self) -> dict:
        self.reader.join(timeout=5)
        self.log.close()
        code = self.proc.returncode
        if os.path.exists(self.result_path):
            with open(self.result_path) as f:
                out = json.load(f)
            if "error" in out:
                raise InputError(out["error"]["flag"], out["error"]["message"])
            if code == 0:
                return out
        with open(self.log_path, errors="replace") as f:
            tail = f.read()[-3000:]
        raise TrialFailed(f"the probe's trial process failed (exit code {code}):\n{tail}")


def run_trials(
    trials: list[dict], timeout: float, on_event: Callable[[dict], None] | None = None
) -> list[dict]:
    """Run ``trials`` as simultaneous child processes; their results in order. Raises on a crash or timeout."""
    with tempfile.TemporaryDirectory(prefix="vramfit-trials-") as workdir:
        children: list[_Child] = []
        try:
            for i, trial in enumerate(trials):
                children.append(_Child(trial, workdir, i, on_event))
            deadline = time.monotonic() + timeout
            for c in children:
                try:
                    c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise TrialFailed(f"a trial ran past --timeout {timeout:g} s and was stopped") from None
            return [c.result() for c in children]
        finally:  # Ctrl-C, timeout or crash: no child outlives us
            for c in children:
                _kill_group(c.proc)
                if not c.log.closed:
                    c.log.close()


def run_trial(trial: dict, timeout: float, on_event: Callable[[dict], None] | None = None) -> dict:
    return run_trials([trial], timeout, on_event)[0]
