"""The estimator's terms, checked against numbers worked out by hand."""

from __future__ import annotations

import pytest

from vramfit.config import TrainConfig
from vramfit.errors import InputError
from vramfit.estimate import OPTIMIZERS, estimate
from vramfit.estimate.activations import layer_activations
from vramfit.estimate.alloc import block
from vramfit.estimate.logits import logits_bytes
from vramfit.estimate.optimizers import optimizer_bytes
from vramfit.estimate.weights import four_bit_state_bytes, four_bit_weight_bytes, weight_bytes
from vramfit.models.spec import ArchSpec
from vramfit.units import MiB

# A Mistral-7B-shaped model written out here, so that these tests do not depend on the registry.
MISTRAL = ArchSpec("mistral-like", "mistral", 32000, 4096, 14336, 32, 32, 8, 128)
TINY = ArchSpec("tiny", "llama", 1000, 64, 128, 2, 4, 2, 16)


def test_block_rounds_to_512():
    assert block(1) == 512 and block(512) == 512 and block(513) == 1024 and block(0) == 0


def test_nf4_double_quant_bytes_of_a_4096_square_layer():
    n = 4096 * 4096
    assert four_bit_weight_bytes(n) == 8 * MiB  # two codes per byte
    # 262144 blocks of 64 -> uint8 absmax (262144 B) + 1024 nested fp32 absmax (4096 B)
    # + offset (512 B block) + 256-entry fp32 dynamic code (1024 B) + 16-entry NF4 code (512 B block)
    assert four_bit_state_bytes(n, double_quant=True) == 262144 + 4096 + 512 + 1024 + 512
    # without double quantization: one fp32 absmax per 64 values = 0.5 bit per weight
    assert four_bit_state_bytes(n, double_quant=False) == 262144 * 4 + 512


def test_double_quant_is_about_0_127_bits_per_parameter():
    n = 4096 * 14336
    bits = four_bit_state_bytes(n, True) * 8 / n
    assert 0.125 < bits < 0.130


def test_weights_nf4_with_fp32_upcast_of_embeddings():
    w = weight_bytes(MISTRAL, TrainConfig())
    linears = 32 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336)
    assert MISTRAL.quantizable_params == linears
    # embeddings + lm_head in fp32 after prepare_model_for_kbit_training, norms too
    unq = 2 * 32000 * 4096 * 4 + (2 * 32 + 1) * block(4096 * 4)
    assert w.weights == linears // 2 + unq
    # without the upcast they stay bf16
    w16 = weight_bytes(MISTRAL, TrainConfig(kbit_upcast=False))
    assert w.weights - w16.weights == 2 * 32000 * 4096 * 2 + (2 * 32 + 1) * (
        block(4096 * 4) - block(4096 * 2)
    )


def test_tied_embeddings_are_stored_once():
    tied = ArchSpec("t", "qwen2", 1000, 64, 128, 2, 4, 2, 16, tie_word_embeddings=True)
    assert tied.total_params == TINY.total_params - 1000 * 64
    assert (
        weight_bytes(TINY, TrainConfig()).weights - weight_bytes(tied, TrainConfig()).weights == 1000 * 64 * 4
    )


def test_fp32_logits_bytes_for_a_known_batch():
    tokens = 2 * 512
    lb = logits_bytes(MISTRAL, TrainConfig(batch_size=2), tokens)
    # bf16 logits + their fp32 copy + fp32 log_softmax output
    assert lb.forward_peak == (2 + 4 + 4) * 32000 * tokens
    # log_softmax backward: its output, the incoming and the outgoing fp32 gradient
    assert lb.backward_peak == 12 * 32000 * tokens
    # bf16 copy of the fp32 (upcast) lm_head, kept for backward by autocast
    assert lb.head_weight_copy == 32000 * 4096 * 2
    assert logits_bytes(MISTRAL, TrainConfig(kbit_upcast=False), tokens).head_weight_copy == 0


def test_paged_adamw_8bit_layout():
    spec = OPTIMIZERS["paged_adamw_8bit"]
    # 16 x 4096 = 65536 values < 1e5: not paged; uint8 state1+state2 + one fp32 absmax per 256 values each
    small = optimizer_bytes(spec, [(16, 4096, 1)], 4)
    assert small.paged_state == 0 and small.torch_state == 2 * 65536 + 2 * block(256 * 4)
    # 14336 x 16 = 229376 >= 1e5: state in managed memory, absmax in torch
    big = optimizer_bytes(spec, [(14336, 16, 1)], 4)
    assert big.paged_state == 2 * 229376 and big.torch_state == 2 * block(896 * 4)
    # fewer than 4096 values: 32-bit state
    tiny = optimizer_bytes(OPTIMIZERS["adamw_8bit"], [(16, 64, 1)], 4)
    assert tiny.torch_state == 2 * 1024 * 4


def test_adam_32bit_and_adafactor_and_sgd():
    assert (
        optimizer_bytes(OPTIMIZERS["adamw_torch_fused"], [(1024, 1024, 3)], 4).torch_state == 3 * 2 * 4 * MiB
    )
    # foreach AdamW makes one copy of all second moments during step()
    assert optimizer_bytes(OPTIMIZERS["adamw_torch"], [(1024, 1024, 3)], 4).step_temp == 3 * 4 * MiB
    # full fine-tuning in bf16: state like the parameter (torch zeros_like)
    assert optimizer_bytes(OPTIMIZERS["adamw_torch_fused"], [(1024, 1024, 1)], 2).torch_state == 4 * MiB
    # Adafactor: row + column statistics for a matrix, full for a vector
    assert optimizer_bytes(OPTIMIZERS["adafactor"], [(1024, 2048, 1), (1000, 1, 1)], 4).torch_state == (
        1024 * 4 + 2048 * 4 + block(1000 * 4)
    )
    assert optimizer_bytes(OPTIMIZERS["sgd"], [(1024, 1024, 1)], 4).torch_state == 0


def test_trainable_params_lora_q_v():
    e = estimate(MISTRAL, TrainConfig())
    # r * (in + out) for q (4096 -> 4096) and v (4096 -> 1024), 32 layers
    assert e.trainable_params == 32 * 16 * ((4096 + 4096) + (4096 + 1024)) == 6_815_744
    assert (
        estimate(MISTRAL, TrainConfig(method="full", optimizer="adamw_torch")).trainable_params
        == MISTRAL.total_params
    )


def test_peak_is_a_phase_not_the_sum_of_maxima():
    e = estimate(MISTRAL, TrainConfig(method="full", optimizer="adamw_torch", seq_len=2048))
    assert e.peak_allocated_bytes == max(p.allocated_bytes for p in e.phases)
    assert e.breakdown == next(p.breakdown for p in e.phases if p.name == e.peak_phase)
    sum_of_maxima = sum(max(getattr(p.breakdown, c) for p in e.phases) for c in e.breakdown.to_json())
    assert sum_of_maxima > e.peak_allocated_bytes


def test_invariants_hold_across_configs():
    for cfg in (
        TrainConfig(),
        TrainConfig(method="lora", optimizer="adamw_torch"),
        TrainConfig(method="full", optimizer="adafactor", seq_len=128),
        TrainConfig(quant="fp4", double_quant=False, attn="eager", gradient_checkpointing=False),
        TrainConfig(method="lora", quant="int8", grad_accum=4),
    ):
        e = estimate(MISTRAL, cfg)
        assert e.peak_allocated_bytes <= e.allocator_required_bytes <= e.peak_reserved_bytes
        assert e.required_vram_bytes == e.allocator_required_bytes + e.non_torch.total
        assert e.breakdown.total == e.peak_allocated_bytes


def test_gradient_checkpointing_keeps_only_layer_inputs():
    on = estimate(MISTRAL, TrainConfig(seq_len=1024))
    off = estimate(MISTRAL, TrainConfig(seq_len=1024, gradient_checkpointing=False))
    assert off.peak_allocated_bytes > on.peak_allocated_bytes
    layer = layer_activations(MISTRAL, TrainConfig(), "sdpa")
    # without checkpointing all 32 layers keep everything; with it, 32 fp32 layer inputs
    kept_off = next(p for p in off.phases if p.name == "forward (steady)").breakdown.activations
    assert kept_off >= 32 * layer.saved_per_token * 1024


def test_eager_attention_grows_with_the_square_of_the_sequence():
    cfg = TrainConfig(attn="eager", gradient_checkpointing=False)
    a1 = layer_activations(MISTRAL, cfg, "eager").quadratic_bytes(1024)
    a2 = layer_activations(MISTRAL, cfg, "eager").quadratic_bytes(2048)
    assert a2 == 4 * a1
    # fp32 softmax output + its bf16 copy, per head: 32 heads x s x s x 6 bytes
    assert a1 == 32 * 1024 * 1024 * 6
    assert layer_activations(MISTRAL, cfg, "sdpa").quadratic_bytes(1024) == 0


@pytest.mark.parametrize("field", ["seq_len", "batch_size", "rank"])
def test_memory_grows_with_size_knobs(field):
    base = TrainConfig(targets=("all-linear",))
    small = estimate(MISTRAL, base.with_(**{field: 64})).peak_allocated_bytes
    large = estimate(MISTRAL, base.with_(**{field: 256})).peak_allocated_bytes
    assert large > small


def test_grad_accumulation_keeps_gradients_through_forward():
    one = estimate(MISTRAL, TrainConfig(method="full", optimizer="sgd", seq_len=128))
    four = estimate(MISTRAL, TrainConfig(method="full", optimizer="sgd", seq_len=128, grad_accum=4))
    phases4 = {p.name: p.breakdown for p in four.phases}
    # every parameter's bf16 gradient is alive while micro-batches 2..4 run forward
    assert (
        phases4["forward (steady)"].gradients
        == phases4["optimizer (steady)"].gradients
        == 2 * MISTRAL.total_params
    )
    assert {p.name: p.breakdown for p in one.phases}["forward (steady)"].gradients == 0


def test_paged_state_counts_outside_torch():
    e = estimate(MISTRAL, TrainConfig(targets=("all-linear",)))
    assert e.non_torch.paged_optimizer > 0
    assert (
        estimate(
            MISTRAL, TrainConfig(targets=("all-linear",), optimizer="adamw_8bit")
        ).non_torch.paged_optimizer
        == 0
    )


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (TrainConfig(quant="none"), r"--quant: none does not go with --method qlora"),
        (TrainConfig(method="full", quant="nf4"), r"--quant: nf4 does not go with --method full"),
        (TrainConfig(rank=0), r"--rank: expected a whole number from 1 to 65,536, got 0"),
        (TrainConfig(seq_len=-1), r"--seq-len: expected a whole number from 1 to 4,194,304"),
        (TrainConfig(batch_size=0), r"--batch-size"),
        (TrainConfig(optimizer="adam"), r"--optimizer: unknown value 'adam'.*accepted: adamw_torch"),
        (TrainConfig(targets=("q_prj",)), r"--targets: .*no module 'q_prj' \(did you mean: q_proj"),
        (TrainConfig(dropout=1.5), r"--dropout"),
        (TrainConfig(compute_dtype="bfloat8"), r"--compute-dtype: unknown value 'bfloat8'"),
    ],
)
def test_impossible_configs_are_rejected(cfg, match):
    with pytest.raises(InputError, match=match):
        estimate(MISTRAL, cfg)


def test_several_problems_are_reported_together():
    with pytest.raises(InputError, match=r"--rank.*--seq-len"):
        estimate(MISTRAL, TrainConfig(rank=0, seq_len=0))


def test_fused_projections_have_their_own_target_names():
    phi = ArchSpec("phi-like", "phi3", 32064, 3072, 8192, 2, 32, 32, 96, fused_qkv=True, fused_gate_up=True)
    with pytest.raises(InputError, match=r"accepted: qkv_proj, o_proj, gate_up_proj, down_proj, all-linear"):
        estimate(phi, TrainConfig())
    e = estimate(phi, TrainConfig(targets=("qkv_proj",), rank=8))
    assert e.trainable_params == 2 * 8 * (3072 + 3 * 3072)
    assert estimate(phi, TrainConfig(targets=("all-linear",), rank=8)).trainable_params == 2 * 8 * (
        (3072 + 9216) + (3072 + 3072) + (3072 + 16384) + (8192 + 3072)
    )


# ---- version drift -----------------------------------------------------------------------------------


def test_known_version_change_applies_only_to_its_versions():
    from vramfit.estimate.profile import KNOWN_CHANGES

    logits = next(c for c in KNOWN_CHANGES if c.package == "transformers")
    assert logits.applies("4.45.2") and logits.applies("4.36.0.dev0")
    assert not logits.applies("4.46.0") and not logits.applies("5.17.0") and not logits.applies("unknown")


def test_drift_warnings_name_the_package_and_the_measured_stack():
    from vramfit.estimate.profile import MEASURED, drift_warnings

    assert drift_warnings(dict(MEASURED)) == []
    assert drift_warnings({**MEASURED, "torch": "2.11.3+cu130", "peft": None}) == []  # same major.minor
    old = drift_warnings({**MEASURED, "transformers": "4.44.2"})
    assert len(old) == 2
    assert old[0].startswith("transformers 4.44.2: ") and "4.46" in old[0]
    assert (
        "installed transformers 4.44.2" in old[1]
        and "transformers 5.17" in old[1]
        and "vramfit probe" in old[1]
    )
    newer = drift_warnings({**MEASURED, "bitsandbytes": "0.51.0"})
    assert newer == [newer[0]] and "installed bitsandbytes 0.51.0" in newer[0]


def test_estimate_warns_about_the_installed_stack_only_when_it_differs(monkeypatch):
    from vramfit.estimate import profile

    monkeypatch.setattr(profile, "installed", lambda: dict(profile.MEASURED))
    profile.installed_drift_warnings.cache_clear()
    assert not any("measured with" in w for w in estimate("qwen2.5-0.5b").warnings)
    monkeypatch.setattr(profile, "installed", lambda: {**profile.MEASURED, "torch": "2.9.1"})
    profile.installed_drift_warnings.cache_clear()
    assert any(w.startswith("installed torch 2.9.1") for w in estimate("qwen2.5-0.5b").warnings)
    profile.installed_drift_warnings.cache_clear()  # the next test sees the real stack again


def test_eager_backward_is_the_larger_of_the_softmax_and_the_mlp_moments():
    from vramfit.estimate import resolve_attn
    from vramfit.estimate.activations import shared_per_token
    from vramfit.estimate.phases import activation_parts
    from vramfit.models import registry_spec

    spec = registry_spec("tinyllama-1.1b")
    for seq, softmax_wins in ((4096, True), (256, False)):
        cfg = TrainConfig(attn="eager", seq_len=seq)
        layer = layer_activations(spec, cfg, resolve_attn(spec, cfg))
        _, recompute, _, bwd = activation_parts(spec, cfg, layer, shared_per_token(spec, cfg), "eager")
        scores = spec.num_heads * seq * seq
        # at softmax's backward: the attention's saved tensors, the fp32 probabilities, three fp32 score
        # tensors and the residual stream's gradients (what the recomputed layer holds besides is freed)
        at_softmax = (
            layer.per_token["attention"] * seq + 4 * scores + 3 * 4 * scores + 2 * 4 * spec.hidden_size * seq
        )
        mlp = layer.backward_per_token * seq
        assert recompute == layer.saved_per_token * seq + layer.quadratic_bytes(seq)
        assert recompute + bwd == max(at_softmax, recompute + mlp)
        assert (at_softmax > recompute + mlp) == softmax_wins


def test_full_finetuning_of_tied_embeddings_accumulates_the_embedding_gradient_out_of_place():
    from vramfit.models import registry_spec

    cfg = TrainConfig(method="full", optimizer="adamw_8bit")
    tied, untied = registry_spec("llama-3.2-1b"), registry_spec("tinyllama-1.1b")
    end_of_backward = {p.name: p for p in estimate(tied, cfg).phases}["backward (steady)"]
    vh = tied.vocab_size * tied.hidden_size * 2
    # measured on an H100: 1004 MiB beside the full gradients and the optimizer state
    assert end_of_backward.breakdown.activations == 2 * vh
    assert {p.name: p for p in estimate(untied, cfg).phases}["backward (steady)"].breakdown.activations < vh


def test_autocast_keeps_compute_dtype_copies_of_the_fp32_adapters_through_forward(monkeypatch):
    """bf16 autocast caches one bf16 copy of every fp32 LoRA weight (half the adapters) from its first use
    to the loss; fp32 compute has none. With checkpointing backward recomputes one layer at a time (one
    layer's copies); without it the matmuls saved them all, so the loss's backward holds them too."""
    import vramfit.estimate as E
    from vramfit.estimate.adapters import adapter_autocast_copy_bytes, adapter_bytes
    from vramfit.models import resolve_model

    arch = resolve_model("llama-2-7b")
    gc = TrainConfig(targets=("attention",), rank=128, batch_size=4)
    nogc = TrainConfig(targets=("attention",), rank=128, batch_size=4, gradient_checkpointing=False)
    copies = adapter_autocast_copy_bytes(arch, gc)
    assert copies == adapter_bytes(arch, gc) // 2 == 256 << 20  # 128 modules x (A + B) x 1 MiB
    assert adapter_autocast_copy_bytes(arch, TrainConfig(compute_dtype="fp32")) == 0
    assert adapter_autocast_copy_bytes(arch, TrainConfig(method="full", quant="none")) == 0

    def activations(cfg):
        return {p.name: p.breakdown.activations for p in estimate(arch, cfg).phases}

    with_gc, with_nogc = activations(gc), activations(nogc)
    monkeypatch.setattr(E, "adapter_autocast_copy_bytes", lambda arch, cfg: 0)
    without_gc, without_nogc = activations(gc), activations(nogc)
    assert with_gc["forward (steady)"] - without_gc["forward (steady)"] == copies
    # the backward phase is its largest moment: the loss's (no copies) or the last layer's (one layer's)
    assert with_gc["backward (steady)"] - without_gc["backward (steady)"] in (0, copies // arch.num_layers)
    assert with_nogc["forward (steady)"] - without_nogc["forward (steady)"] == copies
    assert with_nogc["backward (steady)"] - without_nogc["backward (steady)"] == copies
