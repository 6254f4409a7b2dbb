"""vramfit/data/allocator_fit.json is what benchmarks/slack_fit.py fits on the committed measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import slack_fit
from benchmarks.accuracy.fit import fit_record, measurements
from benchmarks.accuracy.runs import RESULTS, add_vramfit, load_runs
from vramfit.estimate import allocator

DATA = Path(__file__).resolve().parent.parent / "vramfit" / "data" / "allocator_fit.json"


@pytest.fixture(scope="module")
def runs():
    runs = load_runs(RESULTS)
    add_vramfit(runs)
    return runs


def _approx(expected):
    """pytest.approx through nested dicts and lists (floats to 1e-6, the file's rounding)."""
    if isinstance(expected, dict):
        return {k: _approx(v) for k, v in expected.items()}
    if isinstance(expected, list):
        return [_approx(v) for v in expected]
    return pytest.approx(expected, abs=1e-6) if isinstance(expected, float) else expected


def test_the_data_file_is_the_fit_of_the_committed_measurements(runs):
    """A new measurement, or an estimator change that moves the fit or its held-out figures, must rerun
    `python -m benchmarks.slack_fit`."""
    shipped = json.loads(DATA.read_text())
    fitted = fit_record(runs)
    assert {k: shipped[k] for k in fitted} == _approx(fitted)
    assert shipped["command"] == slack_fit.COMMAND


def test_the_provenance_names_the_measurements(runs):
    shipped = json.loads(DATA.read_text())["measurements"]
    expected = measurements(runs, RESULTS)
    assert {k: v for k, v in shipped.items() if k != "dates"} == {
        k: v for k, v in expected.items() if k != "dates"
    }
    assert shipped["gpu"] and shipped["torch"] and shipped["dates"]


def test_the_estimator_reads_the_file():
    shipped = json.loads(DATA.read_text())
    assert allocator.REQUIRED_SLACK == allocator.Slack.from_json(shipped["required"])
    assert allocator.LOW_SLACK == allocator.Slack.from_json(shipped["low"])
    assert allocator.RESERVED_SLACK == allocator.Slack.from_json(shipped["reserved"])
    h = shipped["required"]["held_out"]
    text = allocator.slack_warning()
    assert f"on the {h['runs']} runs" in text and f"{h['mean_abs_error'] * 100:.1f} %" in text
    assert f"in {shipped['low']['held_out']['range_holds']} of the" in text


def test_the_outlier_table_is_the_held_out_fit(runs):
    """benchmarks/slack_outliers.py lists the runs behind the data file's held-out figures."""
    from benchmarks import slack_outliers

    h = json.loads(DATA.read_text())["required"]["held_out"]
    rows = slack_outliers.held_out_rows(runs)
    assert len(rows) == h["runs"]
    assert rows[0].error == pytest.approx(h["highest_error"], abs=1e-6)
    assert rows[-1].error == pytest.approx(h["lowest_error"], abs=1e-6)
    assert all(r.slack > 0 and r.point.exact for r in rows)
    assert slack_outliers.row_text(rows[0]).startswith(f"{h['highest_error'] * 100:+5.1f}")
