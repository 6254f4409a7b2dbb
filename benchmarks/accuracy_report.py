"""vramfit, fitcheck-llm and `accelerate estimate-memory` against the committed probe measurements.

    python -m benchmarks.accuracy_report [--results benchmarks/results/probe] [--out-dir reports]

Writes OUT/accuracy.md and OUT/accuracy.html (self-contained: inline CSS and SVG, no script) from the
measured runs in RESULTS/h100_*.json. Runs on a CPU in seconds; nothing is measured here.

For every measured run, side by side with the measurement:

* **vramfit**: ``vramfit.estimate.estimate`` for the run's configuration on the card the run used.
* **accelerate**: what ``accelerate estimate-memory MODEL --dtypes D`` prints under "Training using Adam",
  computed by accelerate's own ``gather_data`` (the model built on the meta device from the registry's
  config.json, the Hub metadata call replaced by that config). D is the run's dtype: float32 / float16 for
  16-bit and 32-bit loads (accelerate has no bfloat16 row), int4 / int8 for quantized ones, for which
  accelerate prints N/A. A second series reads its float16 row for every run, what a user left with N/A
  would look at.
* **fitcheck-llm**: ``fitcheck MODEL --json`` with the run's configuration mapped onto its flags (what
  could not be mapped is listed per run), config.json read from a local Hugging Face cache, offline.

Compared quantities: ``peak_allocated_bytes``, and the memory required excluding the CUDA context
(``allocator_required_bytes`` + paged optimizer state; the grid runs shared the GPU, so their context was
not measured). Without ``--find-min`` the measured requirement is the uncapped ``peak_reserved_bytes``,
which equalled it in every run where find-min ran.

The allocator slack of vramfit (``REQUIRED_SLACK`` in estimate/allocator.py: a + b x fp32 logits + c x one
dequantized weight, ``benchmarks/slack_fit.py``) is fitted on the runs where --find-min measured the
requirement; the report refits it leaving one model family out at a time and gives the error on it.
"""

from __future__ import annotations

from benchmarks import accuracy, slack_fit
from benchmarks.accuracy import render_html, render_markdown
from benchmarks.accuracy.fit import (
    bound_errors,
    leave_one_family_out,
    reserved_points,
    shipped_slack,
    slack_points,
)
from benchmarks.accuracy.peers import add_accelerate, add_fitcheck, fitcheck_args
from benchmarks.accuracy.provenance import provenance, tool_versions
from benchmarks.accuracy.report import Report, build
from benchmarks.accuracy.runs import (
    FAMILY,
    QUANTITIES,
    RESULTS,
    ROOT,
    TOOLS,
    Run,
    add_vramfit,
    exact_runs,
    load_runs,
    merge_repeats,
)
from benchmarks.accuracy.summary import Summary, summarize

__all__ = [  # what tests/test_accuracy_report.py and other callers use
    "FAMILY",
    "QUANTITIES",
    "RESULTS",
    "ROOT",
    "TOOLS",
    "Report",
    "Run",
    "Summary",
    "add_accelerate",
    "add_fitcheck",
    "add_vramfit",
    "bound_errors",
    "build",
    "exact_runs",
    "fitcheck_args",
    "leave_one_family_out",
    "load_runs",
    "main",
    "merge_repeats",
    "provenance",
    "render_html",
    "render_markdown",
    "reserved_points",
    "shipped_slack",
    "slack_fit",
    "slack_points",
    "summarize",
    "tool_versions",
]


def main(argv: list[str] | None = None) -> int:
    return accuracy.main(argv, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())
