"""`vramfit check`: vramfit.toml parsing, baseline round trip, regressions, tolerance, budgets, exit codes,
JUnit XML, and that only --update writes the baseline. Numbers come from the real estimator."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vramfit.check import (
    NEW,
    OK,
    REGRESSION,
    Baseline,
    check,
    junit_xml,
    load_baseline,
    parse_check_toml,
    parse_tolerance,
)
from vramfit.cli.main import main
from vramfit.config import TrainConfig
from vramfit.errors import VramfitError
from vramfit.estimate import estimate
from vramfit.units import GiB

TOML = """
model = "smollm2-135m"
tolerance = "2%"

[configs.small]

[configs.long]
seq_len = 2048
batch_size = 2

[configs.qwen-lora]
model = "qwen2.5-0.5b"
method = "lora"
targets = "q_proj,k_proj,v_proj"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with vramfit.toml and a baseline recorded by --update."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vramfit.toml").write_text(TOML)
    assert main(["check", "--update"]) == 0
    return tmp_path


def edit_baseline(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def required(model: str, **cfg) -> int:
    return estimate(model, TrainConfig(**cfg)).required_vram_bytes


# ---- tolerance -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value", [("2%", 0.02), ("2.5 %", 0.025), ("0.02", 0.02), (0.02, 0.02), ("0", 0.0)]
)
def test_tolerance_accepts_percent_and_fraction(text, value):
    assert parse_tolerance(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("2", r"did you mean 2%\?"),
        ("abc", "cannot read 'abc'"),
        ("-1%", "cannot read"),
        (True, "expected a percentage"),
    ],
)
def test_tolerance_rejects_what_it_cannot_read(text, message):
    with pytest.raises(ValueError, match=rf"--tolerance: .*{message}"):
        parse_tolerance(text)


# ---- vramfit.toml ----------------------------------------------------------------------------------------


def test_toml_defaults_merge_and_configs_validate():
    f = parse_check_toml(TOML)
    assert [c.name for c in f.configs] == ["small", "long", "qwen-lora"]
    assert f.tolerance == pytest.approx(0.02)
    small, long, qwen = f.configs
    assert small.model == "smollm2-135m" and small.config == TrainConfig()
    assert long.config.seq_len == 2048 and long.config.batch_size == 2
    assert qwen.model == "qwen2.5-0.5b" and qwen.config.targets == ("q_proj", "k_proj", "v_proj")


def test_unknown_key_names_file_table_and_suggestion():
    with pytest.raises(
        ValueError, match=r"^vramfit\.toml: \[configs\.small\] unknown key 'rnak' \(did you mean: rank\?\)$"
    ):
        parse_check_toml('model = "smollm2-135m"\n[configs.small]\nrnak = 8\n')
    with pytest.raises(ValueError, match=r"unknown top-level key 'seq_lne' \(did you mean: seq_len\?\)"):
        parse_check_toml('seq_lne = 1\n[configs.a]\nmodel = "smollm2-135m"\n')
    with pytest.raises(
        ValueError, match=r"unknown top-level key 'small' \(configurations go in \[configs.NAME\] tables\)"
    ):
        parse_check_toml('[small]\nmodel = "smollm2-135m"\n')


def test_bad_values_are_reported_together_with_their_keys():
    text = 'model = "smollm2-135m"\n[configs.a]\nrank = 0\nseq_len = "long"\ngradient_checkpointing = "yes"\n'
    with pytest.raises(ValueError) as info:
        parse_check_toml(text)
    msg = str(info.value)
    assert "[configs.a] gradient_checkpointing: expected true or false" in msg
    # ... and once the types are right, the TrainConfig checks, renamed to the file's keys
    with pytest.raises(
        ValueError, match=r"\[configs.a\] rank: expected a whole number from 1 to 65,536, got 0; seq_len"
    ):
        parse_check_toml('model = "smollm2-135m"\n[configs.a]\nrank = 0\nseq_len = "long"\n')


def test_missing_model_empty_file_and_bad_toml():
    with pytest.raises(ValueError, match=r"\[configs.a\] has no model"):
        parse_check_toml("[configs.a]\nrank = 8\n")
    with pytest.raises(ValueError, match="no configurations"):
        parse_check_toml('model = "smollm2-135m"\n')
    with pytest.raises(ValueError, match="not valid TOML"):
        parse_check_toml("[configs.a\n")


def test_the_example_file_is_valid_and_checks():
    example = Path(__file__).resolve().parents[1] / "examples" / "vramfit.toml"
    f = parse_check_toml(example.read_text(), source="vramfit.toml")
    result = check(f.configs, None, f.tolerance)
    assert [c.status for c in result.checks] == [NEW] * len(f.configs)


# ---- the baseline ----------------------------------------------------------------------------------------


def test_update_writes_a_baseline_that_round_trips(project):
    path = project / "vramfit-baseline.json"
    raw = json.loads(path.read_text())
    assert raw["kind"] == "vramfit-baseline" and raw["mode"] == "estimate"
    assert raw["versions"]["vramfit"]
    b = load_baseline(path)
    assert set(b.entries) == {"small", "long", "qwen-lora"}
    assert b.entries["long"].measurement.required_vram_bytes == required(
        "smollm2-135m", seq_len=2048, batch_size=2
    )
    assert b.entries["long"].config["seq_len"] == 2048
    assert Baseline.from_json(b.to_json()) == b


def test_unchanged_configurations_pass(project, capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "OK: 3 configurations" in out


def test_growth_beyond_tolerance_is_a_regression_naming_the_cause(project, capsys):
    (project / "vramfit.toml").write_text(TOML.replace("seq_len = 2048", "seq_len = 4096"))
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "regression" in out
    assert "likely cause: seq_len 2048 -> 4096" in out
    assert "FAIL: 1 of 3 configurations: long" in out


def test_shrinking_is_reported_but_passes(project, capsys):
    (project / "vramfit.toml").write_text(TOML.replace("seq_len = 2048", "seq_len = 1024"))
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "improved" in out and "--update lowers the baseline" in out


def test_tolerance_decides_what_a_move_is(project, capsys):
    base = project / "vramfit-baseline.json"
    now = required("smollm2-135m")
    # the baseline 1% below today: inside 2%, outside 0.5%
    edit_baseline(base, lambda d: d["configs"]["small"].update(required_vram_bytes=round(now / 1.01)))
    assert main(["check"]) == 0
    assert main(["check", "--tolerance", "0.5%"]) == 1
    out = capsys.readouterr().out
    assert "grew by" in out and "+1.0%" in out
    assert "same configuration and versions" in out  # no other cause to name


def test_a_version_change_is_named_as_the_likely_cause(project, capsys):
    def older(d):
        d["versions"]["vramfit"] = "0.0.1"
        d["configs"]["small"]["required_vram_bytes"] -= GiB // 4

    edit_baseline(project / "vramfit-baseline.json", older)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "likely cause: vramfit 0.0.1 -> " in out


def test_library_check_statuses(project):
    f = parse_check_toml(TOML.replace("seq_len = 2048", "seq_len = 4096"))
    baseline = load_baseline(project / "vramfit-baseline.json")
    result = check(f.configs, baseline, tolerance=0.02)
    assert {c.name: c.status for c in result.checks} == {"small": OK, "long": REGRESSION, "qwen-lora": OK}
    assert not result.ok
    long = result.checks[1]
    assert (
        long.delta_bytes
        == long.current.required_vram_bytes - baseline.entries["long"].measurement.required_vram_bytes
    )
    assert long.delta_fraction > 0.02
    j = result.to_json()
    assert j["ok"] is False and j["checks"][1]["status"] == "regression"
    assert json.loads(json.dumps(j)) == j


def test_configurations_new_and_removed(project, capsys):
    (project / "vramfit.toml").write_text(TOML.replace("[configs.small]", "[configs.renamed]"))
    assert main(["check"]) == 0  # a new configuration is not a failure ...
    out = capsys.readouterr().out
    assert "renamed: not in the baseline" in out  # ... but it is shown
    assert "small: in the baseline but not in the configuration file" in out


# ---- budgets ---------------------------------------------------------------------------------------------


def test_budget_flag_applies_to_all(project, capsys):
    small = required("smollm2-135m")
    assert main(["check", "--budget", f"{small - 1}B"]) == 1
    out = capsys.readouterr().out
    assert out.count("over budget") == 3
    assert main(["check", "--budget", "64GB"]) == 0


def test_budget_precedence_own_then_flag_then_file_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    need = required("smollm2-135m")
    (tmp_path / "vramfit.toml").write_text(
        f'model = "smollm2-135m"\nbudget = "{need - 1}B"\n[configs.a]\n[configs.b]\nbudget = "64GB"\n'
    )
    assert main(["check", "--update"]) == 1  # the file's default budget fails a; b has its own
    out = capsys.readouterr().out
    assert "a: needs" in out and "b: needs" not in out
    assert main(["check", "--budget", "32GB"]) == 0  # the flag overrides the file's default ...
    (tmp_path / "vramfit.toml").write_text(
        f'model = "smollm2-135m"\n[configs.a]\n[configs.b]\nbudget = "{need - 1}B"\n'
    )
    assert main(["check", "--budget", "32GB"]) == 1  # ... but not a configuration's own budget
    assert "b: needs" in capsys.readouterr().out


def test_update_still_fails_on_a_budget(project):
    assert main(["check", "--update", "--budget", "16MiB"]) == 1
    assert load_baseline(project / "vramfit-baseline.json").entries  # written nonetheless


# ---- bad input: exit 2, one line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup, argv, message",
    [
        (lambda p: None, ["--config", "missing.toml"], "--config: missing.toml: file not found"),
        (lambda p: (p / "vramfit.toml").write_text("[configs.a\n"), [], "vramfit.toml: not valid TOML"),
        (lambda p: (p / "vramfit-baseline.json").write_text("{oops"), [], "vramfit-baseline.json: not valid JSON"),
        (lambda p: (p / "vramfit-baseline.json").unlink(), [], "file not found; create it with --update"),
        (lambda p: (p / "vramfit-baseline.json").write_text('{"kind": "estimate"}'), [], "not a vramfit baseline"),
        (lambda p: (p / "vramfit.toml").write_text('model = "smollm2-135m"\n[configs.small]\nrnak = 8\n'), [],
         "vramfit.toml: [configs.small] unknown key 'rnak' (did you mean: rank?)"),
        (lambda p: (p / "vramfit.toml").write_text('model = "no-such-model-xyz"\n[configs.a]\n'), [],
         "vramfit.toml: [configs.a] model: unknown model"),
        (lambda p: None, ["--tolerance", "2"], "--tolerance"),
        (lambda p: None, ["--budget", "lots"], "--budget"),
        (lambda p: edit_baseline(p / "vramfit-baseline.json", lambda d: d["configs"]["small"].update(required_vram_bytes="3 GB")),
         [], "configs.small.required_vram_bytes must be a positive whole number"),
        (lambda p: edit_baseline(p / "vramfit-baseline.json", lambda d: d.update(mode="probe")), [],
         "the baseline holds probe numbers"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_a_one_line_error(project, capsys, setup, argv, message):
    setup(project)
    before = {p.name: p.read_bytes() for p in project.iterdir() if p.is_file()}
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in project.iterdir() if p.is_file()} == before


# ---- only --update writes the baseline -------------------------------------------------------------------


def test_only_update_writes_the_baseline(project, capsys):
    base = project / "vramfit-baseline.json"
    original = base.read_bytes()
    (project / "vramfit.toml").write_text(TOML.replace("seq_len = 2048", "seq_len = 4096"))
    for argv in ([], ["--json"], ["--junit", "j.xml"], ["--tolerance", "50%"], ["--budget", "1GB"]):
        main(["check", *argv])
        assert base.read_bytes() == original, argv
    assert main(["check", "--update"]) == 0
    assert base.read_bytes() != original
    assert load_baseline(base).entries["long"].config["seq_len"] == 4096
    assert main(["check"]) == 0


def test_update_creates_a_missing_baseline_at_the_given_path(project, capsys):
    assert main(["check", "--update", "--baseline", "other.json"]) == 0
    assert (project / "other.json").exists()


# ---- output formats --------------------------------------------------------------------------------------


def test_junit_xml_is_valid_with_one_testcase_per_configuration(project, capsys):
    (project / "vramfit.toml").write_text(TOML.replace("seq_len = 2048", "seq_len = 4096"))
    assert main(["check", "--junit", "report.xml"]) == 1
    root = ET.parse(project / "report.xml").getroot()
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["small", "long", "qwen-lora"]
    failed = {c.get("name"): c.find("failure") for c in cases}
    assert failed["small"] is None and failed["qwen-lora"] is None
    assert failed["long"].get("type") == "regression" and "grew by" in failed["long"].get("message")
    suite = root.find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1"


def test_junit_escapes_configuration_names(project):
    f = parse_check_toml('model = "smollm2-135m"\n[configs."a<b>&\\"c"]\n')
    xml = junit_xml(check(f.configs, None))
    assert ET.fromstring(xml.split("\n", 1)[1]).find("./testsuite/testcase").get("name") == 'a<b>&"c'


def test_json_output(project, capsys):
    assert main(["check", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] == "check" and d["ok"] is True and len(d["checks"]) == 3
    assert all(c["status"] == "ok" and c["delta_bytes"] == 0 for c in d["checks"])


def test_probe_mode_without_a_gpu_is_a_clear_error(project, capsys):
    assert main(["check", "--probe", "--update", "--baseline", "probe.json"]) == 2
    err = capsys.readouterr().err
    assert "probe" in err and "Traceback" not in err
    assert not (project / "probe.json").exists()


def test_update_replaces_an_unreadable_baseline(project, capsys):
    base = project / "vramfit-baseline.json"
    base.write_text("{oops")
    assert main(["check", "--update"]) == 0
    assert "replacing an unreadable baseline" in capsys.readouterr().err
    assert set(load_baseline(base).entries) == {"small", "long", "qwen-lora"}


# ---- probe numbers (from the measurements committed under benchmarks/results/probe) -------------------------


def _published_probe() -> dict:
    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "probe"
    for path in sorted(results.glob("*.json")):
        r = json.loads(path.read_text()).get("result", {})
        if r.get("kind") == "probe" and r.get("measured", {}).get("device") == "cuda":
            return r
    pytest.skip("no GPU measurement committed under benchmarks/results/probe")


def test_measurement_from_a_real_probe_result():
    from vramfit.check import measurement_from_probe, versions

    r = _published_probe()
    m = measurement_from_probe(r)
    meas = r["measured"]
    if isinstance(meas["required_vram_bytes"], int):
        assert m.required_vram_bytes == meas["required_vram_bytes"]
    # without --find-min: the upper bound, reserved + non-PyTorch
    r2 = {**r, "measured": {**meas, "required_vram_bytes": None, "allocator_required_bytes": None}}
    assert measurement_from_probe(r2).required_high_bytes == (
        meas["peak_reserved_bytes"] + meas["non_torch_bytes"]["total"]
    )
    assert m.peak_allocated_bytes == meas["peak_allocated_bytes"] and m.peak_phase == meas["peak_phase"]
    v = versions("probe", r["environment"])
    assert v["gpu"] == r["environment"]["gpu"] and v["torch"] == r["environment"]["torch"]


def test_probe_results_without_numbers_or_out_of_memory_are_errors():
    from vramfit.check import measurement_from_probe

    r = _published_probe()
    oom = {
        **r,
        "measured": {**r["measured"], "oom": {"phase": "forward (step 1)", "message": "CUDA out of memory"}},
    }
    with pytest.raises(VramfitError, match=r"ran out of memory on this GPU in forward \(step 1\)"):
        measurement_from_probe(oom, "vramfit.toml: [configs.a]")
    cpu = {**r, "measured": {**r["measured"], "device": "cpu", "peak_reserved_bytes": None}}
    with pytest.raises(ValueError, match=r"--probe: .*measured no memory \(device 'cpu'\)"):
        measurement_from_probe(cpu)


def test_a_library_upgrade_is_named_in_a_probe_baseline_comparison(tmp_path):
    """Two probe baselines whose numbers differ and whose transformers versions differ."""
    from vramfit.check import BaselineEntry, measurement_from_probe, versions
    from vramfit.check.core import _judge

    r = _published_probe()
    m = measurement_from_probe(r)
    f = parse_check_toml(f'model = "{r["model"]}"\n[configs.a]\n')
    old_env = {**r["environment"], "transformers": "4.45.0"}
    old = BaselineEntry(r["model"], f.configs[0].config.to_json(), {},
                        None, m.required_high_bytes - 512 * 2**20)  # fmt: skip
    from vramfit.environment import describe_changes

    changes = describe_changes(versions("probe", old_env), versions("probe", r["environment"]))
    assert changes == [f"transformers 4.45.0 -> {r['environment']['transformers']}"]
    c = _judge(f.configs[0], m, f.configs[0].config.to_json(), old, 0.02, None, changes)
    assert c.status == "regression"
    assert any(msg.startswith("likely cause:") and "transformers 4.45.0 ->" in msg for msg in c.messages)
