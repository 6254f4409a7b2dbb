"""The probe without a GPU: the whole pipeline on a tiny model on the CPU, and the snapshot attribution
on a real snapshot captured on a GPU (tests/fixtures/probe_snapshot_tiny_llama.*, see the README there)."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.estimate.result import COMPONENTS, PHASES
from vramfit.models import from_hf_config
from vramfit.probe import attribution, probe
from vramfit.probe.emulate import Trial, find_min

FIXTURES = Path(__file__).parent / "fixtures"
TINY = dict(model_type="llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            tie_word_embeddings=False, torch_dtype="bfloat16")  # fmt: skip
SPEC = from_hf_config(TINY, name="tiny-llama")
CFG = TrainConfig(seq_len=32)


# ---- the pipeline on the CPU: build, quantize (bitsandbytes CPU backend), wrap, Trainer steps ----------


@pytest.fixture(scope="module")
def cpu_probe():
    events = []
    r = probe(SPEC, CFG, steps=2, device="cpu", on_event=events.append)
    return r, events


def test_cpu_pipeline_runs_every_phase_of_the_recipe(cpu_probe):
    r, events = cpu_probe
    m = r.measured
    assert [p.name for p in m.phases] == list(PHASES)  # 2 steps: step 1 and one steady step
    assert m.step_seconds > 0 and m.build_seconds > 0
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]
    # no memory numbers on the CPU, and it says so
    assert m.peak_allocated_bytes is None and m.breakdown is None
    assert any("--device cpu" in w for w in r.warnings)
    j = r.to_json()
    assert j["kind"] == "probe" and j["config"]["quant"] == "nf4"
    assert j["breakdown"] == r.estimate["breakdown"]  # the estimate's keys sit beside "measured"
    assert set(j["environment"]) >= {"torch", "transformers", "peft", "bitsandbytes", "python"}


def test_full_finetuning_pipeline_on_cpu():
    r = probe(SPEC, CFG.with_(method="full", quant="none", optimizer="adamw_torch"), steps=1, device="cpu")
    assert [p.name for p in r.measured.phases][-1] == "optimizer (step 1)"


def _storage_bytes(model) -> dict[str, int]:
    """Bytes of every parameter and its bitsandbytes quant state, by name."""
    out = {}
    for name, p in model.named_parameters():
        out[name] = p.numel() * p.element_size()
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            out[name + ".absmax"] = qs.absmax.numel() * qs.absmax.element_size()
            out[name + ".nested_absmax"] = qs.state2.absmax.numel() * qs.state2.absmax.element_size()
        out[name + ".type"] = type(p).__name__ + str(p.dtype)
    return out


def test_builder_gives_what_from_pretrained_of_a_saved_checkpoint_gives(tmp_path):
    from vramfit.probe.builder import build_model

    built = build_model(SPEC, TrainConfig(), "cpu")
    plain = build_model(SPEC, TrainConfig(method="full", quant="none"), "cpu")
    plain.save_pretrained(tmp_path)
    loaded = build_model(SPEC, TrainConfig(), "cpu", weights=str(tmp_path))
    assert _storage_bytes(built) == _storage_bytes(loaded)
    types = {n: type(p).__name__ for n, p in built.named_parameters()}
    assert types["model.layers.0.self_attn.q_proj.weight"] == "Params4bit"
    assert types["lm_head.weight"] == types["model.embed_tokens.weight"] == "Parameter"  # not quantized
    assert built.config.use_cache is False and getattr(built, "is_loaded_in_4bit", False)


# ---- errors a person can cause --------------------------------------------------------------------


def test_no_gpu_is_one_clear_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(InputError, match=r"^no CUDA GPU .*--device cpu"):  # not about a flag the user gave
        probe(SPEC, CFG, steps=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "--steps: must be a positive whole number"),
        ({"max_parallel": 0}, "--parallel: must be a positive whole number"),
        ({"cfg": CFG.with_(targets=("q_prj",))}, r"--targets: .*no module 'q_prj' \(did you mean: q_proj"),
        ({"find_min_cap": True, "device": "cpu"}, "--find-min: needs a CUDA GPU"),
        ({"weights": "/nonexistent/ckpt"}, "--weights: no such checkpoint folder"),
        ({"device": "tpu"}, "--device: unknown device 'tpu'"),
    ],
)
def test_bad_input_names_the_flag(kwargs, match):
    kwargs = {"cfg": CFG, **kwargs}
    with pytest.raises(InputError, match=match):
        probe(SPEC, **kwargs)


def test_cli_probe_on_cpu_prints_json_and_bad_flags_exit_2(tmp_path):
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(json.dumps(TINY))
    base = [sys.executable, "-m", "vramfit", "probe", "--model", str(cfg_file)]
    bad = subprocess.run(base + ["--steps", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--steps" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run(base + ["--find-min", "--parallel", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--parallel" in bad.stderr and "Traceback" not in bad.stderr
    ok = subprocess.run(base + ["--device", "cpu", "--steps", "1", "--seq-len", "16", "--json"],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    out = json.loads(ok.stdout)
    assert out["kind"] == "probe" and out["measured"]["device"] == "cpu"


def test_a_stuck_trial_is_killed_at_its_timeout():
    from vramfit.probe.child import trial_config
    from vramfit.probe.runner import TrialFailed, run_trials

    events = []
    trial = trial_config(SPEC, CFG, device="cpu", steps=1)
    t = time.monotonic()
    with pytest.raises(TrialFailed, match="ran past --timeout"):
        run_trials([trial], timeout=2, on_event=events.append)  # the child is still importing torch then
    assert time.monotonic() - t < 15
    pids = [e["pid"] for e in events if e["event"] == "start"]
    assert len(pids) == 1
    with pytest.raises(ProcessLookupError):  # killed with its process group, and reaped
        os.kill(pids[0], 0)


# ---- find-min: the search itself, against a known threshold ------------------------------------------


@pytest.mark.parametrize("parallel", [1, 3, 8])
def test_find_min_reaches_the_threshold_to_the_resolution(parallel):
    MiB = 2**20
    threshold = 5123 * MiB + 12345  # the smallest cap that works

    def run_caps(caps):
        return [Trial(c, c >= threshold, None if c >= threshold else "backward (steady)", None) for c in caps]

    found, trials = find_min(run_caps, 4 * 2**30, 6 * 2**30, resolution=32 * MiB, parallel=parallel)
    assert threshold <= found < threshold + 32 * MiB
    rounds_bound = {1: 7, 3: 5, 8: 4}[parallel]  # the top-first round, then log_(k+1)(what is left / 32 MiB)
    assert len(trials) <= rounds_bound * parallel


@pytest.mark.parametrize("gap_mib", [0, 20, 100, 700])
def test_find_min_settles_a_threshold_near_the_top_in_one_round(gap_mib):
    MiB = 2**20
    hi = 6 * 2**30
    threshold = hi - gap_mib * MiB  # measured runs mostly need all of their peak reserved (gap 0)
    rounds = []

    def run_caps(caps):
        rounds.append(caps)
        return [Trial(c, c >= threshold, None, None) for c in caps]

    found, _ = find_min(run_caps, 2 * 2**30, hi, resolution=32 * MiB, parallel=8)
    assert threshold <= found < threshold + 32 * MiB
    # 700 MiB: the first round brackets it between hi - 1024 and hi - 512 MiB, two more narrow 512 MiB
    assert len(rounds) == {0: 1, 20: 1, 100: 2, 700: 3}[gap_mib]
    assert rounds[0][-1] == hi - 32 * MiB


# ---- snapshot parsing and attribution on a real GPU snapshot ----------------------------------------


@pytest.fixture(scope="module")
def fixture():
    with gzip.open(FIXTURES / "probe_snapshot_tiny_llama.json.gz", "rt") as f:
        return json.load(f)


def test_compact_form_of_the_fixture_pickle(fixture):
    from vramfit.probe.snapshot import compact

    with gzip.open(FIXTURES / "probe_snapshot_tiny_llama.pickle.gz", "rb") as f:
        raw = pickle.load(f)
    c = compact(raw)
    ref = fixture["snapshot"]

    def resolved(snap, rows, stack_col):
        # stacks as (file, line, function) tuples: the source text is read where the snapshot was taken
        def stack(sid):
            return tuple(tuple(snap["frames"][f][:3]) for f in snap["stacks"][sid]) if sid >= 0 else ()

        return [(*r[:stack_col], stack(r[stack_col]), *r[stack_col + 1 :]) for r in rows]

    assert len(c["events"]) == len(ref["events"]) > 1000
    # the fixture was written by version 1 (five columns); version 2 adds the stream
    assert resolved(c, [e[:5] for e in c["events"]], 3) == resolved(ref, ref["events"], 3)
    assert {e[5] for e in c["events"]} == {0}
    assert resolved(c, c["end_blocks"], 2) == resolved(ref, ref["end_blocks"], 2)
    assert c["reserved_end"] == ref["reserved_end"]


def test_replay_reproduces_the_allocator_peaks_exactly(fixture):
    m = fixture["measured"]
    peak = attribution.attribute(fixture["snapshot"], fixture["markers"], fixture["logits_elements"])
    assert peak.allocated_bytes == m["peak_allocated_bytes"]  # torch.cuda.max_memory_allocated
    assert peak.max_reserved_bytes == m["peak_reserved_bytes"]  # torch.cuda.max_memory_reserved
    assert peak.phase == m["peak_phase"]
    assert sum(peak.breakdown.values()) == peak.allocated_bytes
    assert set(peak.breakdown) == set(COMPONENTS)


def _lora_bytes(spec, cfg) -> int:
    """fp32 LoRA A (r x in) and B (out x r) of every targeted module, each one allocator block."""
    total = 0
    for name in cfg.targets:
        mod = spec.linear_by_name[name]
        for numel in (cfg.rank * mod.in_features, mod.out_features * cfg.rank):
            total += attribution.block_size(numel * 4)
    return total * spec.num_layers


def test_attribution_of_the_fixture_by_identity_and_frames(fixture):
    cfg = TrainConfig.from_json({**fixture["config"], "targets": tuple(fixture["config"]["targets"])})
    spec = from_hf_config(fixture["hf_config"], name="tiny-llama")
    b = attribution.attribute(fixture["snapshot"], fixture["markers"], fixture["logits_elements"]).breakdown
    assert b["adapters"] == _lora_bytes(spec, cfg)
    # fp32 embeddings and lm_head after prepare_model_for_kbit_training dominate the weights
    assert b["weights"] >= 2 * spec.vocab_size * spec.hidden_size * 4
    assert b["quant_state"] > 0 and b["optimizer"] > 0
    assert b["logits"] >= fixture["logits_elements"] * 4  # the fp32 upcast in the loss at least
    # cuBLAS keeps a workspace per handle through the caching allocator; on this H100 that is 2 x 32 MiB
    assert b["temporaries"] >= 64 * 2**20


def test_timeline_is_bounded_and_keeps_the_peak(fixture):
    peak = attribution.attribute(
        fixture["snapshot"], fixture["markers"], fixture["logits_elements"], max_points=500
    )
    assert 0 < len(peak.timeline) <= 500
    assert max(p["allocated_bytes"] for p in peak.timeline) == peak.allocated_bytes
    assert {p["phase"] for p in peak.timeline} >= {"forward (step 1)", "backward (steady)"}


def test_segment_log_accounts_for_every_reserved_byte_of_the_trace(fixture):
    snap = fixture["snapshot"]
    log = attribution.segment_log(snap, fixture["markers"])
    _blocks, _alloc, reserved, _t0 = attribution.replay(snap)
    first_event_segment = snap["events"][0][2] if snap["events"][0][0] == "segment_alloc" else 0
    # the log's segments add up to what the trace reserved, from before its first event to its end
    assert sum(size for _phase, size, _req, _who in log) == reserved[-1] - (reserved[0] - first_event_segment)
    assert reserved[-1] == snap["reserved_end"]
    phases = [p for p, *_ in log]
    assert "forward (step 1)" in phases and "backward (step 1)" in phases
    # each new segment is at least as large as the request that needed it, and names who asked
    for _phase, size, req, who in log:
        assert req is None or 0 < req <= size
        assert who


@pytest.mark.parametrize("guess_off_mib", [0, 5, -40, 900])
def test_find_min_confirms_a_right_guess_in_one_round_and_survives_a_wrong_one(guess_off_mib):
    MiB = 2**20
    lo, hi = 4 * 2**30, 6 * 2**30
    threshold = 5123 * MiB + 12345
    rounds = []

    def run_caps(caps):
        rounds.append(caps)
        return [Trial(c, c >= threshold, None, None) for c in caps]

    found, _ = find_min(
        run_caps, lo, hi, resolution=32 * MiB, parallel=8, guess=threshold + guess_off_mib * MiB
    )
    assert threshold <= found < threshold + 32 * MiB
    if abs(guess_off_mib) < 32:
        assert len(rounds) == 1


def test_the_current_compact_form_goes_through_every_analysis(fixture):
    """What the child now writes (events with their stream) through attribution, the segment log and the
    allocator model, as on the GPU."""
    from vramfit.probe import allocsim
    from vramfit.probe.snapshot import compact

    with gzip.open(FIXTURES / "probe_snapshot_tiny_llama.pickle.gz", "rb") as f:
        c = compact(pickle.load(f))
    m = fixture["measured"]
    peak = attribution.attribute(c, fixture["markers"], fixture["logits_elements"])
    assert (peak.allocated_bytes, peak.max_reserved_bytes) == (
        m["peak_allocated_bytes"],
        m["peak_reserved_bytes"],
    )
    assert attribution.segment_log(c, fixture["markers"])
    matches, sim = allocsim.check_against_trace(c["events"])
    assert matches and sim.peak_reserved == m["peak_reserved_bytes"]


def test_the_search_under_expandable_segments_starts_at_the_expandable_model():
    """Under expandable segments the first round brackets the model's requirement for the measured peak;
    under the default allocator there is no such guess (the replay or the top of the interval is used)."""
    from dataclasses import replace

    from vramfit.estimate import expandable
    from vramfit.estimate.weights import dequantized_attention_bytes
    from vramfit.models import resolve_model
    from vramfit.probe import _expandable_guess
    from vramfit.probe.result import Measured

    spec, cfg = resolve_model("llama-3.2-1b"), TrainConfig()
    m = Measured.from_json({"device": "cuda", "peak_allocated_bytes": 3 * 2**30, "oom": None})
    dq = dequantized_attention_bytes(spec, cfg)
    gaps = expandable.gap_sources(spec, cfg)
    assert dq == spec.hidden_size * spec.q_size * 2  # q_proj (o_proj is as large), in bf16
    assert gaps.attention_weight == dq and gaps.hidden_state == 512 * spec.hidden_size * 2
    assert _expandable_guess(spec, cfg, m, True) == expandable.required_bytes(3 * 2**30, gaps)
    assert _expandable_guess(spec, cfg, m, True) > 3 * 2**30 + dq  # the pages and the holes, above the peak
    assert _expandable_guess(spec, cfg, m, False) is None
    assert _expandable_guess(spec, cfg, m, None) is None
    assert _expandable_guess(spec, cfg, replace(m, peak_allocated_bytes=None), True) is None
