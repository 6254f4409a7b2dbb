"""Reading what a person gave us safely, and writing outputs that never touch an input (vramfit.userfiles),
with the CLI around them: broken pipes, wide output, the estimator's notes, the planner's loops."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from vramfit import userfiles
from vramfit.cli.main import main
from vramfit.errors import InputError
from vramfit.userfiles import check_outputs, read_user_json, read_user_text, write_output

# ---- reading -------------------------------------------------------------------------------------------


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    t = time.perf_counter()
    with pytest.raises(InputError, match=r"^--config: .*p: not a regular file"):
        read_user_text(fifo, "--config")
    assert time.perf_counter() - t < 5  # opening it would block until a writer came


def test_a_device_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"/dev/zero: not a regular file"):
        read_user_text("/dev/zero", "RESULT")


def test_a_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(userfiles, "MAX_INPUT_BYTES", 1000)
    (tmp_path / "big.json").write_text("[" + "1," * 600 + "1]")
    with pytest.raises(InputError, match=r"big.json: 1,203 bytes; files of at most"):
        read_user_json(tmp_path / "big.json", "--model")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "JSON nested deeper than 64 levels"),
        ("[" * 65 + "]" * 65, "JSON nested deeper than 64 levels"),
        ('{"a": ' + "7" * 31 + "}", "a whole number of 31 digits"),
        ('{"a": NaN}', "NaN is not a number JSON allows"),
        ('{"a": -Infinity}', "-Infinity is not a number JSON allows"),
        ('{"a": 1e400}', "is too large"),
        ('{"a": 1,}', r"not valid JSON \(.* at line 1, column"),
        ("[1]", "expected a JSON object, got list"),
        (b"\xff\xfe{}", "not UTF-8 text"),
    ],
)
def test_json_within_limits_or_one_clear_error(tmp_path, text, message):
    f = tmp_path / "x.json"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=message) as info:
        read_user_json(f, "--baseline")
    assert str(info.value).count("x.json") == 1  # the path once


def test_json_at_the_limits_reads():
    assert userfiles.parse_user_json("[" * 64 + "]" * 64, "f", "x") is not None
    assert userfiles.parse_user_json('{"a": ' + "9" * 30 + "}", "f", "x") == {"a": int("9" * 30)}


def test_an_unreadable_model_folder_is_one_line(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(folder) else real(p, mode))
    assert main(["estimate", "--model", str(folder)]) == 2
    assert capsys.readouterr().err.strip().endswith("cannot be read (permission denied)")


# ---- writing -------------------------------------------------------------------------------------------


def test_write_output_is_atomic_and_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    f = tmp_path / "report.html"
    f.write_text("old")
    f.chmod(0o640)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_output(f, "new", "--html")
    assert f.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    monkeypatch.undo()
    write_output(f, "new", "--html")
    assert f.read_text() == "new" and stat.S_IMODE(f.stat().st_mode) == 0o640  # its mode kept


def test_write_output_through_a_symlink_replaces_the_target(tmp_path):
    target = tmp_path / "real.xml"
    target.write_text("old")
    (tmp_path / "link.xml").symlink_to(target)
    write_output(tmp_path / "link.xml", "new", "--junit")
    assert (tmp_path / "link.xml").is_symlink() and target.read_text() == "new"


def test_write_output_to_a_device_writes_through():
    write_output("/dev/null", "anything", "--junit")  # not replaced by a file


@pytest.mark.parametrize(
    ("outputs", "inputs", "message"),
    [
        ([("--junit", "b.json")], [("--baseline", "b.json")], r"--junit: b.json is the --baseline input"),
        ([("--html", "./x/../b.json")], [("RESULT", "b.json")], r"--html: ./x/../b.json is the RESULT input"),
        ([("--html", "F"), ("--markdown", "F")], [], r"--markdown: F is also written by --html"),
        ([("--snapshot", "nope/s.pickle")], [], r"--snapshot: nope/s.pickle: folder nope does not exist"),
        ([("--html", ".")], [], r"--html: . is a folder"),
    ],
)
def test_outputs_that_would_overwrite_are_refused(tmp_path, monkeypatch, outputs, inputs, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match=message):
        check_outputs(outputs, inputs)


def test_a_hard_link_to_an_input_is_the_input(tmp_path):
    (tmp_path / "b.json").write_text("{}")
    os.link(tmp_path / "b.json", tmp_path / "other.json")
    with pytest.raises(InputError, match="is the --baseline input"):
        check_outputs([("--junit", str(tmp_path / "other.json"))], [("--baseline", str(tmp_path / "b.json"))])


def test_report_refuses_to_write_its_chart_over_its_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["estimate", "--model", "smollm2-135m", "--json"]) == 0
    (tmp_path / "x.png").write_text(capsys.readouterr().out)
    before = (tmp_path / "x.png").read_bytes()
    assert main(["report", "x.png", "--markdown", "x.md"]) == 2
    assert "--markdown: x.png is the RESULT input" in capsys.readouterr().err
    assert (tmp_path / "x.png").read_bytes() == before and not (tmp_path / "x.md").exists()


def test_check_update_writes_its_baseline_but_never_another_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vramfit.toml").write_text('model = "smollm2-135m"\n[configs.a]\n')
    assert main(["check", "--update"]) == 0
    first = json.loads((tmp_path / "vramfit-baseline.json").read_text())
    assert main(["check", "--update", "--junit", "j.xml"]) == 0  # rewrites the baseline: its job
    assert json.loads((tmp_path / "vramfit-baseline.json").read_text()) == first
    assert (tmp_path / "j.xml").read_text().startswith("<?xml")
    toml = (tmp_path / "vramfit.toml").read_bytes()
    for argv in (["--update", "--baseline", "vramfit.toml"], ["--junit", "vramfit.toml"],
                 ["--update", "--junit", "vramfit-baseline.json"]):  # fmt: skip
        assert main(["check", *argv]) == 2
        assert (tmp_path / "vramfit.toml").read_bytes() == toml
    assert json.loads((tmp_path / "vramfit-baseline.json").read_text()) == first


# ---- the CLI around it ---------------------------------------------------------------------------------


def _closed_pipe(args: list[str]) -> subprocess.CompletedProcess:
    """Run vramfit with its stdout a pipe whose reader is gone before it writes (`| head -0`)."""
    r, w = os.pipe()
    os.close(r)  # no reader: the first write gets EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "vramfit", *args], stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    finally:
        os.close(w)
    return proc


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["models"], 0),
        (["gpus", "--json"], 0),
        (["estimate", "--model", "mistral-7b", "--vram", "24GB"], 0),  # fits
        (["estimate", "--model", "mistral-7b", "--vram", "4GB"], 1),  # does not fit: still 1
    ],
)
def test_a_broken_pipe_keeps_the_exit_code_and_prints_nothing_more(args, code):
    proc = _closed_pipe(args)
    assert (proc.returncode, proc.stderr) == (code, "")


def test_head_minus_1_through_a_shell():
    proc = subprocess.run(["bash", "-c", f"'{sys.executable}' -m vramfit models | head -1 >/dev/null; "
                           "echo ${PIPESTATUS[0]}"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    assert proc.stdout.strip() == "0" and proc.stderr == ""


def test_output_to_a_file_is_not_wrapped_at_80_columns(tmp_path):
    out = tmp_path / "out.txt"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PYTHONPATH": os.getcwd()}
    with open(out, "w") as f:
        subprocess.run([sys.executable, "-m", "vramfit", "estimate", "--model", "mistral-7b", "--gpu", "rtx-3060"],
                       stdout=f, env=env, timeout=120, check=True)  # fmt: skip
    lines = out.read_text().splitlines()
    warning = next(line for line in lines if "assumed held by the desktop" in line)
    assert warning.startswith("warning:") and warning.rstrip().endswith("if it runs headless)")
    assert max(len(line) for line in lines) > 80


def test_the_estimators_notes_are_one_line_after_the_card_warnings(capsys):
    assert main(["estimate", "--model", "mistral-7b", "--gpu", "rtx-3060"]) == 0
    out = capsys.readouterr().out
    tail = out[out.index("fits on rtx-3060") :].splitlines()
    assert "fitted allowance" not in out.split("note:")[0]  # no constants before the note
    assert tail[-1].startswith("note: the requirement includes a fitted allowance") and len(tail[-1]) < 250
    assert any("assumed held by the desktop" in line for line in tail[:-1])
    assert main(["estimate", "--model", "mistral-7b", "--gpu", "rtx-3060", "--verbose"]) == 0
    verbose = capsys.readouterr().out
    assert "warning: allocator_required_bytes adds a fitted allowance" in verbose and "note:" not in verbose


def test_plain_plan_output_has_no_jargon(capsys):
    assert main(["plan", "--model", "llama-3.2-1b", "--vram", "6GB"]) == 0
    out = capsys.readouterr().out
    for jargon in (
        "lora none",
        "full none",
        "monotonicity",
        "dominance",
        "kbit",
        "allocator_required_bytes adds",
    ):
        assert jargon not in out.replace("prepare_model_for_kbit_training", ""), jargon
    assert "LoRA on an unquantized base -> full fine-tuning" in out


def test_optimizer_help_lists_the_optimizers(capsys):
    from vramfit.estimate import OPTIMIZERS

    assert main(["estimate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in OPTIMIZERS) and "lists them" not in text


def test_a_bf16_plan_suggests_only_cards_with_bf16(capsys):
    assert main(["plan", "--model", "mistral-7b", "--vram", "4GB", "--compute-dtype", "bf16", "--json"]) == 1
    from vramfit.gpus import find_gpu

    cards = json.loads(capsys.readouterr().out)["no_fit"]["cards_that_fit"]
    assert cards and all(find_gpu(c).supports_bf16 for c in cards)


def test_card_needed_is_the_smallest_capacity_that_fits():
    from types import SimpleNamespace

    from vramfit.gpus import assumed_driver_reserve_bytes
    from vramfit.plan.nofit import card_needed
    from vramfit.units import GiB, MiB

    for need in (1, 3 * GiB + 7, 6 * GiB, 47 * GiB + 123 * MiB, 1000 * GiB):
        smallest = SimpleNamespace(required_bytes=need, margin_bytes=0)
        cap = card_needed(smallest, SimpleNamespace(display_reserve_bytes=0))
        assert cap % MiB == 0 and cap - assumed_driver_reserve_bytes(cap) >= need
        assert (cap - MiB) - assumed_driver_reserve_bytes(cap - MiB) < need  # one MiB less does not fit
    t = time.perf_counter()
    card_needed(
        SimpleNamespace(required_bytes=1 << 60, margin_bytes=0), SimpleNamespace(display_reserve_bytes=0)
    )
    assert time.perf_counter() - t < 1  # a bisection, not a walk in 1 MiB steps


def test_a_huge_effective_batch_is_split_without_walking_every_number():
    from vramfit.plan.space import _divisors

    assert _divisors(12) == [1, 2, 3, 4, 6, 12] and _divisors(1) == [1] and _divisors(49) == [1, 7, 49]
    assert len(_divisors(1 << 20)) == 21
