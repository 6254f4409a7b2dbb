"""Files a person gave us: reading them safely, and writing outputs without ever touching them.

Reading (config.json, vramfit.toml, baselines, saved results): a regular file (never a FIFO, which would
block, or a device such as /dev/zero, which never ends) of at most :data:`MAX_INPUT_BYTES`; JSON nested at
most :data:`MAX_JSON_DEPTH` deep, with whole numbers of at most :data:`MAX_INT_DIGITS` digits and no NaN
or Infinity. Each error names the flag or argument the path came from, the path once, and what is wrong
(missing, unreadable, not JSON with the line and column), as one line.

Writing (reports, JUnit XML, the baseline on ``check --update``): :func:`check_outputs` refuses, before any
work, an output that is one of the command's inputs, two outputs that are the same file, and an output
whose folder does not exist; :func:`write_output` writes to a temporary file in the same folder and
renames it over the target, so an interrupted run leaves the old file whole.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from vramfit.errors import InputError

MAX_INPUT_BYTES = 64 << 20  # the largest saved result vramfit writes is a few MiB
MAX_JSON_DEPTH = 64  # vramfit's own files nest 6 deep, config.json files about 4
MAX_INT_DIGITS = 30  # 10^30 is far past any count of bytes or parameters


def _open_regular(p: Path, flag: str, missing_hint: str = ""):
    """``p`` opened for binary reading, checked to be a regular file first (stat does not block)."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(flag, f"{p}: file not found{missing_hint}") from None
    except (OSError, ValueError) as e:
        raise InputError(flag, f"{p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(flag, f"{p}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(flag, f"{p}: not a regular file (a device, pipe or socket); give a file")
    if st.st_size > MAX_INPUT_BYTES:
        raise InputError(
            flag, f"{p}: {st.st_size:,} bytes; files of at most {MAX_INPUT_BYTES >> 20} MiB are read"
        )
    try:
        return open(p, "rb")
    except OSError as e:
        raise InputError(flag, f"{p}: cannot read: {e.strerror or e}") from None


def read_user_text(path: str | Path, flag: str, missing_hint: str = "") -> str:
    """The UTF-8 text of a regular file of at most :data:`MAX_INPUT_BYTES`."""
    p = Path(path)
    with _open_regular(p, flag, missing_hint) as f:
        try:
            data = f.read(MAX_INPUT_BYTES + 1)
        except OSError as e:
            raise InputError(flag, f"{p}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_INPUT_BYTES:  # grew since stat
        raise InputError(flag, f"{p}: files of at most {MAX_INPUT_BYTES >> 20} MiB are read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(flag, f"{p}: not UTF-8 text (byte {e.start})") from None


class _Refused(ValueError):
    """A JSON value vramfit does not read (raised from the decoder's hooks)."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(
            f"a whole number of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS} are read)"
        )
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is too large")
    return value


def _constant(name: str) -> float:
    raise _Refused(f"{name} is not a number JSON allows")


def json_depth(value: object) -> int:
    """How deep ``value`` nests (a scalar is 0, ``[]`` is 1), without recursion."""
    depth, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            depth = max(depth, d)
            if d <= MAX_JSON_DEPTH:
                stack += [(c, d + 1) for c in (v.values() if isinstance(v, dict) else v)]
    return depth


def parse_user_json(text: str, flag: str, where: str) -> object:
    """Any JSON value of ``text`` within the limits of the module docstring."""
    try:
        data = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise InputError(
            flag, f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    except _Refused as e:
        raise InputError(flag, f"{where}: {e}") from None
    except RecursionError:
        raise InputError(flag, f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise InputError(flag, f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def read_user_json(path: str | Path, flag: str, missing_hint: str = "") -> dict:
    """A JSON object from ``path``; anything else is an InputError naming ``flag``."""
    p = Path(path)
    data = parse_user_json(read_user_text(p, flag, missing_hint), flag, str(p))
    if not isinstance(data, dict):
        raise InputError(flag, f"{p}: expected a JSON object, got {type(data).__name__}")
    return data


def check_byte_fields(data: object, flag: str, where: str, limit: int = 1 << 60) -> None:
    """Every ``*_bytes`` / ``*_params`` field of a saved result is a whole number (or null) within
    ``limit``, as vramfit writes them; raises InputError naming the field's path."""
    stack: list[tuple[object, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        items = (
            value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        )
        for key, v in items:
            here = f"{path}.{key}" if path else str(key)
            if (
                isinstance(key, str)
                and key.endswith(("_bytes", "_params"))
                and not isinstance(v, (dict, list))
            ):
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or abs(v) > limit):
                    shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
                    raise InputError(flag, f"{where}: {here} must be a whole number, got {shown}")
            stack.append((v, here))


# ---- outputs ----------------------------------------------------------------------------------------


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_outputs(outputs: Iterable[tuple[str, str]], inputs: Iterable[tuple[str, str]] = ()) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other, or cannot be written.

    ``outputs`` and ``inputs`` are (flag, path) pairs; an output may list the derived files it writes
    (the Markdown report's PNG) under its own flag. Raises InputError naming the output's flag.
    """
    outputs, inputs = [(f, str(p)) for f, p in outputs if p], [(f, str(p)) for f, p in inputs if p]
    for i, (flag, path) in enumerate(outputs):
        for in_flag, in_path in inputs:
            if _same_file(path, in_path):
                raise InputError(
                    flag,
                    f"{path} is the {in_flag} input; vramfit never overwrites an input: choose another file",
                )
        for other_flag, other in outputs[:i]:
            if _same_file(path, other):
                raise InputError(
                    flag, f"{path} is also written by {other_flag}; give each output its own file"
                )
        _check_writable(flag, path)


def _check_writable(flag: str, path: str) -> None:
    real = os.path.realpath(path)
    if os.path.isdir(real):
        raise InputError(flag, f"{path} is a folder; give a file name")
    folder = os.path.dirname(real) or "."
    if not os.path.isdir(folder):
        raise InputError(
            flag, f"{path}: folder {os.path.dirname(path) or folder} does not exist; create it first"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            flag, f"{path}: cannot write in folder {os.path.dirname(path) or folder} (permission denied)"
        )


def write_output(path: str | Path, data: str | bytes, flag: str) -> str:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then a rename), so an
    interrupted run leaves the old file; a device or pipe given as output (/dev/null) is written as is.
    Returns ``str(path)``."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    real = os.path.realpath(path)  # a symlink stays a symlink: the file it points to is replaced
    try:
        if os.path.exists(real) and not os.path.isfile(real):
            with open(real, "wb") as f:
                f.write(raw)
            return str(path)
        folder, name = os.path.split(real)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            os.chmod(tmp, _mode_for(real))
            os.replace(tmp, real)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise InputError(flag, f"cannot write {path}: {e.strerror or e}") from None
    return str(path)


def _mode_for(real: str) -> int:
    """The mode the file has, or what a new file gets under the umask (mkstemp makes it 0600)."""
    try:
        return stat.S_IMODE(os.stat(real).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


__all__ = [
    "MAX_INPUT_BYTES", "MAX_JSON_DEPTH", "MAX_INT_DIGITS", "read_user_text", "read_user_json",
    "parse_user_json", "json_depth", "check_byte_fields", "check_outputs", "write_output",
]  # fmt: skip
