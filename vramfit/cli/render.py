"""Rich rendering shared by the commands: breakdown tables, verdicts, warnings."""

from __future__ import annotations

import os
import sys

from vramfit.catalog import METHODS, QUANTS
from vramfit.estimate.result import COMPONENTS, Estimate
from vramfit.report.verdict import VerdictText, format_range, verdict_text
from vramfit.units import format_bytes

COMPONENT_HELP = {
    "weights": "base model parameters",
    "quant_state": "bitsandbytes absmax / scales",
    "adapters": "LoRA A and B",
    "gradients": "grads of trainable parameters",
    "optimizer": "optimizer state (in PyTorch)",
    "activations": "kept for backward",
    "logits": "logits, fp32 loss, lm_head copy",
    "temporaries": "dequantized weights, workspaces",
}

# Output into a file or a pipe is not wrapped at 80 columns (rich's default off a terminal): logs and
# files are read in wide windows, and a wrapped table or warning is hard to grep.
WIDE_COLUMNS = 160


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() or os.environ.get("COLUMNS") else WIDE_COLUMNS
    return Console(stderr=stderr, highlight=False, width=wide)


def describe_config(cfg: dict) -> str:
    parts = [cfg["method"]]
    if METHODS[cfg["method"]].lora:
        parts.append(f"r={cfg['rank']} on {','.join(cfg['targets'])}")
    quant = cfg["quant"]
    if quant != "none":
        parts.append(
            quant + (" + double quant" if cfg["double_quant"] and QUANTS[quant].double_quant_applies else "")
        )
    parts += [
        f"{cfg['compute_dtype']} compute",
        f"seq {cfg['seq_len']} x batch {cfg['batch_size']}"
        + (f" x accum {cfg['grad_accum']}" if cfg["grad_accum"] > 1 else ""),
        "checkpointing" if cfg["gradient_checkpointing"] else "no checkpointing",
        cfg["optimizer"],
        cfg["attn"],
    ]
    return ", ".join(parts)


def estimate_table(est: Estimate):
    from rich.table import Table

    t = Table(title=f"{est.model}: peak in {est.peak_phase}", title_justify="left", show_footer=False)
    t.add_column("component")
    t.add_column("bytes at peak", justify="right")
    t.add_column("share", justify="right")
    t.add_column("what it is", style="dim")
    total = est.peak_allocated_bytes or 1
    for c in COMPONENTS:
        v = getattr(est.breakdown, c)
        t.add_row(c, format_bytes(v), f"{v / total:.0%}", COMPONENT_HELP[c])
    t.add_section()
    t.add_row(
        "[bold]peak allocated[/]",
        f"[bold]{format_bytes(est.peak_allocated_bytes)}[/]",
        "",
        "torch.cuda.max_memory_allocated",
    )
    t.add_row(
        "allocator required",
        format_range(est.allocator_required_low, est.allocator_required_bytes),
        "",
        "smallest allocator cap that succeeds (low end: large tensors placed well)",
    )
    t.add_row("peak reserved", format_bytes(est.peak_reserved_bytes), "", "uncapped caching allocator")
    t.add_row("CUDA context", format_bytes(est.non_torch.cuda_context), "", "outside PyTorch")
    if est.non_torch.paged_optimizer:
        t.add_row("paged optimizer", format_bytes(est.non_torch.paged_optimizer), "", "CUDA managed memory")
    t.add_row(
        "[bold]required VRAM[/]",
        f"[bold]{format_range(est.required_vram_low_bytes, est.required_vram_bytes)}[/]",
        "",
        "allocator required + outside PyTorch",
    )
    return t


_STATUS_STYLE = {"fits": "bold green", "may fit": "bold yellow", "does not fit": "bold red"}


def rich_verdict(words: VerdictText) -> str:
    """The shared verdict sentence (vramfit.report.verdict) with its status word coloured."""
    from rich.markup import escape

    style = _STATUS_STYLE[words.status]
    return f"[{style}]{words.status}[/] {escape(words.detail)}"


def verdict_line(est: Estimate) -> str | None:
    return rich_verdict(verdict_text(est.verdict)) if est.verdict is not None else None


def print_warnings(con, warnings, verbose: bool = False) -> None:
    """The warnings of a run; the estimator's notes about itself (:func:`vramfit.estimate.accuracy_notes`)
    come last, as one short line unless ``verbose``: the warnings about this card and run come first."""
    from vramfit.estimate import accuracy_notes

    notes = set(accuracy_notes())
    own = [w for w in warnings if w in notes]
    for w in [w for w in warnings if w not in notes] + (own if verbose else []):
        con.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    if own and not verbose:
        stack = " (the installed libraries differ from the measured ones)" if len(own) > 1 else ""
        con.print(
            f"[dim]note: the requirement includes a fitted allowance for the caching allocator{stack}; "
            "--verbose (or --json) gives its constants and measured error[/]",
            soft_wrap=True,
        )
