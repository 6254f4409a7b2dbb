"""Reports read typed results: a saved result's JSON, read back into its record, renders the same page
as the record it was saved from, and a plan's JSON survives the round trip."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from test_report import probe_json  # noqa: E402

from vramfit.config import TrainConfig  # noqa: E402
from vramfit.estimate import estimate  # noqa: E402
from vramfit.gpus import resolve_card  # noqa: E402
from vramfit.plan import plan  # noqa: E402
from vramfit.plan.result import PlanResult  # noqa: E402
from vramfit.probe.result import ProbeResult  # noqa: E402
from vramfit.report import render_html, render_markdown, typed  # noqa: E402

AT = "2026-01-01 00:00 UTC"


@pytest.fixture(scope="module")
def results():
    est = estimate("smollm2-135m", TrainConfig(), resolve_card(vram="4GB"))
    return {
        "estimate": est,
        "plan fits": plan("llama-3.2-1b", resolve_card(vram="6GB")),
        "plan no fit": plan("mistral-7b", resolve_card(vram="4GB")),
        "probe": ProbeResult.from_json(probe_json(est.to_json())),
    }


@pytest.mark.parametrize("name", ["estimate", "plan fits", "plan no fit", "probe"])
def test_a_saved_result_renders_the_page_of_its_record(results, name):
    r = results[name]
    saved = r.to_json()
    assert type(typed(saved)) is type(r)
    assert render_html(saved, sweep=False, generated_at=AT) == render_html(r, sweep=False, generated_at=AT)
    assert render_markdown(saved, "x.png") == render_markdown(r, "x.png")


@pytest.mark.parametrize("name", ["plan fits", "plan no fit"])
def test_a_plan_survives_its_json(results, name):
    d = results[name].to_json()
    again = PlanResult.from_json(d).to_json()
    d.pop("search"), again.pop("search")  # configurations per second: from the rounded seconds
    assert again == d
