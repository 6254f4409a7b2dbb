"""Phases of a probe run and their memory peaks (torchtune's ``training/memory.py`` is the model).

::

    load | prepare | forward (step 1) | backward (step 1) | optimizer (step 1) | forward (steady) | ...
         ^ reset_peak_memory_stats() at every boundary; the phase's peak is read at its end

Boundaries come from a ``TrainerCallback`` (step begin, pre-optimizer step, step end) and from hooks on
the trained model (a forward pre-hook starts the forward, the forward's return starts the backward: the
causal-LM loss is computed inside the forward). When a snapshot is recorded, every boundary also
allocates and frees a tiny *marker* tensor from :func:`_trace_marker`, so the boundary shows up in the
allocator's trace at its exact position, and records which live tensors are parameters, quantization
state, gradients or optimizer state at that moment (``identity``), for :mod:`vramfit.probe.attribution`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vramfit.estimate.result import PHASES
from vramfit.probe.result import PhaseMeasurement

MARKER_FUNCTION = "_trace_marker"


def _trace_marker(device) -> None:
    """Allocate and free 1 byte (512 with rounding): a recognisable event in the allocator trace."""
    import torch

    t = torch.empty(1, dtype=torch.uint8, device=device)
    del t


def step_label(step: int) -> str:
    return "step 1" if step <= 1 else "steady"


class PhaseTracker:
    """Per-phase peak allocated / reserved bytes and seconds; ``None`` memory on the CPU."""

    def __init__(self, device: str, on_event: Callable[[dict], None] | None = None,
                 identity: Callable[[], dict[int, str]] | None = None) -> None:  # fmt: skip
        self.device = device
        self.cuda = device.startswith("cuda")
        self.on_event = on_event
        self.identity = identity  # set once the model exists; None: no markers (no snapshot recorded)
        self.current: str | None = None
        self._t0 = 0.0
        self._peaks: dict[str, list] = {}  # name -> [allocated, reserved, seconds]
        self.markers: list[dict] = []  # [{phase, identity: {addr: component}}] in trace order

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def _read_peaks(self) -> tuple[int | None, int | None]:
        if not self.cuda:
            return None, None
        import torch

        return int(torch.cuda.max_memory_allocated()), int(torch.cuda.max_memory_reserved())

    def _close(self) -> None:
        if self.current is None:
            return
        self._sync()
        alloc, reserved = self._read_peaks()
        seconds = time.perf_counter() - self._t0
        rec = self._peaks.setdefault(self.current, [alloc, reserved, 0.0])
        if alloc is not None:
            rec[0], rec[1] = max(rec[0], alloc), max(rec[1], reserved)
        rec[2] += seconds

    def begin(self, name: str) -> None:
        """End the current phase and start ``name`` (the same name again accumulates into it)."""
        self._close()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        self.current = name
        self.mark()
        self._t0 = time.perf_counter()
        if self.on_event:
            self.on_event({"event": "phase", "phase": name})

    def mark(self) -> None:
        """Put a marker for the current phase into the allocator trace, with the live tensors' identity."""
        if self.identity is None or not self.cuda:
            return
        self.markers.append({"phase": self.current, "identity": self.identity()})
        _trace_marker(self.device)

    def finish(self) -> None:
        self._close()
        self.current = None

    def phases(self) -> tuple[PhaseMeasurement, ...]:
        order = {p: i for i, p in enumerate(PHASES)}
        names = sorted(self._peaks, key=lambda n: order.get(n, len(order)))
        return tuple(PhaseMeasurement(n, *self._peaks[n][:2], round(self._peaks[n][2], 4)) for n in names)


def make_callback(tracker: PhaseTracker, model) -> object:
    """A TrainerCallback (plus forward hooks on ``model``) that drives ``tracker`` through the steps."""
    from transformers import TrainerCallback

    class PhaseCallback(TrainerCallback):
        def __init__(self) -> None:
            self.step = 0
            self.step_seconds: list[float] = []
            self._t_step = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.step = state.global_step + 1
            tracker._sync()
            self._t_step = time.perf_counter()
            if tracker.on_event:
                tracker.on_event({"event": "step", "step": self.step, "of": args.max_steps})

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            tracker.begin(f"optimizer ({step_label(self.step)})")

        def on_step_end(self, args, state, control, **kwargs):
            tracker._sync()
            self.step_seconds.append(time.perf_counter() - self._t_step)
            tracker.mark()  # optimizer state now exists: record its identity

    cb = PhaseCallback()

    def pre_forward(module, args, kwargs=None):
        if module.training and cb.step:
            tracker.begin(f"forward ({step_label(cb.step)})")

    def post_forward(module, args, output):
        if module.training and cb.step:
            tracker.begin(f"backward ({step_label(cb.step)})")

    model.register_forward_pre_hook(pre_forward)
    model.register_forward_hook(post_forward)
    return cb
