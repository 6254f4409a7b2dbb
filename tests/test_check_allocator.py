"""vramfit.toml's ``expandable_segments``: per configuration and at the top level, else the environment."""

from __future__ import annotations

import json

import pytest

from vramfit.check import parse_check_toml
from vramfit.check.measure import allocator_of, measure_estimate
from vramfit.cli.main import main
from vramfit.config import TrainConfig
from vramfit.estimate import estimate

TOML = """
model = "smollm2-135m"
expandable_segments = true

[configs.es]

[configs.default-allocator]
expandable_segments = false

[configs.from-env]
model = "qwen2.5-0.5b"
"""


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_the_key_is_read_per_configuration_over_the_top_level():
    es, default, inherited = parse_check_toml(TOML).configs
    assert (es.expandable_segments, default.expandable_segments, inherited.expandable_segments) == (
        True,
        False,
        True,
    )
    assert parse_check_toml('model = "smollm2-135m"\n[configs.a]\n').configs[0].expandable_segments is None


def test_a_value_that_is_not_a_bool_names_the_key():
    with pytest.raises(ValueError, match=r"\[configs.a\] expandable_segments: expected true or false"):
        parse_check_toml('model = "smollm2-135m"\n[configs.a]\nexpandable_segments = "yes"\n')


def test_the_estimate_uses_the_allocator_the_file_names(clean_env):
    es, default, _ = parse_check_toml(TOML).configs
    for c, expandable in ((es, True), (default, False)):
        record, _, config, _ = measure_estimate(c)
        want = estimate("smollm2-135m", TrainConfig(), expandable_segments=expandable)
        assert record.required_high_bytes == want.memory.required_high_bytes
        assert config["expandable_segments"] is expandable
    # the two allocators differ for this configuration, so the test tells them apart
    assert estimate("smollm2-135m", TrainConfig(), expandable_segments=True).allocator_required_bytes != (
        estimate("smollm2-135m", TrainConfig()).allocator_required_bytes
    )


def test_without_the_key_the_environment_decides_as_torch_reads_it(clean_env):
    c = parse_check_toml('model = "smollm2-135m"\n[configs.a]\n').configs[0]
    assert allocator_of(c).expandable_segments is False and allocator_of(c).source == "default"
    clean_env.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    assert allocator_of(c).expandable_segments is True and allocator_of(c).source == "PYTORCH_CUDA_ALLOC_CONF"
    assert measure_estimate(c)[2]["expandable_segments"] is True


def test_the_baseline_records_the_allocator_and_a_change_is_named(tmp_path, clean_env, capsys):
    clean_env.chdir(tmp_path)
    (tmp_path / "vramfit.toml").write_text(TOML)
    assert main(["check", "--update"]) == 0
    configs = json.loads((tmp_path / "vramfit-baseline.json").read_text())["configs"]
    assert configs["es"]["config"]["expandable_segments"] is True
    assert configs["default-allocator"]["config"]["expandable_segments"] is False
    (tmp_path / "vramfit.toml").write_text(
        TOML.replace("expandable_segments = true", "expandable_segments = false")
    )
    capsys.readouterr()
    main(["check", "--tolerance", "0%"])
    assert "expandable_segments True -> False" in capsys.readouterr().out
