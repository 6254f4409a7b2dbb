"""Reading files a person gave us (config.json, vramfit.toml, baselines, saved results).

One place for the errors: each names the flag or argument the path came from, the path, and what is wrong
with it (missing, unreadable, not JSON with the line and column), as one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from vramfit.errors import InputError


def read_user_text(path: str | Path, flag: str, missing_hint: str = "") -> str:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(flag, f"{p}: file not found{missing_hint}") from None
    except IsADirectoryError:
        raise InputError(flag, f"{p}: is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(flag, f"{p}: cannot read: {e}") from None


def read_user_json(path: str | Path, flag: str, missing_hint: str = "") -> dict:
    """A JSON object from ``path``; anything else is an InputError naming ``flag``."""
    p = Path(path)
    text = read_user_text(p, flag, missing_hint)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            flag, f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    if not isinstance(data, dict):
        raise InputError(flag, f"{p}: expected a JSON object, got {type(data).__name__}")
    return data
