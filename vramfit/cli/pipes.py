"""Output into a pipe whose reader has gone (``vramfit models | head -1``).

Once the reader closes the pipe, the rest of the output goes to /dev/null: the command runs to its end
and exits with its own code (0 fits, 1 does not fit), with no BrokenPipeError traceback and no
"Exception ignored" message when Python flushes stdout at exit.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


class _QuietStdout:
    """A stdout that swallows a broken pipe by pointing its file descriptor at /dev/null."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def _to_devnull(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._inner.fileno())
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._inner.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._inner.flush()
        except BrokenPipeError:
            self._to_devnull()
            with contextlib.suppress(BrokenPipeError):
                self._inner.flush()  # what was buffered now goes to /dev/null

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


@contextlib.contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """Within: stdout survives its reader going away (a no-op when stdout is not a real file)."""
    inner = sys.stdout
    try:
        inner.fileno()
    except (AttributeError, OSError, ValueError):  # captured output (tests), nothing to guard
        yield
        return
    guard = _QuietStdout(inner)
    sys.stdout = guard  # type: ignore[assignment]
    try:
        yield
    finally:
        guard.flush()
        sys.stdout = inner
