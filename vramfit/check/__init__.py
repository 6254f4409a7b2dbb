"""Memory-regression checks for CI: named training configurations against a baseline and budgets.

A project lists the runs it cares about in ``vramfit.toml``::

    # Top-level keys are defaults for every configuration below.
    model = "llama-3.2-1b"
    budget = "8GB"            # required VRAM must stay at or below this (binary units: GB = GiB)
    tolerance = "2%"          # allowed move against the baseline ("2%" or 0.02); --tolerance overrides

    [configs.default]         # an empty table: the reference QLoRA recipe on the default model

    [configs.long-context]
    seq_len = 2048
    budget = "12GB"           # a configuration's own budget wins over --budget and the default

    [configs.mistral-on-3060]
    model = "mistral-7b"
    gpu = "rtx-3060"          # a card (gpu, vram, cuda_context, display_reserve): its bf16 support
                              # and CUDA context enter the estimate; with no budget anywhere, the
                              # card's usable memory is the budget
    rank = 64
    targets = ["all-linear"]  # or "q_proj,v_proj"

The other keys of a configuration are the fields of :class:`vramfit.config.TrainConfig` (the
``vramfit estimate`` flags with ``_`` for ``-``): method, quant, double_quant, load_dtype,
compute_dtype, rank, alpha, dropout, targets, seq_len, batch_size, grad_accum,
gradient_checkpointing, optimizer, attn, kbit_upcast. ``expandable_segments = true|false`` (in a
configuration or at the top level) says which caching allocator the run uses; without it the check reads
the environment as the installed torch would (``PYTORCH_CUDA_ALLOC_CONF`` / ``PYTORCH_ALLOC_CONF``, as
``vramfit estimate`` does), and the probe mode runs the probe under it. The baseline records the allocator
with each configuration. Unknown keys are errors naming the table.

Budget precedence: a configuration's ``budget`` > ``--budget`` > the top-level ``budget`` > the
card's usable memory. The compared quantity is ``required_vram_bytes`` (what decides a fit).

The baseline (``vramfit-baseline.json``) is written only by ``vramfit check --update``. It records
the mode (estimate or probe), the versions that produced it (vramfit; for probes also the GPU,
driver, CUDA, torch, transformers, peft, bitsandbytes, accelerate) and, per configuration, the
model, the resolved configuration and the memory numbers, so that a move can name its likely cause.
"""

from vramfit.check.baseline import (
    BASELINE_FORMAT,
    Baseline,
    BaselineEntry,
    load_baseline,
    versions,
    write_baseline,
)
from vramfit.check.configfile import (
    CONFIG_KEYS,
    DEFAULT_TOLERANCE,
    CheckConfig,
    CheckFile,
    load_check_file,
    parse_check_toml,
    parse_tolerance,
)
from vramfit.check.core import (
    FAILING,
    IMPROVED,
    NEW,
    OK,
    OVER_BUDGET,
    REGRESSION,
    CheckResult,
    ConfigCheck,
    check,
)
from vramfit.check.junit import junit_xml
from vramfit.check.measure import measure_estimate, measure_probe, measured_record, measurement_from_probe

__all__ = [
    "check", "CheckResult", "ConfigCheck", "CheckConfig", "CheckFile", "Baseline", "BaselineEntry",
    "parse_check_toml", "load_check_file", "parse_tolerance", "load_baseline", "write_baseline", "versions",
    "junit_xml", "measure_estimate", "measure_probe", "measurement_from_probe", "measured_record", "DEFAULT_TOLERANCE",
    "BASELINE_FORMAT", "CONFIG_KEYS", "OK", "NEW", "IMPROVED", "REGRESSION", "OVER_BUDGET", "FAILING",
]  # fmt: skip
