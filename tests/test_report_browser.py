"""The HTML report in a real headless browser (Debian's ``chromium``): it renders, offline, the text a
reader sees is there, and user text stays text (nothing in it runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vramfit.config import TrainConfig
from vramfit.estimate import COMPONENTS, estimate
from vramfit.gpus import resolve_card
from vramfit.report import write_html
from vramfit.report.tables import COMPONENT_LABELS
from vramfit.units import format_bytes

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no headless Chromium on PATH (Debian: apt-get install chromium)"
    ),
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def est():
    return estimate("llama-3.2-1b", TrainConfig(), resolve_card(vram="6GB"))


def test_rendered_text_has_model_peak_and_components(est, tmp_path):
    page = tmp_path / "report.html"
    write_html(est, page)
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert "llama-3.2-1b" in dom
    assert format_bytes(est.required_vram_bytes) in dom and format_bytes(est.peak_allocated_bytes) in dom
    for c in COMPONENTS:
        assert COMPONENT_LABELS[c] in dom
    assert "Memory against sequence length" in dom and "gradient checkpointing off" in dom  # SVG text
    assert dom.count("<svg") == 2


def test_screenshot_is_drawn(est, tmp_path):
    page = tmp_path / "report.html"
    write_html(est, page)
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1100,1600", page.as_uri())
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (1600, 1100)
    # not a blank page: many distinct colours (charts, banner, text)
    colours = {tuple(px) for px in (img[::8, ::8, :3] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 50


def test_model_name_with_markup_is_shown_as_text_and_never_runs(est, tmp_path):
    evil = "<script>document.documentElement.setAttribute('data-pwned','1')</script><img src=x onerror=\"document.documentElement.setAttribute('data-pwned','2')\">"
    d = est.to_json() | {"model": evil, "warnings": ["<b>not bold</b>"]}
    page = tmp_path / "evil.html"
    write_html(d, page, sweep=False)
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert 'data-pwned="' not in dom  # neither the script nor the onerror handler ran
    assert "&lt;script&gt;document.documentElement" in dom  # the name is shown, as text
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
    assert "&lt;b&gt;not bold&lt;/b&gt;" in dom
