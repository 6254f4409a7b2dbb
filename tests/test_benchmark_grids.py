"""The probe grids (benchmarks/grids/*.toml) are vramfit.toml files, and the flags run for each configuration
mean the configuration the file states."""

from __future__ import annotations

import argparse
import shlex

import pytest

from benchmarks.grid import GRIDS_DIR, _tables, load_configs, probe_flags
from vramfit.cli.train_flags import add_model_flag, add_train_flags, config_from_args

GRID_FILES = sorted(GRIDS_DIR.glob("*.toml"))


def _parse_flags(flags: str):
    p = argparse.ArgumentParser()
    add_model_flag(p)
    add_train_flags(p)
    args = p.parse_args(shlex.split(flags))
    return args.model, config_from_args(args)


def test_there_are_grids():
    assert {p.stem for p in GRID_FILES} >= {"grid1", "grid2", "grid3", "grid4", "grid5", "sens"}


@pytest.mark.parametrize("path", GRID_FILES, ids=lambda p: p.stem)
def test_probe_flags_mean_the_configuration_of_the_file(path):
    configs = load_configs(path)  # raises on anything vramfit check would refuse
    tables = _tables(path)
    assert list(configs) == list(tables)
    for name, table in tables.items():
        assert _parse_flags(probe_flags(table)) == (configs[name].model, configs[name].config), name
