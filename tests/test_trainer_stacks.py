"""The trainer stacks: --trainer / --loss in the config and estimator, and TRL's SFTTrainer on the CPU.

The TRL tests run the real SFTTrainer (with its fused LM head) on a tiny model; they skip when trl is not
installed (``pip install 'vramfit[trl]'``).
"""

from __future__ import annotations

import importlib.util

import pytest

from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.estimate import estimate
from vramfit.estimate.losses import liger_chunk_tokens, loss_bytes
from vramfit.models import from_hf_config, resolve_model

TINY = dict(model_type="llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            tie_word_embeddings=False, torch_dtype="bfloat16")  # fmt: skip
SPEC = from_hf_config(TINY, name="tiny-llama")
HAS_TRL = importlib.util.find_spec("trl") is not None and importlib.util.find_spec("datasets") is not None


def test_trl_default_loss_is_the_fused_head_and_drops_the_logits():
    cfg = TrainConfig(seq_len=1024, batch_size=2)
    hf = estimate("llama-3.2-1b", cfg)
    trl = estimate("llama-3.2-1b", cfg.with_(trainer="trl"))
    assert trl.config["loss"] == "fused" and hf.config["loss"] == "full"
    hf_logits = max(p.breakdown.logits for p in hf.phases)
    trl_logits = max(p.breakdown.logits for p in trl.phases)
    assert trl_logits < hf_logits / 5  # 128k vocabulary: the fp32 logits are the Trainer's largest term
    assert trl.peak_allocated_bytes < hf.peak_allocated_bytes


def _adapters(arch, cfg: TrainConfig) -> int:
    return next(p.breakdown.adapters for p in estimate(arch, cfg).phases if p.name == "optimizer (steady)")


def test_trl_casts_adapters_of_a_quantized_model_to_bf16():
    arch = resolve_model("llama-3.2-1b")
    hf, trl = _adapters(arch, TrainConfig()), _adapters(arch, TrainConfig(trainer="trl"))
    assert trl * 2 == pytest.approx(hf, rel=0.01) and trl > 0
    lora16 = TrainConfig(method="lora", optimizer="adamw_torch")  # not quantized: peft's fp32 adapters stay
    assert _adapters(arch, lora16.with_(trainer="trl")) == _adapters(arch, lora16)


def test_liger_chunks_tokens_by_vocabulary_over_hidden():
    arch = resolve_model("llama-3.2-1b")  # V = 128256, H = 2048: ceil(V / H) = 63
    assert liger_chunk_tokens(arch, 2048) == 64  # next_pow2(ceil(2048 / 63) = 33)
    assert liger_chunk_tokens(arch, 8) == 1
    lb = loss_bytes(arch, TrainConfig(loss="liger", kbit_upcast=False, seq_len=1024, batch_size=2), 2048)
    # bf16 input and head: grad_input (2048 x 2048 x 2) + one 64 x V bf16 chunk, no copy of the head
    assert lb.forward_peak < 2048 * 2048 * 2 + 64 * 128256 * 2 + (1 << 20)


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"trainer": "deepspeed"}, "--trainer"),
        ({"loss": "chunked"}, "--loss"),
        ({"trainer": "trl", "loss": "liger"}, "--loss"),
    ],  # fmt: skip
)
def test_unknown_or_impossible_stacks_name_their_flag(changes, flag):
    with pytest.raises(InputError, match=flag):
        estimate(SPEC, TrainConfig(**changes))


def test_cli_trainer_flag(capsys):
    from vramfit.cli.main import main

    assert main(["estimate", "--model", "llama-3.2-1b", "--trainer", "trl", "--json"]) in (0, 1)
    assert '"trainer": "trl"' in capsys.readouterr().out
    # main returns argparse's code
    assert main(["estimate", "--model", "llama-3.2-1b", "--loss", "nope"]) == 2


@pytest.mark.skipif(not HAS_TRL, reason="trl / datasets not installed")
@pytest.mark.parametrize("cfg", [TrainConfig(seq_len=32, trainer="trl"),
                                 TrainConfig(seq_len=32, trainer="trl", kbit_upcast=False, batch_size=2)])  # fmt: skip
def test_trl_sft_trainer_runs_the_recipe_on_cpu(cfg):
    from vramfit.probe import probe

    r = probe(SPEC, cfg, steps=2, device="cpu")
    assert [p.name for p in r.measured.phases][-1] == "optimizer (steady)"
    assert r.to_json()["environment"].get("trl")
    assert r.to_json()["config"]["loss"] == "fused"


def test_vramfit_toml_takes_trainer_and_loss():
    from vramfit.check.configfile import parse_check_toml

    f = parse_check_toml(
        '[configs.sft]\nmodel = "llama-3.2-1b"\ntrainer = "trl"\n\n[configs.liger]\nmodel = "qwen2.5-0.5b"\nloss = "liger"\n'
    )
    sft, liger = f.configs
    assert (sft.config.trainer, sft.config.resolved_loss) == ("trl", "fused")
    assert (liger.config.trainer, liger.config.resolved_loss) == ("hf", "liger")
    with pytest.raises(InputError, match="loss"):
        parse_check_toml('[configs.x]\nmodel = "llama-3.2-1b"\ntrainer = "trl"\nloss = "liger"\n')


def test_drift_warning_names_an_unmeasured_trl_or_liger():
    from vramfit.estimate.profile import MEASURED, MEASURED_TRAINER_STACK, drift_warnings

    assert drift_warnings({**MEASURED, **MEASURED_TRAINER_STACK}) == []
    w = drift_warnings({**MEASURED, "trl": "1.7.0", "liger-kernel": None})
    assert len(w) == 1 and "trl 1.7.0" in w[0] and "--trainer trl" in w[0]


def test_knob_prices_offer_the_loss_and_say_when_it_beats_rank_and_sequence():
    from vramfit.gpus import resolve_card
    from vramfit.plan import plan

    r = plan(resolve_model("gemma-2-2b"), resolve_card(vram="12GB"), {}, min_seq=1024)
    loss = [p for p in r.knob_prices if p.knob == "loss"]
    assert {p.changes["loss"] for p in loss} == {"liger", "fused"}
    fused = next(p for p in loss if p.changes["loss"] == "fused")
    others = [p.delta_bytes for p in r.knob_prices if p.knob in ("rank", "seq_len")]
    assert fused.delta_bytes < min(others)  # 256k vocabulary: the logits dominate
    assert "saves more than a smaller rank" in fused.note


def test_padding_free_is_one_row_of_all_tokens():
    base = TrainConfig(trainer="trl", seq_len=1024, batch_size=4)
    flat = base.with_(padding_free=True)
    peak = {a: (estimate("llama-3.2-1b", base.with_(attn=a)), estimate("llama-3.2-1b", flat.with_(attn=a)))
            for a in ("sdpa", "eager", "flash_attention_2")}  # fmt: skip
    sdpa, sdpa_flat = peak["sdpa"]
    # sdpa: the same activations plus one (4096 x 4096) boolean block-diagonal mask
    assert sdpa_flat.peak_allocated_bytes - sdpa.peak_allocated_bytes == 4096 * 4096
    fa, fa_flat = peak["flash_attention_2"]
    assert fa_flat.peak_allocated_bytes == fa.peak_allocated_bytes  # varlen: nothing quadratic
    eager, eager_flat = peak["eager"]
    assert (
        eager_flat.peak_allocated_bytes > 2 * eager.peak_allocated_bytes
    )  # scores of 4096 x 4096, not 4 x 1024^2
    with pytest.raises(InputError, match="--padding-free"):
        estimate(SPEC, TrainConfig(padding_free=True))


@pytest.mark.skipif(not HAS_TRL, reason="trl / datasets not installed")
def test_trl_padding_free_runs_on_cpu():
    from vramfit.probe import probe

    r = probe(SPEC, TrainConfig(seq_len=32, batch_size=2, trainer="trl", padding_free=True, attn="sdpa"),
              steps=2, device="cpu")  # fmt: skip
    assert r.to_json()["config"]["padding_free"] is True
    assert [p.name for p in r.measured.phases][-1] == "optimizer (steady)"
