"""The sentences that state a verdict: one home for rich (the CLI), HTML and Markdown.

Each renderer styles the status word its own way (colour, banner class) and prints the rest as is, so
the three state the same figures: the requirement's range, the card's usable memory, the headroom at
the high end when it fits, and the shortfall at the low end (and at the high end) when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vramfit.memory import Verdict, VerdictStatus
from vramfit.units import format_bytes as fb

if TYPE_CHECKING:
    from vramfit.probe.result import Measured, Oom


def format_range(low: int, high: int) -> str:
    """'4.05-4.56 GiB', or one size when the two are equal."""
    if low >= high:
        return fb(high)
    lo, hi = fb(low).split(), fb(high).split()
    if lo[1] == hi[1]:
        return f"{lo[0]}-{hi[0]} {hi[1]}"
    return f"{fb(low)}-{fb(high)}"


@dataclass(frozen=True)
class VerdictText:
    """A verdict as words: ``status`` (styled by the renderer) and the sentence after it."""

    status: VerdictStatus
    detail: str

    @property
    def plain(self) -> str:
        return f"{self.status} {self.detail}"


def card_words(v: Verdict) -> str:
    """'on rtx-3060 (12.00 GiB)' or 'on a 4.00 GiB card'."""
    return f"on {v.gpu} ({fb(v.capacity_bytes)})" if v.gpu else f"on a {fb(v.capacity_bytes)} card"


def _needs(v: Verdict) -> str:
    need = format_range(v.required_vram_low_bytes, v.required_vram_bytes)
    margin = f" + margin {fb(v.margin_bytes)}" if v.margin_bytes else ""
    return f"needs {need}{margin} of {fb(v.usable_bytes)} usable"


def verdict_text(v: Verdict, measured: bool = False) -> VerdictText:
    """The sentence of a verdict; ``measured``: the range comes from a probe's peaks, not an estimate."""
    head = f"{card_words(v)}: {_needs(v)}"
    if v.status == "fits":
        return VerdictText("fits", f"{head}, {fb(v.headroom_bytes)} headroom")
    short_high = fb(-v.headroom_bytes)
    if v.status == "may fit" and measured:
        return VerdictText(
            "may fit",
            f"{head}: the requirement lies between the run's peaks (short by {short_high} at the high end); "
            "`vramfit probe --find-min` measures it",
        )
    if v.status == "may fit":
        return VerdictText(
            "may fit",
            f"{head}: it fits only if the caching allocator places the logits well (short by {short_high} if "
            "not), which no estimate can tell; `vramfit probe --emulate-vram` runs it capped to this card",
        )
    if v.required_vram_low_bytes < v.required_vram_bytes:
        return VerdictText(
            "does not fit",
            f"{head}, short by {fb(v.short_at_best_bytes)} even at best ({short_high} at the high end)",
        )
    return VerdictText("does not fit", f"{head}, short by {short_high}")


def oom_words(oom: Oom, cap_bytes: int | None) -> str:
    """'out of memory in backward (step 1) while allocating 256.0 MiB under a cap of 5.20 GiB'."""
    what = f" while allocating {fb(oom.requested_bytes)}" if oom.requested_bytes else ""
    cap = f" under a cap of {fb(cap_bytes)}" if cap_bytes is not None else ""
    return f"out of memory in {oom.phase}{what}{cap}"


def probe_verdict_text(verdict: Verdict | None, m: Measured) -> VerdictText | None:
    """A probe's verdict: an out-of-memory run says where, otherwise its measured range on the card."""
    if m.oom is not None:
        where = f"{card_words(verdict)}: " if verdict else ""
        return VerdictText("does not fit", where + oom_words(m.oom, m.cap_bytes))
    return verdict_text(verdict, measured=True) if verdict else None


__all__ = ["VerdictText", "verdict_text", "probe_verdict_text", "oom_words", "card_words", "format_range"]
