"""reports/accuracy.md: the headline, how each number is obtained, and every table."""

from __future__ import annotations

import statistics

from . import replay, sensitivity
from .fit import bound_errors, shipped_slack, slack_text
from .report import Report
from .runs import TOOL_LABEL, TOOLS, exact_runs
from .summary import summarize
from .tables import (
    COMPONENT_HEAD,
    FAMILY_HEAD,
    HELD_OUT_HEAD,
    RANGE_HEAD,
    REPEAT_HEAD,
    RUN_HEAD,
    SUMMARY_HEAD,
    component_rows,
    family_rows,
    fitcheck_rows,
    gib,
    held_out_all,
    held_out_rows,
    pct,
    range_rows,
    repeat_rows,
    run_rows,
    segment_summary,
    simulation_rows,
    summary_rows,
)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def cell(x: str) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def headline(rep: Report) -> list[str]:
    out = []
    for t in TOOLS:
        p, q = rep.summary(t, "peak"), rep.summary(t, "required", exact_runs(rep.runs))
        if p is None:
            out.append(f"- **{TOOL_LABEL[t]}**: no estimate ({rep.problems.get(t.split('_')[0]) or 'N/A'}).")
            continue
        out.append(
            f"- **{TOOL_LABEL[t]}** ({p.n} runs): peak allocated median {pct(p.median)}, mean |error| "
            f"{p.mean_abs * 100:.1f} %, worst {pct(p.worst)}; required (the {q.n} find-min runs) median "
            f"{pct(q.median)}, mean |error| {q.mean_abs * 100:.1f} %, worst {pct(q.worst)}, under-estimated "
            f"in {q.under} of {q.n}."
        )
    return out


def method_notes(rep: Report) -> list[str]:
    n_fm = sum(r.required_source == "find-min" for r in rep.runs)
    n_eq = sum(
        r.required_source == "find-min"
        and r.result["measured"]["allocator_required_bytes"] == r.result["measured"]["peak_reserved_bytes"]
        for r in rep.runs
    )
    return [
        "- **Measured** (the probe, on the GPU): `peak_allocated_bytes` = `torch.cuda.max_memory_allocated()`; "
        "required excl. CUDA context = `allocator_required_bytes` (the smallest allocator cap with which the "
        "steps succeed, `--find-min`) + paged optimizer state"
        + (
            ". Where find-min did not run the uncapped `peak_reserved_bytes` stands in for it, an upper bound"
            if n_fm < len(rep.runs)
            else f", on all {n_fm} runs. The uncapped `peak_reserved_bytes` is only an upper bound of it"
        )
        + f": in {n_eq} of the {n_fm} runs with find-min the two were equal, in the others the requirement was "
        "lower (section below). "
        "The grid runs shared the GPU six at a time, so their CUDA context was not measured and no column "
        "includes one.",
        "- **vramfit**: `estimate(model, TrainConfig.from_json(config), card)` for the card the run used; "
        "required = `required_vram_bytes - non_torch.cuda_context`. Its peak allocated, weights, quantization "
        "state, adapters and optimizer state contain no constant fitted to these runs. **Its allocator slack "
        f"is fitted** ({slack_text(shipped_slack())}, `benchmarks/slack_fit.py`) on the find-min runs"
        + (" (and the reserved peaks of the others as upper bounds)" if n_fm < len(rep.runs) else "")
        + ", so its required column is in-sample there; refitted leaving one family out, its error is in its "
        "own section below.",
        '- **accelerate**: the "Training using Adam" figure of `accelerate estimate-memory`, computed by '
        "accelerate's own `gather_data` (model on the meta device via `AutoModel.from_config`, sizes from "
        "`calculate_maximum_sizes`). For `float16` it is 2 x the fp32 model size (Adam states), for `float32` "
        "4 x; for `int8` / `int4` accelerate prints N/A, so QLoRA and int8 runs have no figure in the "
        "run's-dtype column. It prices full fine-tuning with Adam of the base model (no lm_head unless "
        "tied), whatever the method, sequence or batch; the float16 row is what a user reads when the "
        "quantized row says N/A. Compared with both measured quantities.",
        "- **fitcheck-llm**: its CLI (`fitcheck MODEL --gpu h100 --json ...`, run in-process) with config.json "
        "from a local Hugging Face cache written from the registry, offline (`HF_HUB_OFFLINE=1`), so its "
        "parameter count is derived from config.json (the Hub's safetensors count cannot be fetched). "
        'Peak allocated = its total minus "overhead"; required = its total minus the CUDA-context part '
        "of that overhead (`base_context_mib` of the profile it used: "
        "500 MiB, its unmeasured default, on an H100).",
        f'- Errors are `predicted / measured - 1`: negative is an under-estimate (a "fits" that can run out '
        f"of memory). Refitted on all {len(rep.runs)} runs here, the slack would be {slack_text(rep.in_sample)}.",
        "- Runs of one configuration measured twice are counted once (the one with find-min); the repeats "
        "show how reproducible a measurement is (section below).",
    ]


def exact_headline(rep: Report) -> list[str]:
    ex = [r.error("vramfit", "required") for r in exact_runs(rep.runs)]
    bd = bound_errors(rep.runs)
    if not ex:
        return []
    s = summarize(ex)
    others = (
        f" On the other {len(bd)} runs only the uncapped reserved peak is known, an upper bound of the "
        f"requirement: vramfit is above it in {sum(e > 0 for e in bd)} (median {pct(statistics.median(bd))}), "
        "so it over-estimates those by at least that much."
        if bd
        else ""
    )
    return [
        f"- **vramfit allocator requirement on the {s.n} runs where `--find-min` measured it** (the slack is "
        f"fitted on these): median {pct(s.median)}, mean |error| {s.mean_abs * 100:.1f} %, from "
        f"{pct(min(ex))} to {pct(max(ex))}.{others}"
    ]


RANGE_TEXT = (
    "The requirement of one configuration moves by up to a logits-sized segment when its tensors change by "
    "a fraction of a percent: where the caching allocator places the logits decides "
    "(`python -m benchmarks.trace_sensitivity` replays recorded traces with every large request 0.3 % and "
    "1 % smaller and larger; `benchmarks/results/sensitivity/` has real runs a few tokens apart). So vramfit "
    "gives it as a range: `allocator_required_low_bytes` (estimated peak + a slack fitted as a floor: "
    "the greatest with which no find-min run of the other families needed less, `fit_low` in "
    "`benchmarks/slack_fit.py`) to `allocator_required_bytes` (the fit above). A card between the two ends "
    'gets the verdict "may fit". Held out by family:'
)


def sensitivity_text(points) -> str:
    parts = [
        f"{s}: {req * 100:.1f} % (peak {peak * 100:.1f} %)" for s, req, peak in sensitivity.jumps(points)
    ]
    return (
        "Real runs of six configurations a few tokens apart (`python -m benchmarks.accuracy_grid --grid sens`; "
        "the requirement is the allocator model's replay of each run's trace). Largest change of the "
        "requirement between neighbouring lengths: " + "; ".join(parts) + "."
    )


def range_section(rep: Report) -> list[str]:
    out = ["## The requirement as a range", "", RANGE_TEXT, "", _md_table(RANGE_HEAD, range_rows(rep)), ""]
    if rep.sensitivity:
        out += [sensitivity_text(rep.sensitivity), "",
                _md_table(sensitivity.HEAD, sensitivity.rows(rep.sensitivity)), ""]  # fmt: skip
    return out


def bounds_section(rep: Report) -> list[str]:
    ex = sorted(((r.name, r.error("vramfit", "required")) for r in exact_runs(rep.runs)), key=lambda x: x[1])
    if not ex:
        return []
    rows = []
    for name, e in ex:
        r = next(x for x in rep.runs if x.name == name)
        m = r.result["measured"]
        rows.append([name, gib(m["peak_allocated_bytes"]), gib(m["allocator_required_bytes"]),
                     gib(m["peak_reserved_bytes"]), pct(e)])  # fmt: skip
    return [
        "## The allocator requirement where find-min measured it",
        "",
        "`--find-min` searches the smallest cap with which the steps succeed. Under a cap the caching "
        "allocator frees its unused cached segments and retries before it fails, so the requirement can be "
        "well below what an uncapped run reserves (here by up to 1 GiB): the uncapped reserved peak, which "
        "the other runs stand on, is only an upper bound.",
        "",
        _md_table(["run", "peak allocated GiB", "find-min GiB", "reserved GiB", "vramfit error"], rows),
        "",
    ]


def replay_section(rep: Report) -> list[str]:
    entries = [e for e in rep.replayed if e.error is not None]
    errs = [e.error for e in entries]
    within = sum(abs(x) <= 0.01 for x in errs)
    worst = max(entries, key=lambda e: abs(e.error))
    return [
        "## The allocator model against find-min",
        "",
        "`vramfit.probe.allocsim` models PyTorch's caching allocator (pools, best fit, splitting, segment "
        "sizes, the driver's segment addresses where best fit meets a tie, and what a cap does: free the "
        "unused cached segments, then retry). Replaying the trace of one uncapped run through it under "
        "decreasing caps gives the smallest cap that works in about a second, where `--find-min` runs rounds "
        "of real capped trials. One uncapped run of each of the "
        f"{len(rep.replayed)} grid configurations (`python -m benchmarks.replay_check`, "
        "`benchmarks/results/replay/`, an H200): the replay made the run's own segments in "
        f"{sum(e.matches for e in rep.replayed)} of {len(rep.replayed)}, and its requirement was within 1 % of "
        f"the committed find-min result in {within} of {len(errs)} (mean |error| "
        f"{statistics.mean(abs(x) for x in errs) * 100:.2f} %). The largest difference, {worst.name} "
        f"({pct(worst.error)}), is the run, not the model"
        + (
            f": searched again with find-min, the configuration needed {rep.repeat_find_min[2] >> 20} MiB, where "
            f"the committed search found {rep.repeat_find_min[1] >> 20} MiB (`benchmarks/results/replay/`): the "
            "requirement of one configuration can differ by a logits-sized segment between two runs."
            if rep.repeat_find_min and worst.name == rep.repeat_find_min[0]
            else "."
        ),
        "",
        _md_table(replay.HEAD, replay.rows(rep.replayed)),
        "",
    ]


def simulation_section(rep: Report) -> list[str]:
    if rep.replayed:
        return replay_section(rep)
    rows, errs = simulation_rows(rep)
    if not rows:
        return []
    close = sum(abs(e) <= 0.01 for e in errs)
    return [
        "## The allocator model against find-min",
        "",
        "`vramfit.probe.allocsim` models PyTorch's caching allocator (pools, best fit, splitting, segment "
        "sizes, and what a cap does: free the unused cached segments, then retry). Replaying the trace of "
        "one uncapped run through it under decreasing caps gives the smallest cap that works, in about a "
        "second, where `--find-min` runs rounds of real capped trials (50-120 s here). Uncapped, the replay "
        "must reserve what the run reserved (`segments match`: the same cudaMalloc sizes in the same order). "
        f"On the {len(errs)} configurations with a find-min result it was within 1 % of it in {close} "
        "(find-min's resolution is 32 MiB on the H100 and 8 MiB on the H200, the replay's 2 MiB, so the replay "
        "is mostly the lower).",
        "",
        _md_table(
            [
                "run",
                "allocated GiB",
                "reserved GiB",
                "replayed reserved GiB",
                "segments match",
                "replayed requirement GiB",
                "find-min GiB",
                "replay vs find-min",
                "seconds",
            ],
            rows,
        ),  # fmt: skip
        "",
    ]


def segment_section(rep: Report) -> list[str]:
    n, phase_rows, who_rows, steady = segment_summary(rep)
    if not n:
        return []
    return [
        "## Where the reserved memory comes from (the probe's segment log)",
        "",
        f"Every `cudaMalloc` of the caching allocator during the run, with the request that needed it and the "
        f"code that asked (`result.measured.raw.segments`), recorded for the {n} runs measured since the log "
        "was added (grids 4, 5 and find-min). Summed over those runs. The slack above the allocated peak is "
        "what these segments hold beyond the live tensors: requests of 10 MiB and more get a segment of "
        "their own size when no cached block fits; 1-10 MiB requests a 20 MiB segment; smaller ones 2 MiB.",
        "",
        _md_table(["phase", "new segments GiB", "of which >= 100 MiB", "segments"], phase_rows),
        "",
        f"In {steady} of the {n} runs the steady-state step reserved a further segment of 100 MiB or more "
        "(the allocator's best-fit had split a cached one): the bimodal part of the slack.",
        "",
        "The largest requesters:",
        "",
        _md_table(["phase", "code that asked", "GiB", "segments"], who_rows),
        "",
    ]


def held_out_range(rep: Report) -> tuple[str, str]:
    """The lowest and the highest error of the requirement held out by family, as percentages."""
    errors = [e for x in rep.held_out for _, e in x.errors]
    return pct(min(errors)), pct(max(errors))


def _intro(rep: Report) -> list[str]:
    pv = rep.provenance
    return [
        "# Accuracy: vramfit, fitcheck-llm and accelerate against measured training runs",
        "",
        f"Regenerate with `python -m benchmarks.accuracy_report` (writes this file and `accuracy.html`). "
        f"{len(rep.runs)} runs, {len({r.model for r in rep.runs})} models, "
        f"{len({r.family for r in rep.runs})} families, measured by `vramfit probe` (`{pv['results']}/`).",
        "",
    ]


def _held_out_headline(rep: Report) -> list[str]:
    h, (low, high), total = held_out_all(rep), held_out_range(rep), range_rows(rep)[-1]
    return [
        f"- **vramfit allocator requirement, held out by family** (the only fitted part, refitted without "
        f"the family it is tested on): median {pct(h.median)}, mean |error| {h.mean_abs * 100:.1f} %, "
        f"from {low} to {high}.",
        f"- **vramfit's requirement range, held out by family** (`allocator_required_low_bytes` to "
        f"`allocator_required_bytes`): the measured requirement inside it in {total[3]} "
        f"find-min runs; median width {total[6]} of the requirement.",
    ]


def _provenance_rows(rep: Report) -> list[list[str]]:
    pv, env = rep.provenance, rep.provenance["env"]
    tools = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "python", "vramfit")
    return [
        ["GPU", ", ".join(env["gpu"])],
        [
            "driver / CUDA / compute capability",
            f"{', '.join(env['driver'])} / {', '.join(env['cuda'])} / {', '.join(env['compute_capability'])}",
        ],
        ["measured with", ", ".join(f"{k} {', '.join(env[k])}" for k in tools)],
        [
            "measurements committed",
            ", ".join(pv["dates"]) or "unknown" + " (the result files record no timestamp)",
        ],
        ["calibration commands", "<br>".join(f"`{c}`" for c in pv["calib_commands"])],
        [
            "grid command",
            "<br>".join(f"`{c}`" for c in pv["grid_commands"])
            + " (each run's own `vramfit probe` command is in its file and below)",
        ],
        [
            "predictions computed with",
            ", ".join(f"{k} {x or 'not installed'}" for k, x in rep.versions.items()),
        ],
    ]


def _missing(rep: Report) -> list[str]:
    missing = [f"- {t}: {why}" for t, why in rep.problems.items() if why]
    return ["Not available in this report:", "", *missing, ""] if missing else []


def _summary_sections(rep: Report) -> list[str]:
    return [
        "## Summary",
        "",
        _md_table(SUMMARY_HEAD, summary_rows(rep)),
        "",
        "## By model family",
        "",
        "Median error (worst) per family.",
        "",
        _md_table(FAMILY_HEAD, family_rows(rep)),
        "",
        "## vramfit by component",
        "",
        "Estimate minus the probe's attribution of the live memory at the measured peak (tensor identity "
        "from the allocator snapshot), over the runs that kept a snapshot. Relative errors only where the "
        "measured component is at least 16 MiB. Gradients, activations, logits and temporaries can trade "
        "places within one phase, so their sum is compared as well.",
        "",
        _md_table(COMPONENT_HEAD, component_rows(rep)),
        "",
    ]


def _held_out_section(rep: Report) -> list[str]:
    h, (low, high) = held_out_all(rep), held_out_range(rep)
    return [
        "## Held out: vramfit's fitted allocator slack, leave one family out",
        "",
        "**Fitted** (`benchmarks/slack_fit.py`): the allocator slack `a + b x fp32 logits + c x one "
        "dequantized weight` (fp32 logits = batch x sequence x vocabulary x 4 bytes; the weight: a layer's "
        "largest linear in the compute dtype, k-bit bases only) over the slack above the measured peak, "
        "with the least mean |error| on the find-min runs of every other family plus the mean excess over "
        "the reserved peak of their other runs, under the constraint that no find-min run is "
        "under-estimated by more than 0.5 %; b and c on grids, a the least that meets it. **Held out**: the "
        "error of `allocator_required_bytes` (vramfit's estimated peak + that slack) on the find-min runs "
        "of the family left out, and on how many of its other runs it is above the reserved peak (certainly "
        "too high). Target: mean |error| <= 2 %, worst <= 5 %, no under-estimate below -2 %.",
        "",
        _md_table(HELD_OUT_HEAD, held_out_rows(rep)),
        f"| **all held out** | {h.n} | | | {pct(h.median)} | {h.mean_abs * 100:.1f} % | {low} | {high} | "
        f"{sum(len(x.above_bound) for x in rep.held_out)} of {len(bound_errors(rep.runs))} |",
        "",
    ]


def _run_sections(rep: Report) -> list[str]:
    """The repeats, every run's numbers, how fitcheck-llm was called and every measurement command."""
    return [
        "## The same configuration measured twice",
        "",
        "A find-min run repeats a configuration of an earlier grid; the earlier run is not counted above.",
        "",
        _md_table(REPEAT_HEAD, repeat_rows(rep)) if repeat_rows(rep) else "(none)",
        "",
        "## Every run: peak allocated",
        "",
        _md_table(RUN_HEAD, run_rows(rep, "peak")),
        "",
        "## Every run: required excluding the CUDA context",
        "",
        "Measured: `allocator_required_bytes` from find-min for `calib_*` and `grid_fm_*`, uncapped "
        "`peak_reserved_bytes` for the other `grid_*`, plus paged optimizer state.",
        "",
        _md_table(RUN_HEAD, run_rows(rep, "required")),
        "",
        "## fitcheck-llm: how each run was mapped",
        "",
        "LoRA dropout and the attention backend's own buffers have no fitcheck option either; SDPA runs are "
        "given `--flash-attn` (on this card SDPA runs the flash kernel and keeps no score matrix).",
        "",
        _md_table(["run", "command", "not expressible", "error"], fitcheck_rows(rep)),
        "",
        "## Measurement commands",
        "",
        _md_table(["run", "command"], [[r.name, f"`{r.command}`"] for r in rep.runs]),
        "",
    ]


def render_markdown(rep: Report) -> str:
    lines = [
        *_intro(rep),
        "## Headline",
        "",
        *headline(rep),
        *exact_headline(rep),
        *_held_out_headline(rep),
        "",
        "## Provenance",
        "",
        _md_table(["", ""], _provenance_rows(rep)),
        "",
        "## How each number is obtained",
        "",
        *method_notes(rep),
        "",
        *_missing(rep),
        *_summary_sections(rep),
        *_held_out_section(rep),
        *range_section(rep),
        *bounds_section(rep),
        *simulation_section(rep),
        *segment_section(rep),
        *_run_sections(rep),
    ]
    return "\n".join(lines)
