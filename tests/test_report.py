"""HTML and Markdown reports: contents, escaping, self-containment, the PNG chart, the CLI.

Estimates come from the real estimator on registry models (offline). Probe results are built with the
probe's own result classes from numbers written here (no GPU in CI); the report only reads their JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from html import escape
from pathlib import Path

import pytest

from vramfit.cli.main import main
from vramfit.config import TrainConfig
from vramfit.estimate import COMPONENTS, PHASES, estimate
from vramfit.gpus import resolve_card
from vramfit.report import load_result, render_html, render_markdown, result_json, write_html, write_markdown
from vramfit.report.tables import COMPONENT_LABELS, stack_segments
from vramfit.units import GiB, MiB, format_bytes

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def est():
    return estimate(MODEL, TrainConfig(), resolve_card(vram="4GB"))


def probe_json(est_json: dict, model: str | None = None) -> dict:
    """A probe result as the probe writes it, with invented but self-consistent measured numbers."""
    from vramfit.probe.result import Measured, PhaseMeasurement, ProbeResult

    bd = {c: int(v * 1.07) + MiB for c, v in est_json["breakdown"].items()}
    peak = sum(bd.values())
    timeline = []
    t = 0
    for i, ph in enumerate(PHASES):
        for k in range(20):
            t += 3
            timeline.append(
                {"t_ms": t, "allocated_bytes": peak * (i + 1) * (k + 5) // (len(PHASES) * 25), "phase": ph}
            )
    measured = Measured(
        device="cuda",
        peak_allocated_bytes=peak,
        peak_reserved_bytes=peak + 300 * MiB,
        allocator_required_bytes=peak + 64 * MiB,
        cuda_context_bytes=420 * MiB,
        paged_optimizer_bytes=est_json["non_torch_bytes"]["paged_optimizer"],
        breakdown=bd,
        peak_phase="backward (steady)",
        phases=tuple(PhaseMeasurement(p, peak // 2, peak // 2 + MiB, 0.25) for p in PHASES),
        timeline=tuple(timeline),
        step_seconds=0.31,
        fits=True,
    )
    env = {"gpu": "NVIDIA GeForce RTX 3060", "gpu_memory_bytes": 12 * GiB, "driver": "550.54.15", "cuda": "12.4",
           "torch": "2.5.1", "transformers": "4.46.3", "peft": "0.13.2", "bitsandbytes": "0.45.0",
           "accelerate": "1.1.1", "vramfit": "0.1.0", "python": "3.11.9"}  # fmt: skip
    r = ProbeResult(model=model or est_json["model"], config=est_json["config"], measured=measured,
                    environment=env, estimate=est_json)  # fmt: skip
    return r.to_json()


def test_html_shows_model_peak_components_config_and_verdict(est):
    html = render_html(est)
    assert MODEL in html
    assert format_bytes(est.required_vram_bytes) in html
    assert format_bytes(est.peak_allocated_bytes) in html
    for c in COMPONENTS:
        assert COMPONENT_LABELS[c] in html
    assert "paged_adamw_8bit" in html and "q_proj, v_proj" in html
    assert "headroom" in html and "4.00 GiB" in html  # the card and the headroom
    assert html.count("<svg") == 2  # breakdown + memory against sequence length
    assert "required VRAM against sequence length" in html
    assert "Estimate" in html


def test_breakdown_segments_add_up_to_required_vram(est):
    segs = stack_segments(est.to_json())
    assert sum(b for _, b in segs) == est.required_vram_bytes
    assert all(b >= 0 for _, b in segs)


def test_user_text_is_escaped_in_html_and_markdown(est):
    d = est.to_json() | {"model": "<script>alert('x')</script>", "warnings": ["<b>bold</b> & <i>"]}
    d["config"] = {**d["config"], "targets": ["<img src=x onerror=alert(1)>"]}
    html = render_html(d, sweep=False)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;img src=x" in html
    assert "<b>bold" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;" in html
    md = render_markdown(d)
    assert "<script" not in md and "&lt;script&gt;" in md
    assert "<img" not in md


def test_html_is_self_contained(est):
    html = render_html(est)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html  # SVG inlined without its prologue


def test_the_same_result_renders_the_same_page(est):
    # matplotlib's SVG element ids are random unless salted: a report attached twice should not differ
    # (the footer's time is fixed: two renders a minute boundary apart would differ there)
    at = "2026-01-01 00:00 UTC"
    assert render_html(est, generated_at=at) == render_html(est, generated_at=at)


def test_probe_report_shows_estimate_and_measurement_side_by_side(est):
    d = probe_json(est.to_json())
    html = render_html(d, sweep=False)
    assert "Measurement (probe)" in html
    assert "measured" in html and "difference" in html
    assert format_bytes(d["measured"]["required_vram_bytes"]) in html
    assert "allocated memory over time" in html  # the timeline chart
    for ph in PHASES:
        assert ph in html
    assert "NVIDIA GeForce RTX 3060" in html and "4.46.3" in html  # the environment
    assert "0.31 s" in html


def test_probe_find_min_trials_are_listed(est):
    d = probe_json(est.to_json())
    d["trials"] = [
        {"cap_bytes": 3 * GiB, "fits": True, "phase": None, "requested_bytes": None},
        {"cap_bytes": 2 * GiB, "fits": False, "phase": "backward (step 1)", "requested_bytes": 64 * MiB},
    ]
    html = render_html(d, sweep=False)
    assert "Allocator cap search (--find-min)" in html
    assert html.index("2.00 GiB</td><td>out of memory") < html.index("3.00 GiB</td><td>fits")  # sorted by cap


def test_probe_oom_and_cpu_pipeline_check_have_honest_banners(est):
    from vramfit.probe.result import Measured, ProbeResult

    d = probe_json(est.to_json())
    d["measured"]["oom"] = {
        "phase": "backward (step 1)",
        "requested_bytes": 256 * MiB,
        "message": "CUDA out of memory",
    }
    assert "Out of memory in backward (step 1) while allocating 256.0 MiB" in render_html(d, sweep=False)
    cpu = Measured("cpu", None, None, None, None, None, None, None, ())
    r = ProbeResult(model=MODEL, config=est.config, measured=cpu, environment={"torch": "2.5.1"}).to_json()
    html = render_html(r, sweep=False)
    assert "Pipeline check without memory numbers" in html
    assert "<svg" not in html  # nothing to draw


def test_plan_report_shows_recommendation_alternatives_and_knob_prices(est):
    e = est.to_json()
    smaller = estimate(MODEL, TrainConfig(seq_len=256), resolve_card(vram="4GB")).to_json()
    plan = {
        "kind": "plan",
        "model": MODEL,
        "verdict": e["verdict"],
        "margin_bytes": 256 * MiB,
        "recommended": e | {"margin_bytes": 256 * MiB},
        "alternatives": [smaller | {"trades": ["half the sequence length"]}],
        "knob_prices": [{"knob": "seq_len", "change": "512 -> 1024", "delta_bytes": 300 * MiB},
                        {"knob": "gradient_checkpointing", "from": True, "to": False, "delta_bytes": GiB}],
        "unknown_extra_key": {"ignored": True},
    }  # fmt: skip
    html = render_html(plan, sweep=False)
    assert "Recommendation" in html and "Alternatives" in html and "What each knob costs" in html
    assert "half the sequence length" in html
    assert "512 → 1024" in html and "on → off" in html
    assert "+300.0 MiB" in html and "+1.00 GiB" in html
    assert format_bytes(smaller["required_vram_bytes"]) in html
    md = render_markdown(plan)
    assert "half the sequence length" in md and "512 → 1024" in md


def test_plan_without_a_fit_says_so():
    plan = {"kind": "plan", "model": MODEL, "recommended": None, "alternatives": [], "knob_prices": [],
            "no_fit": {"reasons": ["the 4-bit weights alone need 5.1 GiB"], "cards_that_fit": ["rtx-3060"],
                       "card_needed_bytes": 12 * GiB, "models_that_fit": []}}  # fmt: skip
    html = render_html(plan)
    assert (
        "No configuration fits" in html
        and "the 4-bit weights alone need 5.1 GiB" in html
        and "rtx-3060" in html
    )
    assert "no configuration fits" in render_markdown(plan)


@pytest.mark.parametrize(
    "card",
    [
        {"vram": "4GB"},
        {"gpu": "rtx-3060-8gb", "display_reserve": "300MiB"},
        {"vram": "6GB", "cuda_context": "700MiB"},
    ],
)
def test_sweep_passes_through_the_result_and_checkpointing_saves_memory(card):
    from vramfit.report.sweep import seq_len_sweep

    est = estimate(MODEL, TrainConfig(), resolve_card(**card))
    sw = seq_len_sweep(est.to_json())
    assert sw is not None
    i = sw.seq_lens.index(512)
    assert sw.with_checkpointing[i] == est.required_vram_bytes  # same model, config and card
    on = [v for v in sw.with_checkpointing if v is not None]
    off = [v for v in sw.without_checkpointing if v is not None]
    assert on == sorted(on) and off == sorted(off)  # memory grows with the sequence
    assert all(b > a for a, b in zip(sw.with_checkpointing, sw.without_checkpointing, strict=True))
    assert not sw.note


def test_sweep_that_cannot_be_estimated_says_why(est):
    d = est.to_json()
    d["verdict"] = {**d["verdict"], "gpu": "gtx-1650"}  # no bf16 on Turing: every point fails
    html = render_html(d)
    assert (
        "Not drawn: 18 point(s) could not be estimated: --compute-dtype: bf16 needs compute capability 8.0+"
        in html
    )


def test_sweep_is_left_out_with_a_note_when_the_model_cannot_be_resolved(est):
    d = est.to_json() | {"model": "a/model-that-is-not-on-this-machine-or-the-hub"}
    html = render_html(d)
    assert "cannot be resolved on this machine" in html
    assert html.count("<svg") == 1


def test_markdown_writes_table_and_png_beside_it(est, tmp_path):
    out = write_markdown(est, tmp_path / "run report.md")
    md_path, png_path = Path(out[0]), Path(out[1])
    assert png_path == tmp_path / "run report.png"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = md_path.read_text()
    # a link, not an image (pasted into an issue an image would show broken), and how to attach the PNG
    assert "[run report.png](run%20report.png)" in md and "![" not in md
    assert "drag run report.png into the comment box" in md
    assert "| component | estimate |" in md and f"**{format_bytes(est.required_vram_bytes)}**" in md
    for c in COMPONENTS:
        assert f"| {COMPONENT_LABELS[c]} |" in md
    # a table row per segment, each with as many cells as the header
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len({line.count(" | ") for line in rows[:13]}) == 1


def test_markdown_of_a_probe_has_measured_and_difference_columns(est, tmp_path):
    md = render_markdown(probe_json(est.to_json()))
    assert "| component | estimate | measured | difference |" in md


def test_load_result_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON"):
        load_result(bad)
    with pytest.raises(ValueError, match=r"nope.json: file not found"):
        load_result(tmp_path / "nope.json")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"kind": "banana"}))
    with pytest.raises(ValueError, match=r"unknown kind 'banana'; accepted: estimate, plan, probe"):
        load_result(odd)
    odd.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_result(odd)


def test_result_kind_is_inferred_for_objects_and_dicts(est):
    assert result_json(est)["kind"] == "estimate"
    assert result_json(probe_json(est.to_json()) | {"kind": None})["kind"] == "probe"


def test_report_command_writes_html_and_markdown(est, tmp_path, capsys):
    src = tmp_path / "run.json"
    src.write_text(json.dumps(est.to_json() | {"kind": "estimate"}))
    assert (
        main(["report", str(src), "-o", str(tmp_path / "r.html"), "--markdown", str(tmp_path / "r.md")]) == 0
    )
    out = capsys.readouterr().out
    assert "r.html" in out and "r.md" in out and "r.png" in out
    assert MODEL in (tmp_path / "r.html").read_text()
    # without an output flag: RESULT.html beside the result
    assert main(["report", str(src), "--no-sweep"]) == 0
    assert (tmp_path / "run.html").exists()


def test_report_command_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "missing.json: file not found" in err and "Traceback" not in err and err.count("\n") == 1
    src = tmp_path / "run.json"
    src.write_text("{}")
    assert main(["report", str(src)]) == 2
    assert "not a vramfit result" in capsys.readouterr().err


def test_report_flags_write_every_kind(est, tmp_path):
    from vramfit.cli.report_flags import add_report_flags, write_reports

    p = argparse.ArgumentParser()
    add_report_flags(p)
    args = p.parse_args(["--html", str(tmp_path / "e.html"), "--markdown", str(tmp_path / "e.md")])
    written = write_reports(args, est)
    assert written == [str(tmp_path / "e.html"), str(tmp_path / "e.md"), str(tmp_path / "e.png")]
    assert write_reports(p.parse_args([]), est) == []
    args = p.parse_args(["--html", str(tmp_path / "p.html")])
    assert write_reports(args, probe_json(est.to_json())) == [str(tmp_path / "p.html")]
    assert "Measurement (probe)" in (tmp_path / "p.html").read_text()
    args = p.parse_args(["--html", str(tmp_path / "no-such-dir" / "x.html")])
    with pytest.raises(ValueError, match=r"--html: cannot write"):
        write_reports(args, est)


def test_write_html_returns_its_path(est, tmp_path):
    assert write_html(est, tmp_path / "x.html", sweep=False) == [str(tmp_path / "x.html")]


def test_environment_reads_versions_without_importing_torch():
    code = (
        "import sys; from vramfit.environment import environment; e = environment(query_gpu=False);"
        "import vramfit; assert e['vramfit'] == vramfit.__version__ and e['python'];"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_describe_changes_names_the_moved_versions():
    from vramfit.environment import describe_changes

    old = {"vramfit": "0.1.0", "torch": "2.4.0", "peft": "0.13.0", "gpu": None}
    new = {"vramfit": "0.1.0", "torch": "2.5.1", "peft": "0.13.0", "gpu": "H100"}
    assert describe_changes(old, new) == ["gpu absent -> H100", "torch 2.4.0 -> 2.5.1"]


def test_cli_modules_import_no_heavy_libraries():
    code = (
        "import sys; import vramfit.cli.report_cmd, vramfit.cli.check_cmd, vramfit.cli.report_flags, vramfit.check,"
        " vramfit.report;"
        "heavy = [m for m in ('torch', 'transformers', 'matplotlib', 'pandas') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def real_plans():
    from vramfit.plan import plan

    fits = plan("llama-3.2-1b", resolve_card(vram="6GB")).to_json()
    nofit = plan("mistral-7b", resolve_card(vram="4GB")).to_json()
    return fits, nofit


def test_report_of_a_real_plan(real_plans, tmp_path):
    fits, _ = real_plans
    assert fits["recommended"] is not None
    html = render_html(fits, sweep=False)
    assert "Recommended run fits" in html
    assert format_bytes(fits["recommended"]["required_vram_bytes"]) in html
    for k in fits["knob_prices"]:
        assert escape(k["knob"]) in html
    for a in fits["alternatives"]:
        assert format_bytes(a["required_vram_bytes"]) in html
    assert escape(fits["code"]["estimate"]) in html  # the command to reproduce the recommendation
    out = write_markdown(fits, tmp_path / "plan.md")
    md = Path(out[0]).read_text()
    assert "**Alternatives**" in md and "**What each knob costs**" in md


def test_report_of_a_real_plan_where_nothing_fits(real_plans, tmp_path):
    _, nofit = real_plans
    assert nofit["recommended"] is None
    html = render_html(nofit, sweep=False)
    smallest = nofit["no_fit"]["smallest"]
    assert "No configuration fits" in html and "Why nothing fits" in html
    assert f"The smallest configuration needs {format_bytes(smallest['required_vram_bytes'])}" in html
    for reason in nofit["no_fit"]["reasons"]:
        assert escape(reason) in html
    md = render_markdown(nofit)
    assert md.startswith(
        f"### vramfit plan: mistral-7b: no configuration fits; the smallest needs {format_bytes(smallest['required_vram_bytes'])}"
    )


def _published_probes():
    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "probe"
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        r = data.get("result", data)
        if r.get("kind") == "probe" and r.get("measured", {}).get("device") == "cuda" and r.get("breakdown"):
            yield pytest.param(path, id=path.stem)


@pytest.mark.parametrize("path", list(_published_probes())[:2])
def test_report_of_a_published_gpu_measurement(path, tmp_path):
    """The measurements committed under benchmarks/results/probe (a wrapper with the command) render."""
    d = load_result(path)
    assert d["kind"] == "probe" and d["provenance"]["command"]
    m = d["measured"]
    html = render_html(d)
    assert d["environment"]["gpu"] in html and d["environment"]["torch"] in html
    assert format_bytes(m["required_vram_bytes"]) in html and format_bytes(m["peak_allocated_bytes"]) in html
    assert "allocated memory over time" in html
    assert ">None</text>" not in html  # samples between phases carry no phase name, not "None"
    out = write_markdown(d, tmp_path / "probe.md")
    assert "| component | estimate | measured | difference |" in Path(out[0]).read_text()


def test_probe_without_find_min_shows_the_allocator_models_figure(est):
    d = probe_json(est.to_json())
    d["measured"]["allocator_required_bytes"] = None
    html = render_html(d, sweep=False)
    assert "did not search the allocator requirement" in html and "allocator model" not in html
    d["measured"]["raw"] = {"simulated": {"required_bytes": 3 * 2**30, "matches_trace": True}}
    html = render_html(d, sweep=False)
    assert "allocator model" in html and format_bytes(3 * 2**30) in html
