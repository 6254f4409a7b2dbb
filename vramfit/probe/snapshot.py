"""PyTorch memory snapshots: the one module that touches the private ``torch.cuda.memory._*`` API.

What it uses, and what it checks first (the API is private and has changed between releases):

- ``torch.cuda.memory._record_memory_history(enabled, context, stacks, max_entries)`` (torch >= 2.1;
  older releases had ``trace_alloc_max_entries``; both signatures are handled);
- ``torch.cuda.memory._snapshot()``: ``{"segments": [...], "device_traces": [[TraceEntry, ...]]}``;
- ``torch._C._cuda_attach_out_of_memory_observer``: the exact size of a failed allocation.

The raw snapshot is saved as a pickle (what ``torch.cuda.memory._dump_snapshot`` writes, loadable at
https://pytorch.org/memory_viz) and converted into vramfit's own compact JSON (:func:`compact`):
frames are interned, and each trace event is ``[action, addr, size, stack_id, time_us]``.
"""

from __future__ import annotations

import inspect
import linecache
import pickle

# Innermost Python frames kept per allocation: enough to see the loss, lm_head and bitsandbytes frames
# and the probe's phase markers, while keeping a snapshot of a 7B model to a few MB.
MAX_FRAMES = 16
COMPACT_VERSION = 2  # 2: events carry their CUDA stream (6th column)
# Trace actions kept in the compact form (oom and snapshot markers carry no block).
ACTIONS = ("alloc", "free_requested", "free_completed", "segment_alloc", "segment_free", "oom")


def unsupported_reason() -> str | None:
    """None when the installed torch can record memory history on CUDA, else why not."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    mem = torch.cuda.memory
    for name in ("_record_memory_history", "_snapshot"):
        if not hasattr(mem, name):
            return f"torch {torch.__version__} has no torch.cuda.memory.{name}"
    return None


def start(max_entries: int) -> None:
    """Record every allocator event with its Python stack, keeping the last ``max_entries``."""
    import torch

    record = torch.cuda.memory._record_memory_history
    params = inspect.signature(record).parameters
    if "max_entries" in params:
        record(enabled="all", context="all", stacks="python", max_entries=max_entries)
    else:  # torch 2.0: the legacy signature
        record(True, trace_alloc_max_entries=max_entries, trace_alloc_record_context=True)


def stop() -> None:
    import torch

    record = torch.cuda.memory._record_memory_history
    if "max_entries" in inspect.signature(record).parameters:
        record(enabled=None)
    else:
        record(False)


def take() -> dict:
    """The allocator's snapshot: segments with their blocks now, and the recorded trace."""
    import torch

    return torch.cuda.memory._snapshot()


def save_pickle(snapshot: dict, path: str) -> None:
    """What ``_dump_snapshot`` writes: drag the file onto https://pytorch.org/memory_viz."""
    from vramfit.userfiles import write_output

    write_output(path, pickle.dumps(snapshot), "--snapshot")  # atomic: an interrupted run keeps the old file


def attach_oom_observer(callback) -> bool:
    """Call ``callback(requested_bytes)`` when an allocation fails; False when torch cannot."""
    import torch

    attach = getattr(torch._C, "_cuda_attach_out_of_memory_observer", None)
    if attach is None:
        return False

    def observer(device, alloc, device_allocated, device_free):  # torch's signature
        callback(int(alloc))

    attach(observer)
    return True


def _short_filename(path: str) -> str:
    """Portable file names: from the package on ('transformers/models/llama/modeling_llama.py')."""
    for anchor in ("site-packages/", "dist-packages/"):
        if anchor in path:
            return path.split(anchor, 1)[1]
    if "/vramfit/" in path:
        return "vramfit/" + path.rsplit("/vramfit/", 1)[1]
    return path.rsplit("/", 1)[-1] if path.startswith("/") else path


class _Interner:
    def __init__(self) -> None:
        self.frames: list[list] = []
        self.frame_ids: dict[tuple, int] = {}
        self.stacks: list[list[int]] = []
        self.stack_ids: dict[tuple, int] = {}

    def frame(self, f: dict) -> int:
        key = (f.get("filename", ""), int(f.get("line", 0)), f.get("name", ""))
        fid = self.frame_ids.get(key)
        if fid is None:
            # NOTE: the source line is stored with the frame, because attribution reads it (lm_head, logits)
            # and the file may differ (or be absent) where the snapshot is analysed.
            code = linecache.getline(key[0], key[1]).strip() if key[0] and key[1] > 0 else ""
            fid = self.frame_ids[key] = len(self.frames)
            self.frames.append([_short_filename(key[0]), key[1], key[2], code])
        return fid

    def stack(self, frames: list[dict] | None) -> int:
        if not frames:
            return -1
        key = tuple(self.frame(f) for f in frames[:MAX_FRAMES])
        sid = self.stack_ids.get(key)
        if sid is None:
            sid = self.stack_ids[key] = len(self.stacks)
            self.stacks.append(list(key))
        return sid


def compact(snapshot: dict, device: int = 0) -> dict:
    """vramfit's JSON form of a snapshot of ``device``: end-state blocks and the trace, frames interned.

    ``end_blocks``: ``[addr, size, stack_id]`` of every block allocated when the snapshot was taken;
    ``segments_end``: ``[addr, size]`` of the device's segments then (to size blocks handed out whole);
    ``reserved_end``: the sum of the device's segments then; ``events``: the trace, oldest first.
    """
    it = _Interner()
    end_blocks, segments_end, reserved_end = [], [], 0
    for seg in snapshot.get("segments", []):
        if seg.get("device", device) != device:
            continue
        reserved_end += int(seg["total_size"])
        segments_end.append([int(seg["address"]), int(seg["total_size"])])
        for b in seg.get("blocks", []):
            if b.get("state") == "active_allocated":
                end_blocks.append([int(b["address"]), int(b["size"]), it.stack(b.get("frames"))])
    traces = snapshot.get("device_traces", [])
    events = []
    for e in traces[device] if device < len(traces) else []:
        action = e.get("action")
        if action not in ACTIONS:
            continue
        events.append([action, int(e.get("addr", 0)), int(e.get("size", 0)), it.stack(e.get("frames")),
                       int(e.get("time_us", 0)), int(e.get("stream", 0) or 0)])  # fmt: skip
    return {
        "version": COMPACT_VERSION,
        "frames": it.frames,
        "stacks": it.stacks,
        "end_blocks": end_blocks,
        "segments_end": segments_end,
        "reserved_end": reserved_end,
        "events": events,
    }
