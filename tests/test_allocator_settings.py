"""The allocator setting: read from the environment as torch reads it, and the plan that recommends it."""

from __future__ import annotations

import json
import os

import pytest

from vramfit.allocator_settings import child_environment, parse_conf, resolve, variables_read
from vramfit.cli.main import main

HERE = os.path.dirname(os.path.abspath(__file__))
ENV_CHECK = os.path.join(HERE, "..", "benchmarks", "results", "expandable", "h200_allocator_env_check.json")


def test_the_rule_matches_what_torch_2_11_did_on_the_h200():
    """Each measured combination of the two variables: torch's own report vs vramfit's reading."""
    cases = json.load(open(ENV_CHECK))["cases"]
    assert len(cases) == 5
    for c in cases:
        got = c["torch_reports"]
        predicted = resolve(None, env=c["env"], torch_version=got["torch"], platform="linux")
        assert predicted.expandable_segments == got["snapshot_expandable"], c


def test_old_torch_ignores_the_new_variable_and_says_so():
    s = resolve(None, env={"PYTORCH_ALLOC_CONF": "expandable_segments:True"}, torch_version="2.9.1",
                platform="linux")  # fmt: skip
    assert not s.expandable_segments
    assert any("ignores it" in w and "183387" in w for w in s.warnings)
    assert variables_read("2.9.1") == ("PYTORCH_CUDA_ALLOC_CONF",)


def test_max_split_size_with_expandable_segments_is_a_warning():
    env = {"PYTORCH_ALLOC_CONF": "expandable_segments:True,max_split_size_mb:128"}
    s = resolve(None, env=env, torch_version="2.11.0", platform="linux")
    assert s.expandable_segments and any("123548" in w for w in s.warnings)


def test_windows_ignores_expandable_segments():
    s = resolve(True, env={}, torch_version="2.11.0", platform="windows")
    assert not s.expandable_segments and any("Windows" in w for w in s.warnings)


def test_child_environment_keeps_other_options_and_one_variable():
    env = child_environment(True, {"PYTORCH_CUDA_ALLOC_CONF": "garbage_collection_threshold:0.6"}, "2.11.0")
    assert "PYTORCH_CUDA_ALLOC_CONF" not in env
    assert parse_conf(env["PYTORCH_ALLOC_CONF"]) == {
        "garbage_collection_threshold": "0.6",
        "expandable_segments": "True",
    }


def test_estimate_states_the_allocator_it_assumed(capsys, monkeypatch):
    monkeypatch.setenv("PYTORCH_ALLOC_CONF", "expandable_segments:True")
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    main(["estimate", "--model", "llama-3.2-1b", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["allocator"]["expandable_segments"] is True and d["allocator"]["source"] == "PYTORCH_ALLOC_CONF"
    assert d["assumptions"]["expandable_segments"] is True
    main(["estimate", "--model", "llama-3.2-1b", "--no-expandable-segments", "--json"])
    d2 = json.loads(capsys.readouterr().out)
    assert d2["allocator"]["source"] == "flag" and d2["assumptions"]["expandable_segments"] is False
    assert d2["allocator_required_bytes"] > d["allocator_required_bytes"]


@pytest.mark.parametrize(("model", "code"), [("llama-3.2-1b", 0), ("mistral-7b", 1)])
def test_plan_on_4gb_plans_for_expandable_segments(model, code, capsys):
    assert main(["plan", "--model", model, "--vram", "4GB", "--platform", "linux", "--json"]) == code
    d = json.loads(capsys.readouterr().out)
    assert any("expandable_segments:True" in n for n in d["notes"])
    if code == 0:
        rec = d["recommended"]
        assert rec["required_vram_bytes"] + rec["margin_bytes"] <= 4 << 30
        assert rec["assumptions"]["expandable_segments"] is True
        assert d["code"]["python"].startswith("import os")
        assert d["code"]["probe"].startswith("PYTORCH_ALLOC_CONF=expandable_segments:True ")
        assert any("without it" in n for n in d["notes"])


def test_plan_on_windows_plans_for_the_default_allocator(capsys):
    main(["plan", "--model", "llama-3.2-1b", "--vram", "6GB", "--platform", "windows", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert not d["code"]["python"].startswith("import os")
    assert any("default caching allocator" in n for n in d["notes"])
