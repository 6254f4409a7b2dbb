"""Split the live memory at the measured peak into the estimator's 8 components. Pure Python, no torch.

Input: a compact snapshot (:func:`vramfit.probe.snapshot.compact`) and the probe's markers (each a
phase name and the identity of the tensors alive at that moment: ``{address: component}``).

1. Replay the allocator trace. The live blocks before the first event are the blocks alive at the end
   minus those allocated in the trace plus those freed in it; then walk forward, keeping the allocated
   total (an allocation counts from ``alloc`` to ``free_requested``, as the allocator's own counter).
   The peak is the event after which the total is largest.
2. Name every block alive at the peak, first rule that applies:

   ============================== ==================================================================
   tensor identity at a marker     the block was alive at a marker (between its alloc and its free) and
                                   its address was a parameter (weights / adapters), bitsandbytes quant
                                   state, a ``.grad`` or optimizer state then
   allocation frames               loss (``loss_utils``, cross_entropy) or the ``lm_head`` line:
                                   logits; bitsandbytes code (dequantize, workspaces): temporaries
   survives to the end             not a tensor above but never freed: library workspaces and caches
                                   (cuBLAS): temporaries
   logits-sized, no Python frame   allocated by the autograd engine (no Python stack) with exactly the
                                   size of batch x seq x vocab elements: the logits' gradient: logits
   allocated in forward/backward   saved activations, recomputed layers, activation gradients
   anything else                   temporaries
   ============================== ==================================================================

The components sum to the allocated total at the peak; :func:`attribute` asserts it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from vramfit.allocator.constants import pool_of, round_size, should_split
from vramfit.estimate.result import COMPONENTS

MARKER_FUNCTION = "_trace_marker"  # vramfit.probe.phases._trace_marker
LOSS_FILES = ("transformers/loss/", "torch/nn/functional.py")
LOSS_NAMES = ("cross_entropy", "ForCausalLMLoss", "fixed_cross_entropy", "nll_loss", "log_softmax")


@dataclass
class Block:
    addr: int
    size: int
    alloc_index: int  # -1: allocated before the trace
    stack: int  # stack id, -1: no Python frames
    free_index: int | None = None  # None: alive at the end of the trace


@dataclass
class Peak:
    index: int  # trace event after which the allocated total is largest (-1: before the first event)
    allocated_bytes: int
    reserved_bytes: int  # reserved at that moment
    max_reserved_bytes: int  # largest reserved over the trace
    breakdown: dict[str, int]
    phase: str | None
    blocks: list[tuple[int, int, str]] = field(default_factory=list)  # (addr, size, component)
    timeline: list[dict] = field(default_factory=list)


def _marker_positions(snap: dict) -> list[int]:
    """Trace indices of the probe's marker allocations, oldest first."""
    stacks, frames = snap["stacks"], snap["frames"]
    marker_stacks = {sid for sid, st in enumerate(stacks) if st and frames[st[0]][2] == MARKER_FUNCTION}
    return [i for i, e in enumerate(snap["events"]) if e[0] == "alloc" and e[3] in marker_stacks]


def block_size(requested: int) -> int:
    """What the allocator's counters count for a request: rounded up to 512 bytes, at least 512.

    The trace records the requested size; c10 ``CUDACachingAllocator::round_size`` rounds it (without
    ``roundup_power2_divisions``). A large block handed out whole is sized by :class:`_Segments`.
    """
    return round_size(requested)


class _Segments:
    """The allocator's segments and the blocks active in them, to size blocks handed out whole.

    A free block is the gap from an address to the next active block (free neighbours coalesce), so a
    large request at ``addr`` got the free block ``[addr, next active block or segment end)``; when the
    rest is too small to split (``should_split``: at most kSmallSize in the large pool) the allocator
    handed out, and counts as allocated, the whole gap.
    """

    def __init__(self, segments: dict[int, int], active: list[int]) -> None:
        self.size = dict(segments)
        self.starts = sorted(segments)
        self.active = sorted(active)

    def add_segment(self, addr: int, size: int) -> None:
        self.size[addr] = size
        bisect.insort(self.starts, addr)

    def remove_segment(self, addr: int) -> None:
        if self.size.pop(addr, None) is not None:
            self.starts.remove(addr)

    def activate(self, addr: int) -> None:
        bisect.insort(self.active, addr)

    def deactivate(self, addr: int) -> None:
        j = bisect.bisect_left(self.active, addr)
        if j < len(self.active) and self.active[j] == addr:
            del self.active[j]

    def allocated_size(self, addr: int, rounded: int) -> int:
        j = bisect.bisect_right(self.starts, addr) - 1
        if pool_of(rounded) == "small" or j < 0:
            return rounded
        seg_end = self.starts[j] + self.size[self.starts[j]]
        if addr >= seg_end:
            return rounded
        k = bisect.bisect_right(self.active, addr)
        end = min(self.active[k], seg_end) if k < len(self.active) else seg_end
        free = end - addr
        return free if free >= rounded and not should_split(rounded, free - rounded) else rounded


def _initial_state(snap: dict) -> tuple[dict[int, tuple[int, int]], int, dict[int, int]]:
    """Before the first event: live blocks ({addr: (size, stack)}), reserved total, segments {addr: size}."""
    live = {addr: (block_size(size), stack) for addr, size, stack in snap["end_blocks"]}
    segments = {addr: size for addr, size in snap.get("segments_end", [])}
    reserved = snap["reserved_end"]
    for action, addr, size, *_rest in reversed(snap["events"]):
        if action == "alloc":
            live.pop(addr, None)
        elif action == "free_requested":
            live[addr] = (block_size(size), -1)
        elif action == "segment_alloc":
            reserved -= size
            segments.pop(addr, None)
        elif action == "segment_free":
            reserved += size
            segments[addr] = size
    return live, reserved, segments


def replay(snap: dict) -> tuple[list[Block], list[int], list[int], int]:
    """(blocks, allocated total after each event, reserved after each event, allocated before event 0)."""
    live0, reserved, segments = _initial_state(snap)
    # without segment data (older compact files) blocks are sized by rounding alone
    segs = _Segments(segments, list(live0)) if "segments_end" in snap else None
    end_stack = {addr: stack for addr, _size, stack in snap["end_blocks"]}
    blocks: list[Block] = []
    current: dict[int, Block] = {}
    for addr, (size, stack) in live0.items():
        b = Block(addr, size, -1, stack if stack >= 0 else end_stack.get(addr, -1))
        blocks.append(b)
        current[addr] = b
    total0 = total = sum(b.size for b in blocks)
    allocated, reserved_series = [], []
    for i, (action, addr, size, stack, *_rest) in enumerate(snap["events"]):
        if action == "alloc":
            size = block_size(size)
            if segs is not None:
                size = segs.allocated_size(addr, size)
                segs.activate(addr)
            b = Block(addr, size, i, stack)
            blocks.append(b)
            current[addr] = b
            total += size
        elif action == "free_requested":
            b = current.pop(addr, None)
            if b is not None:
                b.free_index = i
                total -= b.size
        elif action == "free_completed":
            if segs is not None:
                segs.deactivate(addr)
        elif action == "segment_alloc":
            reserved += size
            if segs is not None:
                segs.add_segment(addr, size)
        elif action == "segment_free":
            reserved -= size
            if segs is not None:
                segs.remove_segment(addr)
        allocated.append(total)
        reserved_series.append(reserved)
    return blocks, allocated, reserved_series, total0


def _phase_at(index: int, marker_idx: list[int], markers: list[dict]) -> str | None:
    """Phase of the last marker at or before ``index`` (markers are aligned with the trace from the end)."""
    phase = None
    for pos, m in zip(marker_idx, markers, strict=False):
        if pos > index:
            break
        phase = m["phase"]
    return phase


def _frame_component(stack: int, snap: dict) -> str | None:
    if stack < 0:
        return None
    for fid in snap["stacks"][stack]:
        filename, _line, name, code = snap["frames"][fid]
        if any(s in filename for s in LOSS_FILES) and (name in LOSS_NAMES or "loss" in filename):
            return "logits"
        if filename.startswith("transformers/models/") and ("lm_head" in code or "logits" in code):
            return "logits"
        if filename.startswith("bitsandbytes/"):
            return "temporaries"
    return None


def _alive_at(b: Block, i: int) -> bool:
    return b.alloc_index < i and (b.free_index is None or i < b.free_index)


def _component(
    b: Block, snap: dict, marked: list[tuple[int, dict]], markers: list[dict], peak_i: int, logits_sizes: set
) -> str:
    """The component of a block alive at the peak: the first rule of the module docstring that applies.
    ``marked``: (trace position, identity) of every marker."""
    for m_pos, ident in sorted(marked, key=lambda x: abs(x[0] - peak_i)):
        if _alive_at(b, m_pos) and b.addr in ident:
            return ident[b.addr]
    by_frame = _frame_component(b.stack, snap)
    if by_frame:
        return by_frame
    if b.free_index is None:
        return "temporaries"
    if b.stack < 0 and b.size in logits_sizes:
        return "logits"
    phase = _phase_at(b.alloc_index, [m for m, _ in marked], markers) or ""
    if phase.startswith(("forward", "backward")):
        return "activations"
    return "temporaries"


def attribute(snap: dict, markers: list[dict], logits_elements: int, max_points: int = 2000) -> Peak:
    """The live allocated memory at the trace's peak, by component (see the module docstring).

    ``markers``: the probe's markers, in order ({phase, identity}); the trace may have dropped early
    events (bounded history), so the last markers are matched with the last marker events.
    ``logits_elements``: batch x seq x vocab, for the logits-gradient rule.
    """
    blocks, allocated, reserved, total0 = replay(snap)
    pos = _marker_positions(snap)
    markers = markers[len(markers) - len(pos) :] if len(pos) <= len(markers) else markers
    pos = pos[len(pos) - len(markers) :]
    peak_i = max(range(len(allocated)), key=allocated.__getitem__) if allocated else -1
    peak_total = allocated[peak_i] if allocated else total0
    if peak_total < total0:
        peak_i, peak_total = -1, total0
    logits_sizes = {round_size(logits_elements * k) for k in (2, 4)}  # NOTE: bf16/fp16 or fp32 logits
    ids = [{int(a): c for a, c in m["identity"].items()} for m in markers]
    marked = list(zip(pos, ids, strict=True))

    breakdown = dict.fromkeys(COMPONENTS, 0)
    named = []
    for b in blocks:
        if b.alloc_index <= peak_i and (b.free_index is None or b.free_index > peak_i):
            c = _component(b, snap, marked, markers, peak_i, logits_sizes)
            breakdown[c] += b.size
            named.append((b.addr, b.size, c))
    assert sum(breakdown.values()) == peak_total, (sum(breakdown.values()), peak_total)
    return Peak(
        index=peak_i,
        allocated_bytes=peak_total,
        reserved_bytes=reserved[peak_i]
        if peak_i >= 0
        else (reserved[0] if reserved else snap["reserved_end"]),
        max_reserved_bytes=max(reserved) if reserved else snap["reserved_end"],
        breakdown=breakdown,
        phase=_phase_at(peak_i, pos, markers),
        blocks=named,
        timeline=timeline(snap, allocated, pos, markers, max_points),
    )


def timeline(
    snap: dict, allocated: list[int], pos: list[int], markers: list[dict], max_points: int
) -> list[dict]:
    """[{t_ms, allocated_bytes, phase}] downsampled to at most ``max_points``, keeping each bucket's maximum."""
    events = snap["events"]
    if not events:
        return []
    t0 = events[0][4]
    n = len(events)
    bucket = max(1, -(-n // max_points))
    out = []
    phase_of = {}
    cur, k = None, 0
    for i in range(n):  # phase of every event, one pass
        while k < len(pos) and pos[k] <= i:
            cur = markers[k]["phase"]
            k += 1
        phase_of[i] = cur
    for start in range(0, n, bucket):
        i = max(range(start, min(n, start + bucket)), key=allocated.__getitem__)
        out.append(
            {
                "t_ms": round((events[i][4] - t0) / 1000, 3),
                "allocated_bytes": allocated[i],
                "phase": phase_of[i],
            }
        )
    return out


# ---- where the reserved memory came from ----------------------------------------------------------------

MAX_SEGMENTS_LOGGED = 3000


def _caller(stack: int, snap: dict) -> str:
    """``file:function`` of the innermost frame outside torch itself (the library code that asked)."""
    if stack < 0:
        return "(no Python frame)"
    frames = [snap["frames"][fid] for fid in snap["stacks"][stack]]
    for filename, _line, name, _code in frames:
        if not filename.startswith("torch/"):
            return f"{filename}:{name}"
    return f"{frames[0][0]}:{frames[0][2]}" if frames else "(no Python frame)"


def segment_log(snap: dict, markers: list[dict]) -> list[list]:
    """Every segment the allocator reserved (``cudaMalloc``) during the trace, oldest first:
    ``[phase, segment bytes, bytes of the request that needed it, the code that asked]``.

    The data behind the allocator's slack (reserved - allocated): which requests found no cached block
    to reuse, in which phase. A segment freed by an out-of-memory retry is logged with a negative size.
    """
    events = snap["events"]
    pos = _marker_positions(snap)
    markers = markers[len(markers) - len(pos) :] if len(pos) <= len(markers) else markers
    pos = pos[len(pos) - len(markers) :]
    out: list[list] = []
    for i, (action, _addr, size, *_rest) in enumerate(events):
        if action not in ("segment_alloc", "segment_free"):
            continue
        if len(out) >= MAX_SEGMENTS_LOGGED:
            break
        trigger, caller = None, ""
        if action == "segment_alloc":
            for nxt in events[i + 1 : i + 4]:  # the allocation served from the new segment follows it
                if nxt[0] == "alloc":
                    trigger, caller = nxt[2], _caller(nxt[3], snap)
                    break
        out.append(
            [_phase_at(i, pos, markers), size if action == "segment_alloc" else -size, trigger, caller]
        )
    return out
