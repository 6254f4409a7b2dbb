"""The planner: picks that fit, constraints held, the objective's order, the honest no, code that runs."""

from __future__ import annotations

import ast
import itertools
import json

import pytest

from vramfit.cli.main import main
from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.estimate import estimate
from vramfit.gpus import resolve_card
from vramfit.models import resolve_model
from vramfit.plan import Margin, parse_margin, plan
from vramfit.plan.codegen import python_code
from vramfit.plan.objective import quality, rank_key
from vramfit.plan.planner import alternatives
from vramfit.plan.search import Evaluator, _dominated, search
from vramfit.plan.space import RANKS, SHAPE_FIELDS, build_space, target_ladder
from vramfit.units import GiB, MiB

ESTIMATE_KEYS = {
    "breakdown", "peak_phase", "peak_allocated_bytes", "peak_reserved_bytes", "allocator_required_bytes",
    "non_torch_bytes", "required_vram_bytes", "trainable_params", "total_params", "phases", "warnings",
    "assumptions", "verdict", "model", "config",
}  # fmt: skip


def card(size: str = "6GB", gpu: str | None = None):
    return resolve_card(gpu=gpu, vram=None if gpu else size)


def cfg_of(c: dict) -> TrainConfig:
    """TrainConfig from an estimate's config JSON."""
    return TrainConfig.from_json({**c, "targets": tuple(c["targets"])})


def run_json(capsys, *argv):
    code = main(["plan", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


# ---- the pick fits, by an independent estimate ----------------------------------------------------


@pytest.mark.parametrize(
    "model,size",
    [("llama-3.2-1b", "6GB"), ("qwen2.5-0.5b", "6GB"), ("mistral-7b", "8GB"), ("smollm2-135m", "12GB")],
)
def test_pick_fits_with_the_margin(model, size):
    c = card(size)
    r = plan(model, c)
    assert r.fits
    for cand in (r.recommended, *r.alternatives):
        e = estimate(resolve_model(model), cfg_of(cand.estimate.config), c)  # estimated again, from the JSON
        assert e.required_vram_bytes == cand.required_bytes
        assert cand.margin_bytes == Margin.for_allocator(False).bytes_for(e.required_vram_bytes)
        assert e.required_vram_bytes + cand.margin_bytes <= c.usable_bytes
        assert cand.headroom_bytes == c.usable_bytes - e.required_vram_bytes - cand.margin_bytes


def test_margin_is_applied_and_a_bigger_one_picks_smaller():
    c = card("6GB")
    small = plan("llama-3.2-1b", c, margin=parse_margin("0"))
    big = plan("llama-3.2-1b", c, margin=parse_margin("1.5GB"))
    assert small.recommended.margin_bytes == 0 and big.recommended.margin_bytes == int(1.5 * GiB)
    assert big.recommended.required_bytes + int(1.5 * GiB) <= c.usable_bytes
    assert big.recommended.required_bytes < small.recommended.required_bytes
    assert small.recommended.headroom_bytes < 1.5 * GiB  # the zero-margin pick uses the room


# ---- the search finds what brute force finds ------------------------------------------------------


def test_trainable_params_without_an_estimate_match_the_estimate():
    from vramfit.plan.search import trainable_params

    for model in ("llama-3.2-1b", "phi-3-mini", "gemma-2-2b"):
        arch = resolve_model(model)
        first = target_ladder(arch)[0]
        for cfg in (
            TrainConfig(targets=first),
            TrainConfig(targets=("all-linear",), rank=64),
            TrainConfig(method="full"),
        ):
            assert trainable_params(arch, cfg) == estimate(arch, cfg).trainable_params


@pytest.mark.parametrize("size", ["2GB", "5GB"])
def test_search_matches_brute_force_on_a_small_space(size):
    """Every configuration of the space estimated (no bounds, no dominance, no pruning): same pick, same
    alternatives."""
    arch, c = resolve_model("smollm2-135m"), card(size)
    space = build_space(
        arch, c, {"method": "qlora", "optimizer": "adamw_8bit"}, min_seq=256, effective_batch=4
    )
    margin = Margin()
    outcome = search(space, Evaluator(arch, c, margin))
    ev = Evaluator(arch, c, margin)
    every = [ev(space.config(s, q, b)) for s in space.shapes() for q in space.seqs for b in space.batches]
    assert len(every) == outcome.stats.configurations  # the count the benchmark reports is the space
    fitting = sorted((e for e in every if e.fits), key=lambda e: e.key, reverse=True)
    assert fitting, "the case must have configurations that fit"
    assert any(not e.fits for e in every), "and some that do not"
    assert outcome.ranked[0].key == fitting[0].key
    assert outcome.ranked[0].config == fitting[0].config
    assert outcome.stats.estimate_calls < len(every) / 5
    # the alternatives too (among shapes no other value dominates, which the pick's equality covers):
    # each shape's best by brute force, then the planner's own de-duplication
    best_per_shape: dict = {}
    for e in fitting:
        shape = tuple(getattr(e.config, f) for f in SHAPE_FIELDS)
        if not _dominated(space, shape):
            best_per_shape.setdefault(shape, e)
    brute = sorted(best_per_shape.values(), key=lambda e: e.key, reverse=True)
    assert [e.config for e in alternatives(outcome.ranked, 3)] == [e.config for e in alternatives(brute, 3)]


@pytest.mark.parametrize("model", ["smollm2-135m", "llama-3.2-1b", "qwen3-0.6b", "phi-3-mini"])
def test_memory_is_monotone_along_the_orders_the_search_relies_on(model):
    """search.py settles configurations by these orders; if the estimator broke one, picks could be wrong."""
    arch = resolve_model(model)
    ladder = target_ladder(arch)
    req = lambda cfg: estimate(arch, cfg).required_vram_bytes  # noqa: E731
    for method, opt, gc in itertools.product(
        ("qlora", "lora"), ("adamw_8bit", "paged_adamw_8bit"), (True, False)
    ):
        base = TrainConfig(method=method, optimizer=opt, gradient_checkpointing=gc, attn="sdpa", grad_accum=2)
        for t, r in itertools.product(ladder, RANKS):
            cfg = base.with_(targets=t, rank=r)
            m = req(cfg)
            assert req(cfg.with_(seq_len=1024)) >= m
            assert req(cfg.with_(batch_size=2)) >= m
            assert req(cfg.with_(gradient_checkpointing=False)) >= m if gc else True
            assert req(cfg.with_(attn="eager")) >= m
            if r != RANKS[-1]:
                assert req(cfg.with_(rank=RANKS[RANKS.index(r) + 1])) >= m
            if t != ladder[-1]:
                assert req(cfg.with_(targets=ladder[ladder.index(t) + 1])) >= m
            if method == "qlora":
                assert req(cfg.with_(double_quant=False)) >= m
                assert req(cfg.with_(quant="fp4")) == m
            if opt == "adamw_8bit":
                assert req(cfg.with_(optimizer="adamw_torch")) >= m
            else:
                assert req(cfg.with_(optimizer="paged_adamw_32bit")) >= m


# ---- constraints ---------------------------------------------------------------------------------


def test_fixed_flags_are_held(capsys):
    code, out = run_json(
        capsys, "--model", "llama-3.2-1b", "--vram", "8GB", "--method", "lora", "--rank", "32",
        "--targets", "q_proj,k_proj", "--optimizer", "paged_adamw_8bit", "--no-gradient-checkpointing",
        "--attn", "eager", "--dropout", "0",
    )  # fmt: skip
    assert code == 0
    for cand in (out["recommended"], *out["alternatives"]):
        c = cand["config"]
        assert (c["method"], c["rank"], c["targets"], c["optimizer"]) == (
            "lora",
            32,
            ["q_proj", "k_proj"],
            "paged_adamw_8bit",
        )
        assert (c["gradient_checkpointing"], c["attn"], c["dropout"]) == (False, "eager", 0.0)
    assert {"method", "rank", "targets", "optimizer"} <= set(out["search"]["space"]["fixed"])
    fixed_knobs = {k["knob"] for k in out["knob_prices"] if k["fixed"]}
    assert {"rank", "gradient_checkpointing", "optimizer", "attn", "method"} <= fixed_knobs


def test_seq_len_is_a_minimum():
    r = plan("smollm2-135m", card("12GB"), min_seq=1024)
    assert r.recommended.config.seq_len >= 1024
    assert all(a.config.seq_len >= 1024 for a in r.alternatives)
    tight = plan("llama-3.2-1b", card("4GB"), min_seq=4096)
    assert not tight.fits or tight.recommended.config.seq_len >= 4096
    assert tight.no_fit is None or tight.no_fit.smallest.config.seq_len == 4096


@pytest.mark.parametrize("eff", [8, 12, 32])
def test_effective_batch_is_kept(eff):
    r = plan("qwen2.5-0.5b", card("8GB"), effective_batch=eff)
    for cand in (r.recommended, *r.alternatives):
        assert cand.config.batch_size * cand.config.grad_accum == eff
    for k in r.knob_prices:
        if k.knob == "micro-batch":
            assert k.changes["batch_size"] * k.changes["grad_accum"] == eff


def test_micro_batch_is_the_largest_that_fits():
    r = plan("smollm2-135m", card("24GB"), fixed={"method": "qlora", "targets": ("q_proj", "v_proj"), "rank": 8,
             "gradient_checkpointing": True}, min_seq=8192)  # fmt: skip
    # a tiny adapter at the longest sequence on a big card: room for more than one sequence per micro-batch
    assert r.recommended.config.batch_size > 1
    for model, size in (("llama-3.2-1b", "8GB"), ("qwen2.5-0.5b", "6GB")):
        r = plan(model, card(size))
        up = [
            k
            for k in r.knob_prices
            if k.knob == "micro-batch" and k.changes["batch_size"] > r.recommended.config.batch_size
        ]
        assert all(not k.fits for k in up)  # the next bigger micro-batch does not fit


# ---- the objective ------------------------------------------------------------------------------


def test_big_card_all_linear_and_high_rank_win():
    r = plan("mistral-7b", card("24GB"), fixed={"method": "qlora"})
    c = r.recommended.config
    assert c.targets == ("all-linear",) and c.rank == max(RANKS)
    # and it beats every alternative on the stated objective
    assert all(r.recommended.estimate.trainable_params >= a.estimate.trainable_params or
               a.config.seq_len > c.seq_len for a in r.alternatives)  # fmt: skip


def test_small_card_degrades_gracefully():
    big = plan("llama-3.2-1b", card("12GB"), fixed={"method": "qlora"}).recommended
    small = plan("llama-3.2-1b", card("6GB"), fixed={"method": "qlora"}).recommended
    assert small.fits and small.required_bytes < big.required_bytes
    q_small = quality(small.config, small.estimate.trainable_params)
    q_big = quality(big.config, big.estimate.trainable_params)
    assert q_small < q_big  # less capacity or shorter sequences, not nothing


def test_ranking_follows_the_tiers():
    r = plan("qwen2.5-1.5b", card("8GB"), top=6)
    keys = [
        rank_key(c.config, c.estimate.trainable_params, c.headroom_bytes)
        for c in (r.recommended, *r.alternatives)
    ]
    assert keys == sorted(keys, reverse=True)
    assert all(c.trades and c.trades[-1].startswith("needs ") for c in r.alternatives)


def test_never_a_dominated_choice_when_its_better_twin_is_searched():
    r = plan("qwen2.5-1.5b", card("8GB"), top=6)
    for c in (r.recommended, *r.alternatives):
        assert c.config.attn == "sdpa" and c.config.optimizer in ("adamw_8bit", "paged_adamw_8bit")
        if c.config.is_4bit:
            assert c.config.resolved_quant == "nf4" and c.config.double_quant


# ---- the card's dtype ---------------------------------------------------------------------------


def test_rtx_2060_computes_in_fp16(capsys):
    code, out = run_json(capsys, "--model", "llama-3.2-1b", "--gpu", "rtx-2060")
    assert code == 0
    for cand in (out["recommended"], *out["alternatives"]):
        assert cand["config"]["compute_dtype"] == "fp16"
        assert cand["config"]["load_dtype"] in ("fp16", "fp32")
    assert "fp16=True" in out["code"]["python"] and "bf16=True" not in out["code"]["python"]
    assert any("no bf16" in n for n in out["notes"])


def test_vram_alone_assumes_a_recent_card_and_says_so(capsys):
    code, out = run_json(capsys, "--model", "llama-3.2-1b", "--vram", "6GB")
    assert code == 0 and out["recommended"]["config"]["compute_dtype"] == "bf16"
    assert any("assumed a recent card" in n for n in out["notes"])


def test_full_fine_tuning_in_fp16_keeps_fp32_weights():
    r = plan("smollm2-135m", card(gpu="rtx-2060"), fixed={"method": "full"})
    assert (r.recommended.config.compute_dtype, r.recommended.config.load_dtype) == ("fp16", "fp32")


# ---- the honest no -------------------------------------------------------------------------------


def test_mistral_7b_on_4gb_is_an_honest_no(capsys):
    code, out = run_json(capsys, "--model", "mistral-7b", "--vram", "4GB")
    assert code == 1
    assert out["recommended"] is None and out["verdict"]["fits"] is False
    nf = out["no_fit"]
    s = nf["smallest"]
    b, ctx = s["breakdown"], s["non_torch_bytes"]["cuda_context"]
    usable = out["card"]["usable_bytes"]
    # the NF4 weights + fp32 embeddings + the CUDA context alone exceed the card
    assert s["config"]["quant"] == "nf4" and b["weights"] + b["quant_state"] + ctx > usable
    assert "alone exceed" in nf["reasons"][0] and "fp32" in nf["reasons"][0]
    assert nf["card_needed_bytes"] > out["card"]["capacity_bytes"]
    assert nf["card_needed_bytes"] >= s["required_vram_bytes"] + s["margin_bytes"]
    assert nf["cards_that_fit"]
    fits = nf["models_that_fit"]
    assert fits and all(m["total_params"] < 7e9 and m["headroom_bytes"] >= 0 for m in fits)
    assert [m["total_params"] for m in fits] == sorted((m["total_params"] for m in fits), reverse=True)
    main(["plan", "--model", "mistral-7b", "--vram", "4GB"])
    text = capsys.readouterr().out
    assert "Nothing fits" in text and "GiB" in text and fits[0]["name"] in text


def test_a_no_that_may_still_run_says_so_with_the_low_end():
    """llama-3.2-1b on 3.8 GB: the smallest configuration misses at the high end of the requirement's range
    with the safety margin but not at its low end: the reasons say it may run, with the low end's figure; mistral-7b on 4 GB (its
    frozen weights alone exceed the card) says nothing of the kind."""
    from vramfit.units import format_bytes

    arch, c = resolve_model("llama-3.2-1b"), card("3.8GB")
    r = plan(arch, c)
    assert r.recommended is None
    smallest = r.no_fit.smallest
    est = smallest.estimate
    assert est.required_vram_low_bytes <= c.usable_bytes < smallest.required_bytes + smallest.margin_bytes
    line = next(x for x in r.no_fit.reasons if "may still run" in x)
    assert format_bytes(est.required_vram_low_bytes) in line
    r7 = plan(resolve_model("mistral-7b"), card("4GB"))
    assert not any("may still run" in x for x in r7.no_fit.reasons)


def test_the_smallest_configuration_is_the_least_memory_of_the_space():
    arch, c = resolve_model("mistral-7b"), card("4GB")
    r = plan(arch, c)
    s = r.no_fit.smallest
    space = build_space(arch, c, min_seq=512)
    ev = Evaluator(arch, c, Margin())
    for shape in itertools.islice(space.shapes(), 0, None, 7):  # a sample of every family
        assert ev(space.config(shape, space.seqs[0], space.batches[0])).required_bytes >= s.required_bytes


def test_card_needed_really_fits():
    r = plan("mistral-7b", card("4GB"))
    need = r.no_fit.card_needed_bytes
    bigger = resolve_card(vram=f"{-(-need // MiB)}MiB")
    r2 = plan("mistral-7b", bigger)
    assert r2.fits


# ---- input errors and exit codes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["--model", "mistral-7b"], "--vram"),
        (["--model", "mistral-7b", "--vram", "4GB", "--margin", "lots"], "--margin"),
        (["--model", "mistral-7b", "--vram", "4GB", "--margin", "150%"], "--margin"),
        (["--model", "mistral-7b", "--vram", "4GB", "--effective-batch", "0"], "--effective-batch"),
        (
            ["--model", "mistral-7b", "--vram", "4GB", "--effective-batch", "16", "--batch-size", "3"],
            "--batch-size",
        ),
        (
            [
                "--model",
                "mistral-7b",
                "--vram",
                "4GB",
                "--effective-batch",
                "16",
                "--batch-size",
                "2",
                "--grad-accum",
                "4",
            ],
            "--effective-batch",
        ),  # fmt: skip
        (["--model", "mistral-7b", "--vram", "4GB", "--targets", "qq_proj"], "--targets"),
        (["--model", "mistral-7b", "--vram", "4GB", "--seq-len", "0"], "--seq-len"),
        (["--model", "mistral-7b", "--vram", "4GB", "--top", "-1"], "--top"),
        (["--model", "mistral-7b", "--vram", "4GB", "--optimizer", "adam"], "--optimizer"),
        (["--model", "mistral-7b", "--vram", "4GB", "--method", "full", "--quant", "nf4"], "--quant"),
        (["--model", "llama-3.2-1b", "--gpu", "rtx-2060", "--compute-dtype", "bf16"], "--compute-dtype"),
        (["--model", "nosuchmodel", "--vram", "4GB"], "--model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, flag):
    code = main(["plan", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert flag in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_margin_parsing():
    assert parse_margin("15%") == Margin(0.15, 0, provisional=False)
    assert parse_margin("300MiB") == Margin(0.0, 300 * MiB, provisional=False)
    assert parse_margin("0").bytes_for(10 * GiB) == 0
    assert Margin().bytes_for(10 * GiB) == int(0.03 * 10 * GiB) + 64 * MiB and Margin().provisional
    with pytest.raises(InputError, match="--margin"):
        parse_margin("-5%")


def test_the_default_margin_is_stated(capsys):
    main(["plan", "--model", "llama-3.2-1b", "--vram", "6GB", "--no-expandable-segments"])
    out = capsys.readouterr().out
    m = Margin.for_allocator(False)
    assert f"{m.fraction * 100:g}% of the estimate" in out and "vramfit/data/allocator_fit.json" in out
    assert "the default caching allocator" in out


# ---- JSON ---------------------------------------------------------------------------------------


def test_json_keys(capsys):
    code, out = run_json(capsys, "--model", "qwen2.5-0.5b", "--vram", "6GB", "--top", "2")
    assert code == 0
    assert out["kind"] == "plan"
    assert {"recommended", "alternatives", "knob_prices", "margin_bytes", "verdict", "code", "search"} <= set(
        out
    )
    assert ESTIMATE_KEYS <= set(out["recommended"]) and {"margin_bytes", "headroom_bytes"} <= set(
        out["recommended"]
    )
    assert len(out["alternatives"]) == 2 and all(ESTIMATE_KEYS <= set(a) for a in out["alternatives"])
    v = out["verdict"]
    assert v["fits"] is True and v["headroom_bytes"] >= 0 and v["margin_bytes"] == out["margin_bytes"] > 0
    assert v["required_vram_bytes"] + v["margin_bytes"] + v["headroom_bytes"] == v["usable_bytes"]
    k = out["knob_prices"][0]
    assert {"knob", "change", "required_vram_bytes", "delta_bytes", "fits", "fixed"} <= set(k)
    assert out["search"]["configurations"] >= 10_000


def test_knob_prices_are_differences_of_estimates():
    c = card("8GB")
    arch = resolve_model("llama-3.2-1b")
    r = plan(arch, c)
    pick = r.recommended
    by = {(k.knob, k.change): k for k in r.knob_prices}
    gc = next(k for k in r.knob_prices if k.knob == "gradient_checkpointing")
    again = estimate(arch, pick.config.with_(**gc.changes), c).required_vram_bytes
    assert gc.delta_bytes == again - pick.required_bytes
    if pick.config.gradient_checkpointing:
        assert gc.delta_bytes > 0  # turning it off keeps every layer's activations
    longer = next(
        k for k in r.knob_prices if k.knob == "seq_len" and k.changes["seq_len"] > pick.config.seq_len
    )
    assert longer.delta_bytes > 0 and len(by) == len(r.knob_prices)


# ---- the code to paste --------------------------------------------------------------------------


def _calls(code: str) -> dict[str, dict]:
    """Keyword arguments of each call in the snippet, by callee name (literal values only)."""
    out = {}
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            kw = {}
            for k in node.keywords:
                try:
                    kw[k.arg] = ast.literal_eval(k.value)
                except ValueError:
                    kw[k.arg] = ast.unparse(k.value)
            out[name] = kw
    return out


@pytest.mark.parametrize(
    "model,size,fixed",
    [("mistral-7b", "12GB", {}), ("qwen2.5-0.5b", "6GB", {"method": "lora"}),
     ("smollm2-135m", "8GB", {"method": "full"}), ("llama-3.2-1b", "8GB", {"method": "lora", "quant": "int8"})],
)  # fmt: skip
def test_generated_code_is_valid_python_with_the_picked_values(model, size, fixed):
    r = plan(model, card(size), fixed=fixed)
    cfg = r.recommended.config
    compile(r.code, "<plan>", "exec")
    calls = _calls(r.code)
    ta = calls["TrainingArguments"]
    assert (
        ta["per_device_train_batch_size"] == cfg.batch_size
        and ta["gradient_accumulation_steps"] == cfg.grad_accum
    )
    assert ta["optim"] == cfg.optimizer and "gradient_checkpointing" not in ta  # deprecated there in 5.24
    assert ("enable()" in r.code) == cfg.gradient_checkpointing  # checkpointing is enabled on the model
    assert ta.get("bf16", False) == (cfg.compute_dtype == "bf16")
    assert calls["AutoModelForCausalLM.from_pretrained"]["attn_implementation"] == cfg.attn
    if cfg.uses_lora:
        lc = calls["LoraConfig"]
        assert (lc["r"], lc["lora_alpha"], lc["lora_dropout"]) == (cfg.rank, cfg.resolved_alpha, cfg.dropout)
        assert lc["target_modules"] == (
            "all-linear" if cfg.targets == ("all-linear",) else lc["target_modules"]
        )
    else:
        assert "LoraConfig" not in calls
    if cfg.is_4bit:
        bnb = calls["BitsAndBytesConfig"]
        assert (
            bnb["bnb_4bit_quant_type"] == cfg.resolved_quant
            and bnb["bnb_4bit_use_double_quant"] == cfg.double_quant
        )
        if cfg.kbit_upcast:  # checkpointing is enabled after it, on the model, for every base
            assert calls["prepare_model_for_kbit_training"]["use_gradient_checkpointing"] is False
    elif cfg.resolved_quant == "int8":
        assert calls["BitsAndBytesConfig"] == {"load_in_8bit": True}
    else:
        assert "BitsAndBytesConfig" not in calls
    assert f"--seq-len {cfg.seq_len}" in r.estimate_command and r.probe_command.startswith("vramfit probe ")


def test_generated_configs_are_accepted_by_the_real_libraries(tmp_path):
    """The snippet's BitsAndBytesConfig, LoraConfig and TrainingArguments, built by transformers and peft."""
    pytest.importorskip("peft")
    import peft
    import torch
    import transformers

    arch = resolve_model("llama-3.2-1b")
    for cfg in (
        TrainConfig(targets=("all-linear",), rank=64, gradient_checkpointing=False, optimizer="adamw_8bit"),
        TrainConfig(
            method="lora", quant="int8", targets=("attention",), compute_dtype="fp16", load_dtype="fp16"
        ),
    ):
        calls = _calls(python_code(arch, cfg))
        env = {"torch": torch}
        kw = {k: eval(v, env) if isinstance(v, str) and v.startswith("torch.") else v  # noqa: S307
              for k, v in calls["BitsAndBytesConfig"].items()}  # fmt: skip
        bnb = transformers.BitsAndBytesConfig(**kw)
        assert bnb.load_in_4bit == cfg.is_4bit and bnb.load_in_8bit == (cfg.resolved_quant == "int8")
        lora = peft.LoraConfig(**calls["LoraConfig"])
        assert lora.r == cfg.rank
        ta = dict(calls["TrainingArguments"], output_dir=str(tmp_path), fp16=False, bf16=False)  # CPU: no AMP
        args = transformers.TrainingArguments(**ta)
        assert args.per_device_train_batch_size == cfg.batch_size and args.optim.value == cfg.optimizer


def test_attention_targets_expand_to_module_names():
    arch = resolve_model("llama-3.2-1b")
    lc = _calls(python_code(arch, TrainConfig(targets=("attention",))))["LoraConfig"]
    assert lc["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]


# ---- --verify -----------------------------------------------------------------------------------


def test_verify_records_a_miss_and_moves_on():
    """The planner's --verify logic, with a stand-in for vramfit.probe.probe that reports the first
    candidate as running out of memory (the probe itself needs a CUDA GPU; tested on the GPU machine)."""
    from vramfit.probe.result import Measured, Oom, ProbeResult

    calls = []

    def fake_probe(arch, cfg, card, steps, record):
        calls.append(cfg)
        oom = Oom("backward (step 1)", 64 * MiB, "CUDA out of memory") if len(calls) == 1 else None
        m = Measured("cuda", 3 * GiB, 3 * GiB, None, 400 * MiB, 0, None, None, (), fits=oom is None, oom=oom)
        return ProbeResult(arch.name, cfg.to_json(), m, {"gpu": "test stand-in"})

    c = card("6GB")
    plain = plan("llama-3.2-1b", c, top=5)
    r = plan("llama-3.2-1b", c, verify=True, probe_fn=fake_probe)
    assert len(calls) == 2 and calls[0] == plain.recommended.config
    assert [v.fits for v in r.verification] == [False, True] and len(r.misses) == 1
    assert r.recommended.config == calls[1] != plain.recommended.config
    assert r.to_json()["verification"][0]["oom"]["phase"] == "backward (step 1)"


def test_verify_without_a_gpu_is_one_clear_line(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: --verify would run")
    code = main(["plan", "--model", "smollm2-135m", "--vram", "4GB", "--verify"])
    err = capsys.readouterr().err
    assert code == 2 and "--verify" in err and "CUDA" in err and len(err.strip().splitlines()) == 1


def test_verify_when_every_candidate_misses_there_is_no_pick():
    """As seen on an H100 emulating a 2.75 GiB card with --margin 0: the three best candidates ran out of
    memory for real. Then there is no pick, every miss is recorded, and the output says so."""
    import io

    from rich.console import Console

    from vramfit.cli.plan_render import render
    from vramfit.probe.result import Measured, Oom, ProbeResult

    def oom_probe(arch, cfg, card, steps, record):
        m = Measured("cuda", 2 * GiB, 2 * GiB, None, 400 * MiB, 0, None, None, (), fits=False,
                     oom=Oom("backward (step 1)", 32 * MiB, "CUDA out of memory"))  # fmt: skip
        return ProbeResult(arch.name, cfg.to_json(), m, {"gpu": "test stand-in"})

    r = plan("smollm2-135m", card("3GB"), margin=parse_margin("0"), verify=True, probe_fn=oom_probe)
    assert not r.fits and r.no_fit is None and len(r.misses) == 3
    out = io.StringIO()
    render(r, Console(file=out, width=120))
    assert "None of the 3 best candidates fits for real" in out.getvalue()
    assert out.getvalue().count("MISS") == 3
