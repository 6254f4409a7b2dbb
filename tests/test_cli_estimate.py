"""`vramfit estimate` end to end: flags, JSON keys, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vramfit.cli.main import main

ESTIMATE_KEYS = {
    "breakdown", "peak_phase", "peak_allocated_bytes", "peak_reserved_bytes", "allocator_required_bytes",
    "non_torch_bytes", "required_vram_bytes", "trainable_params", "warnings",
}  # fmt: skip


def run_json(capsys, *argv):
    code = main(["estimate", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_json_has_the_documented_keys(capsys):
    code, out = run_json(capsys, "--model", "mistral-7b")
    assert code == 0
    assert ESTIMATE_KEYS <= set(out)
    assert set(out["breakdown"]) == {
        "weights", "quant_state", "adapters", "gradients", "optimizer", "activations", "logits", "temporaries"
    }  # fmt: skip
    assert {"cuda_context", "paged_optimizer"} <= set(out["non_torch_bytes"])
    assert all(isinstance(v, int) for v in out["breakdown"].values())
    assert out["peak_allocated_bytes"] <= out["allocator_required_bytes"] <= out["required_vram_bytes"]
    assert "verdict" not in out
    # the recipe's defaults
    c = out["config"]
    assert (c["method"], c["quant"], c["double_quant"], c["rank"], c["alpha"], c["dropout"]) == (
        "qlora", "nf4", True, 16, 32, 0.05
    )  # fmt: skip
    assert (c["targets"], c["seq_len"], c["batch_size"], c["optimizer"]) == (
        ["q_proj", "v_proj"],
        512,
        1,
        "paged_adamw_8bit",
    )


def test_flags_reach_the_config(capsys):
    code, out = run_json(
        capsys, "--model", "llama-3.2-1b", "--method", "lora", "--quant", "int8", "--rank", "8", "--alpha", "8",
        "--dropout", "0", "--targets", "all-linear", "--seq-len", "1024", "--batch-size", "2", "--grad-accum", "4",
        "--no-gradient-checkpointing", "--optimizer", "adamw_torch", "--attn", "eager", "--no-double-quant",
        "--load-dtype", "fp16", "--compute-dtype", "fp16",
    )  # fmt: skip
    assert code == 0
    c = out["config"]
    assert (
        c["method"] == "lora" and c["quant"] == "int8" and c["rank"] == 8 and c["targets"] == ["all-linear"]
    )
    assert c["seq_len"] == 1024 and c["batch_size"] == 2 and c["grad_accum"] == 4
    assert c["gradient_checkpointing"] is False and c["attn"] == "eager" and c["compute_dtype"] == "fp16"


def test_vram_verdict_and_exit_code_one_when_it_does_not_fit(capsys):
    code, out = run_json(capsys, "--model", "mistral-7b", "--vram", "4GB")
    assert code == 1
    assert out["verdict"]["fits"] is False and out["verdict"]["headroom_bytes"] < 0
    code, out = run_json(capsys, "--model", "mistral-7b", "--vram", "24GB")
    assert code == 0 and out["verdict"]["fits"] is True
    assert out["verdict"]["usable_bytes"] - out["required_vram_bytes"] == out["verdict"]["headroom_bytes"]


def test_a_card_between_the_two_ends_of_the_requirement_may_fit(capsys):
    """llama-3.2-1b at 1024 tokens: the range spans most of a GiB of fp32 logits. Cards from below its low
    end to above its high end: "fits" needs the high end, "may fit" (exit 1: not a promise) the low one."""
    seen = {}
    for mib in range(3584, 6144, 128):
        code, out = run_json(capsys, "--model", "llama-3.2-1b", "--seq-len", "1024", "--vram", f"{mib}MiB")
        low, high, v = out["required_vram_low_bytes"], out["required_vram_bytes"], out["verdict"]
        assert out["allocator_required_low_bytes"] < out["allocator_required_bytes"] and low < high
        usable = v["usable_bytes"]
        want = "fits" if usable >= high else "may fit" if usable >= low else "does not fit"
        assert (
            v["status"] == want and v["fits"] is (want == "fits") and v["may_fit"] is (want != "does not fit")
        )
        assert code == (0 if want == "fits" else 1)
        seen.setdefault(want, mib)
    assert set(seen) == {"fits", "may fit", "does not fit"}
    assert (
        main(["estimate", "--model", "llama-3.2-1b", "--seq-len", "1024", "--vram", f"{seen['may fit']}MiB"])
        == 1
    )
    text = capsys.readouterr().out
    assert "may fit" in text and "--emulate-vram" in text


def test_table_output(capsys):
    assert main(["estimate", "--model", "smollm2-135m", "--vram", "4GB"]) == 0
    out = capsys.readouterr().out
    for word in ("activations", "logits", "peak allocated", "required VRAM", "fits"):
        assert word in out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--model", "mistral-8b"], r"--model.*mistral"),
        (["--model", "mistral-7b", "--vram", "four"], r"--vram: cannot read 'four'"),
        (
            ["--model", "mistral-7b", "--method", "qlora", "--quant", "none"],
            r"--quant: none does not go with --method qlora",
        ),
        (
            ["--model", "mistral-7b", "--rank", "0"],
            r"--rank: expected a whole number from 1 to 65,536, got 0",
        ),
        (["--model", "mistral-7b", "--optimizer", "adam"], r"--optimizer: unknown value 'adam'"),
        (["--model", "mistral-7b", "--targets", "qkv_proj"], r"--targets: .*no module 'qkv_proj'"),
        (
            ["--model", "mistral-7b", "--gpu", "rtx-2060"],
            r"--compute-dtype: bf16 needs compute capability 8.0",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, match):
    assert main(["estimate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    import re

    assert re.search(match, err), err


def test_argparse_errors_exit_2_without_traceback():
    r = subprocess.run(
        [sys.executable, "-m", "vramfit", "estimate", "--model", "mistral-7b", "--seq-len", "long"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and "--seq-len" in r.stderr and "Traceback" not in r.stderr


def test_cli_imports_no_heavy_library():
    code = (
        "import sys, vramfit.cli.main as m; m.build_parser(); "
        "from vramfit.estimate import estimate; estimate('mistral-7b'); "
        "print(','.join(k for k in ('torch', 'transformers', 'peft', 'bitsandbytes', 'matplotlib', 'pandas') if k in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_reports_with_a_broken_matplotlib_say_how_to_reinstall(capsys, monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a)
    )
    assert main(["estimate", "--model", "smollm2-135m", "--html", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "pip install matplotlib" in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()
