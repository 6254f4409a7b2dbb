"""Reports of a result (estimate, plan or probe): self-contained HTML and Markdown with a PNG chart.

The renderers take the typed result (Estimate, PlanResult, ProbeResult); a saved result's JSON is read
into it first (:func:`typed`, :func:`load_result` for a file).

matplotlib is imported only when a chart is drawn; importing this package is cheap.
"""

from __future__ import annotations

from pathlib import Path

from vramfit.report.tables import load_result, result_json, typed


def _need_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        from vramfit.errors import MissingDependency

        raise MissingDependency(
            "reports draw their charts with matplotlib, which vramfit installs; reinstall it: pip install matplotlib"
        )


def render_html(result: object, sweep: bool = True, generated_at: str | None = None) -> str:
    from vramfit.report.html import render_html as _render

    _need_matplotlib()
    return _render(result, sweep=sweep, generated_at=generated_at)


def write_html(result: object, path: str | Path, sweep: bool = True) -> list[str]:
    """Write the HTML report; return the paths written."""
    from vramfit.userfiles import write_output

    return [write_output(path, render_html(result, sweep=sweep), "--html")]


def render_markdown(result: object, chart: str | None = None) -> str:
    from vramfit.report.markdown import render_markdown as _render

    _need_matplotlib()
    return _render(result, chart)


def write_markdown(result: object, path: str | Path) -> list[str]:
    """Write the Markdown report and its PNG chart beside it; return the paths written."""
    from vramfit.report.markdown import write_markdown as _write

    _need_matplotlib()
    return _write(result, path)


__all__ = [
    "load_result",
    "result_json",
    "typed",
    "render_html",
    "write_html",
    "render_markdown",
    "write_markdown",
]
