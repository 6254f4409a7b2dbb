"""Byte sizes: parsed in one place, printed in one place.

Convention: every unit is *binary*. ``4GB``, ``4G``, ``4 GiB`` and ``4g`` all mean 4 * 2**30 bytes,
because a card sold as "4 GB" has 4 GiB of memory (GDDR chips come in powers of two). A bare number
is taken as GiB. Inside vramfit sizes are ``int`` bytes; units appear only when printing, always
binary and labelled (GiB, MiB).
"""

from __future__ import annotations

import math
import re

from vramfit.errors import InputError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

_UNITS = {
    "": GiB,
    "b": 1,
    "k": KiB, "kb": KiB, "kib": KiB,
    "m": MiB, "mb": MiB, "mib": MiB,
    "g": GiB, "gb": GiB, "gib": GiB,
    "t": TiB, "tb": TiB, "tib": TiB,
}  # fmt: skip

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")

# The largest size any flag or file field accepts: more memory than any GPU holds (a bigger number is a
# typo, and bounding it keeps every computation on sizes finite).
MAX_SIZE_BYTES = 1024 * GiB

ACCEPTED_SIZES = (
    "a number with a binary unit, e.g. 4GB, 4 GiB, 4096MiB, 6g, 1.5G (GB = GiB; a bare number is GiB), "
    "up to 1024 GiB"
)


def _shown(text: object) -> str:
    r = repr(text)
    return r if len(r) <= 40 else r[:37] + "..."


def parse_size(text: str | int | float, flag: str = "--vram") -> int:
    """Parse a user-given memory size into int bytes (binary units, see module docstring); at most
    :data:`MAX_SIZE_BYTES`."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise InputError(flag, f"expected a size, got {_shown(text)}; accepted: {ACCEPTED_SIZES}")
    if isinstance(text, (int, float)):
        if isinstance(text, int) and abs(text) > MAX_SIZE_BYTES:
            raise InputError(flag, f"{_shown(text)} is too large; accepted: {ACCEPTED_SIZES}")
        value, unit = float(text), ""
    else:
        m = _SIZE.match(text) if len(text) <= 10_000 else None  # float() of 400 digits is inf: too large
        if not m:
            raise InputError(flag, f"cannot read {_shown(text)} as a size; accepted: {ACCEPTED_SIZES}")
        value, unit = float(m.group(1)), m.group(2).lower()
    if unit not in _UNITS:
        raise InputError(flag, f"unknown unit {unit!r} in {_shown(text)}; accepted: {ACCEPTED_SIZES}")
    if math.isnan(value) or (math.isinf(value) and not isinstance(text, str)):  # TOML's nan, inf
        raise InputError(flag, f"{_shown(text)} is not a size; accepted: {ACCEPTED_SIZES}")
    if value * _UNITS[unit] > MAX_SIZE_BYTES:
        raise InputError(flag, f"{_shown(text)} is too large; accepted: {ACCEPTED_SIZES}")
    size = round(value * _UNITS[unit])
    if size <= 0:
        raise InputError(flag, f"size must be positive, got {_shown(text)}")
    return size


def format_bytes(n: int, unit: str | None = None, digits: int = 2) -> str:
    """'3.52 GiB', '812.0 MiB', '-1.25 GiB'. ``unit`` forces 'GiB' or 'MiB'."""
    if unit is None:
        unit = "GiB" if abs(n) >= GiB else "MiB"
    div = {"GiB": GiB, "MiB": MiB, "KiB": KiB}[unit]
    return f"{n / div:.{digits if unit == 'GiB' else 1}f} {unit}"


def format_percent(x: float) -> str:
    return f"{x * 100:+.1f}%"
