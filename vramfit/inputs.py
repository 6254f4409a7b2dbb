"""What a person may type: the accepted range of every number and string, in one table.

Flags (``--rank``), vramfit.toml keys (``rank = 16``) and config.json fields (``num_hidden_layers``)
read their bounds from here, so an absurd value is refused the same way wherever it is typed: one
line naming the flag or field and the accepted values, before any work starts. The bounds are what
makes sense for a single GPU's training run, with room to spare; they also keep every loop and
every float conversion downstream bounded (no 400-digit number reaches ``float()``).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Literal

from vramfit.errors import InputError

# Longest text accepted for one typed number or size ("1.5GiB", "15%"): more is a paste accident.
MAX_NUMBER_CHARS = 40
# Longest text accepted for any string flag (a path, a model name, a list of module names).
MAX_TEXT_CHARS = 4096


@dataclass(frozen=True)
class Range:
    """Accepted values of one number: ``lo <= x <= hi`` (``lo < x`` when ``lo_open``)."""

    lo: float
    hi: float
    kind: Literal["int", "float"] = "int"
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        what = "a whole number" if self.kind == "int" else "a number"
        lo = f"above {_num(self.lo)}" if self.lo_open else f"from {_num(self.lo)}"
        hi = f"below {_num(self.hi)}" if self.hi_open else f"to {_num(self.hi)}"
        return f"{what} {lo} {hi}" if not (self.lo_open or self.hi_open) else f"{what} {lo}, {hi}"

    def holds(self, x: float) -> bool:
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return math.isfinite(x) and above and below


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


# NOTE: training-configuration fields (TrainConfig names; the flag is --seq-len for seq_len). The
# upper ends: LoRA ranks above 65536 exceed every model's hidden size; 4M tokens is beyond the longest
# context of any supported model; a micro-batch or an accumulation of 65536 sequences is far past what
# one GPU steps through.
TRAIN_RANGES: dict[str, Range] = {
    "rank": Range(1, 65536),
    "seq_len": Range(1, 1 << 22),
    "batch_size": Range(1, 65536),
    "grad_accum": Range(1, 65536),
    "alpha": Range(0, 1e6, "float", lo_open=True),
    "dropout": Range(0, 1, "float", hi_open=True),
}

# Other flags of the commands (dest names).
FLAG_RANGES: dict[str, Range] = {
    "effective_batch": Range(1, 1 << 20),
    "top": Range(0, 100),
    "steps": Range(1, 1000),
    "parallel": Range(1, 64),
    "timeout": Range(0, 7 * 24 * 3600, "float", lo_open=True),  # seconds: up to a week
}

# NOTE: config.json fields. The largest supported models have ~126 layers, hidden 16384, vocabularies of
# ~256k and contexts of 10M tokens; the bounds leave an order of magnitude above each, and keep the
# parameter count (layers x hidden x intermediate) within what a float holds exactly enough.
ARCH_RANGES: dict[str, Range] = {
    "num_hidden_layers": Range(1, 4096),
    "hidden_size": Range(1, 1 << 18),
    "intermediate_size": Range(1, 1 << 20),
    "num_attention_heads": Range(1, 4096),
    "num_key_value_heads": Range(1, 4096),
    "head_dim": Range(1, 1 << 14),
    "vocab_size": Range(1, 1 << 24),
    "max_position_embeddings": Range(1, 1 << 30),
    "sliding_window": Range(1, 1 << 30),
}


def check_number(value: object, r: Range, flag: str) -> int | float:
    """``value`` if it is a number of ``r``'s kind inside ``r``; else InputError naming ``flag``."""
    ok_type = (int,) if r.kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise InputError(flag, f"expected {r.describe()}, got {_shown(value)}")
    if isinstance(value, int) and abs(value) > 1 << 64:
        raise InputError(flag, f"expected {r.describe()}, got a number of {len(str(abs(value)))} digits")
    if not r.holds(float(value)):
        raise InputError(flag, f"expected {r.describe()}, got {_shown(value)}")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_number(text: str, r: Range, flag: str) -> int | float:
    """A typed number (``"16"``, ``"0.05"``) checked against ``r``."""
    s = str(text).strip()
    if not s or len(s) > MAX_NUMBER_CHARS:
        raise InputError(flag, f"expected {r.describe()}, got {_shown(text)}")
    try:
        value: int | float = int(s) if r.kind == "int" else float(s)
    except ValueError:
        raise InputError(flag, f"expected {r.describe()}, got {_shown(text)}") from None
    return check_number(value, r, flag)


def number_flag(r: Range):
    """An argparse ``type=`` for a number in ``r`` (argparse names the flag in its error)."""

    def parse(text: str) -> int | float:
        try:
            return parse_number(text, r, "")
        except InputError as e:
            raise argparse.ArgumentTypeError(e.message) from None

    parse.__name__ = r.kind  # argparse says "invalid int value" only when the type raises ValueError
    return parse


def check_text(value: str, flag: str) -> str:
    """A string flag's value: not empty, no NUL byte, not longer than :data:`MAX_TEXT_CHARS`."""
    if not value.strip():
        raise InputError(flag, "is empty; give a value (see --help for what it accepts)")
    if "\x00" in value:
        raise InputError(flag, "contains a NUL character")
    if len(value) > MAX_TEXT_CHARS:
        raise InputError(flag, f"is {len(value):,} characters long; at most {MAX_TEXT_CHARS:,} are accepted")
    return value


def check_text_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """:func:`check_text` on every string given to ``parser``'s flags and positionals (flags without a
    ``type`` or ``choices``), so no command treats an empty ``--vram ''`` as "not given"."""
    for action in parser._actions:
        if action.type is not None or action.choices is not None or action.nargs == 0:
            continue
        value = getattr(args, action.dest, None)
        if isinstance(value, str):
            longs = [o for o in action.option_strings if o.startswith("--")]
            flag = (longs or action.option_strings or [action.metavar or action.dest])[0]
            check_text(value, str(flag))


__all__ = [
    "Range", "TRAIN_RANGES", "FLAG_RANGES", "ARCH_RANGES", "MAX_NUMBER_CHARS", "MAX_TEXT_CHARS",
    "check_number", "parse_number", "number_flag", "check_text", "check_text_flags",
]  # fmt: skip
