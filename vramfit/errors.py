"""Errors a person can cause by what they type: each names the flag (or field) and what it accepts.

The CLI turns :class:`InputError` into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VramfitError(Exception):
    """Base class of every error vramfit raises on purpose."""


class MissingDependency(VramfitError):
    """An optional library a command needs is not installed; the message says how to install it."""


class InputError(VramfitError, ValueError):
    """A value given by the user (flag, config field, file) is not acceptable.

    ``flag`` is what the user typed it under (``--seq-len``, ``vramfit.toml: [train.a] rank``).
    """

    def __init__(self, flag: str, message: str) -> None:
        self.flag = flag
        self.message = message
        super().__init__(f"{flag}: {message}" if flag else message)


class ConfigErrors(InputError):
    """Several problems with one configuration, reported together."""

    def __init__(self, errors: list[InputError]) -> None:
        self.errors = errors
        super().__init__("", _joined(errors))


def _joined(errors: list[InputError]) -> str:
    """'vramfit.toml: [configs.a] rank: ...; seq_len: ...': a location shared with the previous error
    (all of a flag but its last word) is said once."""
    parts, previous = [], None
    for e in errors:
        where, _, key = e.flag.rpartition(" ")
        if where and where == previous:
            parts.append(f"{key}: {e.message}")
        else:
            parts.append(str(e))
        previous = where or None
    return "; ".join(parts)


def close_matches(word: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.5) -> list[str]:
    """The ``choices`` closest to ``word`` (case-insensitive, difflib's ratio >= ``cutoff``), best first."""
    by_lower = {c.lower(): c for c in choices}
    return [by_lower[c] for c in difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=cutoff)]


def did_you_mean(names: Iterable[str]) -> str:
    """' (did you mean: a, b?)', or '' for no names: the one wording of every suggestion."""
    names = list(names)
    return f" (did you mean: {', '.join(names)}?)" if names else ""


def suggest(word: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.5) -> str:
    """' (did you mean: a, b?)' for close matches of ``word`` among ``choices``, or ''."""
    return did_you_mean(close_matches(word, choices, n, cutoff))


def one_of(flag: str, value: str, choices: Iterable[str]) -> InputError:
    """The error for a value that must be one of ``choices``."""
    choices = list(choices)
    return InputError(
        flag, f"unknown value {value!r}{suggest(value, choices)}; accepted: {', '.join(choices)}"
    )
