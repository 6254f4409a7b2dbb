"""One card rule: estimate, plan and probe (parent and child) give one answer for every card and run."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from vramfit.catalog import card as card_rule
from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.gpus import resolve_card
from vramfit.models import resolve_model

ARCH = resolve_model("smollm2-135m")
# compute capability 5.2 (Maxwell) is not in the database: a Pascal card with its capability replaced
CARDS = {
    "maxwell": replace(resolve_card(gpu="gtx-1080"), name="maxwell", compute_capability=(5, 2)),
    "gtx-1080": resolve_card(gpu="gtx-1080"),  # 6.1
    "v100-16gb": resolve_card(gpu="v100-16gb"),  # 7.0
    "t4": resolve_card(gpu="t4"),  # 7.5
    "rtx-3060": resolve_card(gpu="rtx-3060"),  # 8.6
}
RUNS = [("qlora", "nf4"), ("qlora", "fp4"), ("lora", "int8"), ("lora", "none"), ("full", "none")]
DTYPES = ("bf16", "fp16", "fp32")
ATTNS = ("sdpa", "eager", "flash_attention_2")
# the kbit upcast matters only for a bitsandbytes base
GRID = [
    g
    for g in itertools.product(CARDS, RUNS, DTYPES, DTYPES, ATTNS, (True, False))
    if g[1][1] != "none" or g[5]
]


def _cfg(run, load, compute, attn, upcast) -> TrainConfig:
    method, quant = run
    return TrainConfig(method=method, quant=quant, load_dtype=load, compute_dtype=compute, attn=attn,
                       kbit_upcast=upcast, seq_len=64)  # fmt: skip


def _answer(fn) -> str | None:
    """None when ``fn`` accepts the run, else the error it raises (flag and message)."""
    try:
        fn()
    except InputError as e:
        return str(e)
    return None


def _estimate(cfg, card):
    from vramfit.estimate import estimate

    return _answer(lambda: estimate(ARCH, cfg, card))


def _plan(cfg, card):
    from vramfit.plan import plan

    fixed = {f: getattr(cfg, f) for f in ("method", "quant", "load_dtype", "compute_dtype", "attn", "kbit_upcast",
                                          "rank", "targets", "gradient_checkpointing", "optimizer", "double_quant",
                                          "batch_size", "grad_accum")}  # fmt: skip
    return _answer(lambda: plan(ARCH, card, fixed, min_seq=cfg.seq_len))


class _Ran(Exception):
    """The probe accepted the run and went on to start a trial."""


def _probe(cfg, card, monkeypatch):
    import vramfit.probe.runner as runner
    from vramfit.probe import probe

    def start(*args, **kwargs):
        raise _Ran

    monkeypatch.setattr(runner, "run_trial", start)
    try:
        return _answer(lambda: probe(ARCH, cfg, card, device="cpu"))
    except _Ran:
        return None


def _child(cfg, card, monkeypatch):
    """The probe's child on a CUDA device of the card's compute capability (torch.cuda faked up to
    the point where the child would initialise CUDA)."""
    import torch

    from vramfit.probe import child
    from vramfit.probe.child import trial_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: card.compute_capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: card.name)

    def init():
        raise _Ran

    monkeypatch.setattr(torch.cuda, "init", init)
    try:
        return _answer(lambda: child.run_trial(trial_config(ARCH, cfg, device="cuda", steps=1)))
    except _Ran:
        return None


@pytest.mark.parametrize(("card", "run", "load", "compute", "attn", "upcast"), GRID)
def test_estimate_plan_and_probe_give_one_answer(monkeypatch, card, run, load, compute, attn, upcast):
    pytest.importorskip("torch")
    cfg, c = _cfg(run, load, compute, attn, upcast), CARDS[card]
    want = card_rule.card_problems(cfg, attn, c.compute_capability, c.name)
    expected = str(want[0]) if want else None
    assert _estimate(cfg, c) == expected
    assert _plan(cfg, c) == expected
    assert _probe(cfg, c, monkeypatch) == expected
    assert _child(cfg, c, monkeypatch) == expected


def test_the_rule_itself():
    t4, ampere = (7, 5), (8, 6)
    # the example that used to disagree: a bf16 load under fp16 mixed precision runs on a T4 ...
    assert card_rule.card_problems(TrainConfig(compute_dtype="fp16"), "sdpa", t4) == []
    # ... computing in bf16 does not: asked for, or bf16 weights left as loaded without autocast
    assert [e.flag for e in card_rule.card_problems(TrainConfig(), "sdpa", t4)] == ["--compute-dtype"]
    lora_fp32 = TrainConfig(method="lora", compute_dtype="fp32")
    assert [e.flag for e in card_rule.card_problems(lora_fp32, "sdpa", t4)] == ["--load-dtype"]
    # with the kbit upcast the bf16 weights become fp32 before training: nothing computes in bf16
    assert card_rule.card_problems(TrainConfig(compute_dtype="fp32"), "sdpa", t4) == []
    no_upcast = TrainConfig(compute_dtype="fp32", kbit_upcast=False)
    assert [e.flag for e in card_rule.card_problems(no_upcast, "sdpa", t4)] == ["--load-dtype"]
    assert card_rule.card_problems(lora_fp32, "sdpa", ampere) == []
    int8 = TrainConfig(method="lora", quant="int8", compute_dtype="fp16")
    assert [e.flag for e in card_rule.card_problems(int8, "flash_attention_2", (7, 0))] == [
        "--quant",
        "--attn",
    ]
    assert card_rule.card_problems(TrainConfig(), "flash_attention_2", None) == []  # unknown card
    assert card_rule.compute_dtype_for(t4) == "fp16" and card_rule.compute_dtype_for(ampere) == "bf16"


def test_cli_estimate_and_plan_agree_on_a_bf16_load_on_a_t4(capsys):
    from vramfit.cli.main import main

    assert main(["estimate", "--model", "tinyllama-1.1b", "--gpu", "t4", "--compute-dtype", "fp16"]) == 0
    assert main(["plan", "--model", "tinyllama-1.1b", "--gpu", "t4", "--load-dtype", "bf16"]) == 0
    capsys.readouterr()
    assert main(["plan", "--model", "tinyllama-1.1b", "--gpu", "t4", "--compute-dtype", "bf16"]) == 2
    assert main(["estimate", "--model", "tinyllama-1.1b", "--gpu", "t4", "--compute-dtype", "bf16"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].split(": ", 1)[1] == err[1].split(": ", 1)[1]
