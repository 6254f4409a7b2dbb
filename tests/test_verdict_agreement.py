"""The CLI text, the HTML report and the Markdown report of one run state the same verdict and figures."""

from __future__ import annotations

import html as htmllib
import io
import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from vramfit.cli.main import main  # noqa: E402
from vramfit.config import TrainConfig  # noqa: E402
from vramfit.estimate import estimate  # noqa: E402
from vramfit.gpus import resolve_card  # noqa: E402
from vramfit.report import render_html, render_markdown  # noqa: E402
from vramfit.units import MiB  # noqa: E402

SIZE = re.compile(r"-?\d+\.\d+(?:-\d+\.\d+)? [GM]iB")
STATUS = re.compile(r"\b(fits|may fit|does not fit)\b", re.I)
PROBES = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "probe"


def _figures(sentence: str) -> tuple[str, list[str]]:
    """The verdict word and every size the sentence states, in order."""
    return STATUS.search(sentence).group(1).lower(), SIZE.findall(sentence)


def _html_banner(page: str) -> str:
    return htmllib.unescape(re.search(r'<div class="banner [a-z]+">(.*?)</div>', page).group(1))


def _cli_line(text: str) -> str:
    return next(line for line in text.splitlines() if STATUS.search(line) and " usable" in line)


def _run_cli(argv: list[str], tmp_path: Path, capsys, monkeypatch) -> tuple[str, str, str]:
    monkeypatch.setenv("COLUMNS", "400")
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    main([*argv, "--html", str(html), "--markdown", str(md)])
    out = capsys.readouterr().out
    return _cli_line(out), _html_banner(html.read_text()), md.read_text().splitlines()[0]


def _assert_same(cli: str, page: str, md: str, want: str) -> None:
    status, sizes = _figures(cli)
    assert status == want, cli
    assert len(sizes) >= 3, cli  # the requirement, the usable memory, the headroom or the shortfall
    assert _figures(page) == (status, sizes), (cli, page)
    assert _figures(md.replace("\\", "")) == (status, sizes), (cli, md)


def _vram_between(low: int, high: int) -> str:
    """A --vram whose usable memory lies between the two ends of a requirement."""
    for mib in range(low // MiB, high // MiB + 2048):
        usable = resolve_card(vram=f"{mib}MiB").usable_bytes
        if low <= usable < high:
            return f"{mib}MiB"
    pytest.fail("no card size between the two ends")


def test_estimate_does_not_fit_states_one_shortfall(tmp_path, capsys, monkeypatch):
    argv = [
        "estimate",
        "--model",
        "llama-3.2-1b",
        "--seq-len",
        "2048",
        "--batch-size",
        "4",
        "--gpu",
        "rtx-3060",
    ]
    cli, page, md = _run_cli(argv, tmp_path, capsys, monkeypatch)
    _assert_same(cli, page, md, "does not fit")
    est = estimate("llama-3.2-1b", TrainConfig(seq_len=2048, batch_size=4), resolve_card(gpu="rtx-3060"))
    v = est.verdict
    from vramfit.units import format_bytes

    assert f"short by {format_bytes(v.short_at_best_bytes)} even at best" in cli  # the low end decides
    assert f"({format_bytes(-v.headroom_bytes)} at the high end)" in cli


def test_estimate_fits_and_may_fit(tmp_path, capsys, monkeypatch):
    argv = ["estimate", "--model", "llama-3.2-1b", "--gpu", "rtx-3060"]
    _assert_same(*_run_cli(argv, tmp_path, capsys, monkeypatch), "fits")
    est = estimate("llama-3.2-1b", TrainConfig(seq_len=1024))
    vram = _vram_between(est.required_vram_low_bytes, est.required_vram_bytes)
    argv = ["estimate", "--model", "llama-3.2-1b", "--seq-len", "1024", "--vram", vram]
    _assert_same(*_run_cli(argv, tmp_path, capsys, monkeypatch), "may fit")


def test_plan_states_the_headroom_after_the_margin(tmp_path, capsys, monkeypatch):
    argv = ["plan", "--model", "llama-3.2-1b", "--gpu", "rtx-3060", "--seq-len", "1024"]
    cli, page, md = _run_cli(argv, tmp_path, capsys, monkeypatch)
    _assert_same(cli, page, md, "fits")
    assert "+ margin" in cli


def _probe_with_card(name: str, vram: str | None = None) -> dict:
    """A published probe result with its estimate made again for a card, as ``vramfit probe --gpu`` does."""
    path = PROBES / name
    if not path.exists():
        pytest.skip(f"{name} is not committed")
    r = json.loads(path.read_text())["result"]
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in r["config"].items() if k in known}
    )
    if vram is None:  # between the measured peaks: the requirement may fit
        m = r["measured"]
        nt = m["non_torch_bytes"]["total"]
        vram = _vram_between(m["peak_allocated_bytes"] + nt, m["peak_reserved_bytes"] + nt)
    est = estimate(r["model"], cfg, resolve_card(vram=vram)).to_json()
    keep = {
        k: r[k] for k in ("kind", "measured", "environment", "trials", "probe_warnings", "snapshot") if k in r
    }
    return {**est, **keep, "config": r["config"]}


@pytest.mark.parametrize(
    ("name", "vram", "want"),
    [
        ("h100_findmin.json", "12GB", "fits"),  # --find-min: the measured requirement
        ("h100_findmin.json", "5GB", "does not fit"),
        ("h100_verdict.json", None, "may fit"),  # no --find-min: between the measured peaks
    ],
)
def test_probe_result_from_a_fixture(name, vram, want):
    from rich.console import Console

    from vramfit.cli.probe_render import render
    from vramfit.probe.result import ProbeResult

    d = _probe_with_card(name, vram)
    out = io.StringIO()
    render(ProbeResult.from_json(d), Console(file=out, width=400))
    cli = _cli_line(out.getvalue())
    page = _html_banner(render_html(d, sweep=False))
    md = render_markdown(d).splitlines()[0]
    _assert_same(cli, page, md, want)
