"""Nothing a person types crashes or hangs: every absurd value exits 2 with one stderr line naming the flag.

Two parts: the examples a new user tried (a table, each with the message it must give), and a fuzz over
every command and flag (hypothesis, bounded: a fixed number of examples per flag kind, a deadline per
example that only a hang would break). Runs on the CPU in the normal test run; nothing is probed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramfit.cli.main import main

HUGE = "9" * 400


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_one_line(code: int, err: str, argv) -> None:
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    assert err.endswith("\n") and err.count("\n") == 1, (argv, err)


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A folder with the bad files of the table, as the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "bigint.json").write_text('{"model_type": "llama", "hidden_size": ' + "1" * 5000 + "}")
    layers = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
              "num_hidden_layers": 1_000_000_000, "vocab_size": 1000}  # fmt: skip
    (tmp_path / "layers.json").write_text(json.dumps(layers))
    (tmp_path / "nan.toml").write_text('model = "smollm2-135m"\nbudget = nan\n[configs.a]\n')
    (tmp_path / "inf.toml").write_text('model = "smollm2-135m"\n[configs.a]\nvram = inf\n')
    (tmp_path / "vramfit.toml").write_text('model = "smollm2-135m"\n[configs.a]\n')
    os.mkfifo(tmp_path / "fifo")
    assert main(["check", "--update"]) == 0  # vramfit-baseline.json
    base = json.loads((tmp_path / "vramfit-baseline.json").read_text())
    base["configs"]["a"]["required_vram_bytes"] = 0
    (tmp_path / "zero-baseline.json").write_text(json.dumps(base))
    return tmp_path


ISSUE_EXAMPLES = [
    (["estimate", "--model", "mistral-7b", "--vram", HUGE], r"^vramfit estimate: error: --vram: .* too large"),
    (["estimate", "--model", "mistral-7b", "--vram", "4GB", "--cuda-context", HUGE], r"--cuda-context: .*too large"),
    (["plan", "--model", "mistral-7b", "--vram", "4GB", "--margin", HUGE], r"--margin: too large: .9{36}\.\.\.; accepted"),
    (["gpus", "--min-vram", HUGE], r"--min-vram: .*too large"),
    (["check", "--budget", HUGE], r"--budget: .*too large"),
    (["probe", "--model", "mistral-7b", "--emulate-vram", HUGE], r"--emulate-vram: .*too large"),
    (["probe", "--model", "mistral-7b", "--emulate-vram", "abc"], r"--emulate-vram: cannot read 'abc'"),
    (["check", "--config", "nan.toml", "--update", "--baseline", "new.json"], r"nan.toml: budget: nan is not a size"),
    (["check", "--config", "inf.toml", "--update", "--baseline", "new.json"], r"\[configs.a\] vram: inf is not a size"),
    (["estimate", "--model", "deep.json"], r"--model: deep.json: JSON nested deeper than 64"),
    (["report", "deep.json"], r"RESULT: deep.json: JSON nested deeper than 64"),
    (["check", "--baseline", "deep.json"], r"--baseline: deep.json: JSON nested deeper"),
    (["estimate", "--model", "bigint.json"], r"--model: bigint.json: a whole number of 5000 digits"),
    (["check", "--baseline", "zero-baseline.json"], r"configs.a.required_vram_bytes must be a positive whole"),
    (["plan", "--model", "mistral-7b", "--vram", "4GB", "--seq-len", "1000000000000"], r"--seq-len: expected a whole number from 1 to"),
    (["plan", "--model", "layers.json", "--vram", "4GB"], r"^vramfit plan: error: layers.json: field 'num_hidden_layers' is 1,000,000,000; accepted"),
    (["report", "/dev/zero"], r"RESULT: /dev/zero: not a regular file"),
    (["check", "--config", "/dev/zero"], r"--config: /dev/zero: not a regular file"),
    (["report", "fifo"], r"RESULT: fifo: not a regular file"),
    (["estimate", "--model", "fifo"], r"--model: fifo: not a regular file"),
    (["estimate", "--model", "mistral-7b", "--vram", ""], r"--vram: is empty"),
    (["estimate", "--model", "mistral-7b", "--gpu", ""], r"--gpu: is empty"),
    (["estimate", "--model", "mistral-7b", "--rank", "1" + "0" * 100], r"--rank: expected a whole number from 1 to 65,536"),
    (["estimate", "--model", "mistral-7b", "--seq-len", "1" + "0" * 100], r"--seq-len: expected a whole number"),
    (["estimate", "--model", "mistral-7b", "--alpha", "inf"], r"--alpha: expected a number above 0"),
    (["estimate", "--model", "mistral-7b", "--targets", "all-linear,q_proj"], r"--targets: all-linear already holds"),
    (["probe", "--model", "mistral-7b", "--timeout", "-1"], r"--timeout: expected a number above 0"),
    (["probe", "--model", "smollm2-135m", "--snapshot", "no/such/folder/s.pickle"], r"--snapshot: .*folder no/such/folder does not exist"),
    (["check", "--tolerance", HUGE + "%"], r"--tolerance: cannot read"),
    (["check", "--tolerance", "400%"], r"--tolerance: 400% would allow any move"),
    (["check", "--junit", "vramfit-baseline.json"], r"--junit: vramfit-baseline.json is the --baseline input"),
    (["check", "--junit", "vramfit.toml"], r"--junit: vramfit.toml is the --config input"),
    (["check", "--update", "--baseline", "vramfit.toml"], r"--baseline: vramfit.toml is the --config input"),
    (["estimate", "--model", "smollm2-135m", "--html", "F", "--markdown", "F"], r"--markdown: F is also written by --html"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"), ISSUE_EXAMPLES, ids=[" ".join(a)[:60] for a, _ in ISSUE_EXAMPLES]
)
def test_each_reported_example_is_one_line_naming_the_flag(files, argv, message):
    before = {p.name: p.read_bytes() for p in files.iterdir() if p.is_file()}
    code, _, err = run(argv)
    assert_one_line(code, err, argv)
    assert re.search(message, err), err
    assert {p.name: p.read_bytes() for p in files.iterdir() if p.is_file()} == before  # nothing written


def test_a_wrong_type_in_a_saved_result_is_one_line(files):
    code, out, _ = run(["estimate", "--model", "smollm2-135m", "--gpu", "rtx-3060", "--json"])
    good = json.loads(out)
    for key, value in (("non_torch_bytes", -1), ("peak_allocated_bytes", "x"), ("config", {"targets": [0]}),
                       ("breakdown", []), ("verdict", "fits")):  # fmt: skip
        (files / "bad.json").write_text(json.dumps({**good, key: value}))
        code, _, err = run(["report", "bad.json", "-o", "bad.html"])
        assert_one_line(code, err, key)
        assert "bad.json" in err and err.count("bad.json") == 1
        assert not (files / "bad.html").exists()


# ---- the fuzz: every command and flag, values that no flag accepts ----------------------------------

MODEL = ["--model", "smollm2-135m"]
CARD = ["--vram", "4GB"]
# command -> (argv that works, the flags to break and the kind of value each takes)
COMMANDS = {
    "estimate": (MODEL, {"--vram": "size", "--gpu": "text", "--cuda-context": "size", "--display-reserve": "size",
                         "--rank": "int", "--alpha": "float", "--dropout": "float", "--seq-len": "int",
                         "--batch-size": "int", "--grad-accum": "int", "--targets": "text", "--optimizer": "text",
                         "--method": "choice", "--quant": "choice", "--load-dtype": "choice", "--attn": "choice",
                         "--model": "text", "--html": "output", "--markdown": "output"}),
    "plan": (MODEL + CARD, {"--vram": "size", "--gpu": "text", "--margin": "size", "--effective-batch": "int",
                            "--top": "int", "--seq-len": "int", "--rank": "int", "--alpha": "float",
                            "--model": "text", "--html": "output", "--markdown": "output"}),
    "probe": (MODEL + ["--device", "cpu"], {"--emulate-vram": "size", "--resolution": "size", "--steps": "int",
                                            "--parallel": "int", "--timeout": "float", "--snapshot": "output",
                                            "--weights": "text", "--gpu": "text", "--rank": "int"}),
    "gpus": ([], {"--min-vram": "size", "--max-vram": "size"}),
    "check": ([], {"--config": "input", "--baseline": "input", "--tolerance": "size", "--budget": "size",
                   "--junit": "output"}),
    "report": (["result.json"], {"--output": "output", "--markdown": "output", "RESULT": "input"}),
}  # fmt: skip

_huge_digits = st.integers(min_value=25, max_value=2000).map(lambda n: "9" * n)
_not_a_number = st.sampled_from(["", " ", "nan", "inf", "-inf", "NaN%", "abc", "1e999", "--", "0x10", "\t"])
BAD = {
    "size": st.one_of(_not_a_number, _huge_digits, _huge_digits.map(lambda s: s + "GB"),
                      st.sampled_from(["-1GB", "4XB", "1e400GB", "5000TB", "1" * 50 + ".5", "%", "GB"])),
    "int": st.one_of(_not_a_number, _huge_digits, st.integers(max_value=-1).map(str),
                     st.integers(min_value=10**7, max_value=10**400).map(str), st.sampled_from(["1.5", "2e3"])),
    "float": st.one_of(_not_a_number, _huge_digits, st.sampled_from(["-1", "1e400", "-0.5", "inf", "1e7"])),
    "text": st.sampled_from(["", " ", "\t", "x" * 5000, "a\x00b"]),
    "choice": st.sampled_from(["", "nope", "NF4 ", "x" * 300]),
    "input": st.sampled_from(["", "/dev/zero", "fifo", "deep.json", "bigint.json", "no-such-file", ".", "a\x00b"]),
    "output": st.sampled_from(["", "no/such/dir/out", ".", "a\x00b", "x" * 5000]),
}  # fmt: skip
CASES = [(cmd, flag, kind) for cmd, (_, flags) in COMMANDS.items() for flag, kind in flags.items()]


@pytest.mark.parametrize(("command", "flag", "kind"), CASES, ids=[f"{c} {f}" for c, f, _ in CASES])
@settings(max_examples=12, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_bad_values_exit_2_with_one_line(files, command, flag, kind, data):
    if command == "report" and not (files / "result.json").exists():
        code, out, _ = run(["estimate", "--model", "smollm2-135m", "--json"])
        (files / "result.json").write_text(out)
    value = data.draw(BAD[kind], label=flag)
    argv = [command, value] if flag == "RESULT" else [command, *COMMANDS[command][0], flag, value]
    if command == "check" and flag == "--tolerance":
        argv[-1] = value + "%" if data.draw(st.booleans()) else value
    code, _, err = run(argv)
    assert_one_line(code, err, argv)
    # the flag that holds the bad value (not another one), or for a file read whole, the file
    assert flag in err or (kind == "input" and value and value in err), err


def test_fuzz_wrong_types_in_vramfit_toml(files):
    """Every key of vramfit.toml with values of every wrong type: one line naming the key."""

    @settings(max_examples=150, deadline=5000)
    @given(
        key=st.sampled_from(["budget", "vram", "gpu", "cuda_context", "rank", "seq_len", "batch_size", "alpha",
                             "dropout", "targets", "method", "optimizer", "tolerance", "double_quant"]),
        value=st.sampled_from(['"abc"', '"nope"', "nan", "inf", "-inf", "1" + "0" * 400, "-1", '""', "[]", "{}", "true",
                               '"' + "9" * 400 + 'GB"', "[[[[1]]]]", "1e400", "0"]),
        where=st.sampled_from(["top", "table"]),
    )  # fmt: skip
    def one(key, value, where):
        if key == "tolerance":
            where = "top"
        line = f"{key} = {value}\n"
        text = 'model = "smollm2-135m"\n' + (line if where == "top" else "") + "[configs.a]\n"
        text += line if where == "table" else ""
        (files / "fuzz.toml").write_text(text)
        code, _, err = run(["check", "--config", "fuzz.toml", "--update", "--baseline", "fuzz-base.json"])
        if code == 2:
            assert_one_line(code, err, text)
            assert key in err and err.count("fuzz.toml") == 1, (text, err)  # the location said once
        else:  # a value that is fine for this key (rank = 0 is not; a budget of true is not...)
            assert code in (0, 1), (text, code, err)

    one()
