"""Tick numbers of every figure: plain or scientific like the hover, never Plotly's SI suffixes.

Plotly's default ``exponentformat`` ("B", SI prefixes) prints 1.5e-7 as "150n" and 2000 as "2k", which a
clinician reads as units. Every ``*_figure`` of ``featviz_core.figures`` must set ``figures.NUMBER_FORMAT``
on each axis and each drawn colour bar (checked on the figure), and the labels Chromium draws must parse as
numbers (checked in the browser) for a layer of tiny values (~1e-7) and one of large values (~1e4).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from featviz_core import figures

SCALES = {"tiny": 1e-7, "large": 1e4}
SI_SUFFIX = re.compile(r"\d\s*[yzafpnuµμmkMGTPEZYB]$")


def _maps(scale: float, shape: tuple[int, ...] = (6, 9, 9), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ((rng.random(shape) * 3 - 1) * scale).astype(np.float32)


BUILDERS: dict[str, Callable[[float], go.Figure]] = {
    "mosaic_figure": lambda s: figures.mosaic_figure(_maps(s)),
    "channel_figure": lambda s: figures.channel_figure(_maps(s)[0]),
    "overlay_figure": lambda s: figures.overlay_figure(Image.new("RGB", (64, 64), "white"), _maps(s)[0]),
    "histogram_figure": lambda s: figures.histogram_figure(_maps(s)[0]),
    "probability_figure": lambda s: figures.probability_figure([("cat", 0.7), ("dog", 0.2)]),
    "filter_mosaic_figure": lambda s: figures.filter_mosaic_figure(_maps(s, (6, 3, 5, 5))),
    "rgb_filters_figure": lambda s: figures.rgb_filters_figure(_maps(s, (6, 3, 5, 5))),
    "plane_figure": lambda s: figures.plane_figure(_maps(s)[0], (1.0, 2.0), zrange=(-s, 2 * s), showscale=True),
    "frame_figure": lambda s: figures.frame_figure(np.zeros((8, 10, 3), np.uint8)),
    "filmstrip_figure": lambda s: figures.filmstrip_figure(list(_maps(s)[:3]), [0, 1, 2]),
}
CASES = [(name, scale) for name in BUILDERS for scale in SCALES]


def _drawn_colorbars(fig: go.Figure) -> list[Any]:
    bars = []
    for trace in fig.data:
        if "colorbar" in trace and trace.showscale is not False and trace.type in ("heatmap", "contour"):
            bars.append(trace.colorbar)
        marker = getattr(trace, "marker", None)
        if marker is not None and "colorbar" in marker and marker.showscale:
            bars.append(marker.colorbar)
    return bars


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_every_figure_of_the_module_is_checked() -> None:
    assert set(BUILDERS) == {name for name in figures.__all__ if name.endswith("_figure")}


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_every_axis_and_colour_bar_uses_plain_numbers(name: str, scale: str) -> None:
    fig = BUILDERS[name](SCALES[scale])
    layout = fig.to_dict()["layout"]
    axes = [key for key in layout if re.fullmatch(r"[xy]axis\d*", key)]
    assert axes, "every figure here has axes"
    for key in axes:
        assert layout[key].get("tickformat") == figures.NUMBER_FORMAT, (name, key)
    for bar in _drawn_colorbars(fig):
        assert bar.tickformat == figures.NUMBER_FORMAT, name
    assert not [v for k, v in _walk(fig.to_dict()) if k == "exponentformat" and v in ("SI", "B")]


def test_plain_numbers_draws_no_colour_bar_that_was_not_there() -> None:
    fig = go.Figure([go.Scatter(x=[1, 2], y=[3, 4], marker={"color": "red"}),
                     go.Heatmap(z=[[1.0, 2.0]], showscale=False)])
    figures.plain_numbers(fig)
    spec = fig.to_dict()["data"]
    assert "colorbar" not in spec[0].get("marker", {}) and "colorbar" not in spec[1]
    assert fig.layout.xaxis.tickformat == figures.NUMBER_FORMAT


# ---------------------------------------------------------------------------------------------------
# In Chromium: the labels as drawn


@pytest.fixture(scope="module")
def plot_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.appserver import chromium_path, launch_browser

    if chromium_path() is None:
        pytest.skip("Chromium not found (install chromium or set FEATVIZ_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    import plotly

    folder = tmp_path_factory.mktemp("plotly_numbers")
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", folder / "plotly.min.js")
    (folder / "index.html").write_text(
        '<html><body style="margin:0"><div id="fig" style="width:900px;height:700px"></div>'
        '<script src="plotly.min.js"></script></body></html>'
    )
    with sync_api.sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto((folder / "index.html").as_uri())
            page.wait_for_function("window.Plotly !== undefined")
            yield page
        finally:
            browser.close()


def _tick_labels(page: Any, fig: go.Figure) -> list[str]:
    spec = json.loads(fig.to_json())  # what Streamlit sends
    # Plotly.newPlot resolves once the plot is drawn, ticks included
    return list(page.evaluate(
        """async (spec) => { await Plotly.newPlot('fig', spec.data, spec.layout);
        return Array.from(document.querySelectorAll('#fig g.xtick text, #fig g.ytick text, '
          + '#fig .colorbar g[class$=tick] text')).map(e => e.textContent); }""",
        spec,
    ))


def _number(label: str) -> float:
    return float(label.replace("\u2212", "-").replace("%", ""))


@pytest.mark.browser
@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize("name", ["mosaic_figure", "channel_figure", "overlay_figure", "histogram_figure"])
def test_browser_tick_labels_are_plain_numbers(plot_page: Any, name: str, scale: str) -> None:
    labels = _tick_labels(plot_page, BUILDERS[name](SCALES[scale]))
    assert labels, "no tick labels drawn"
    assert [label for label in labels if SI_SUFFIX.search(label)] == []
    values = [_number(label) for label in labels]  # every label reads as a number
    if name != "histogram_figure":  # value ticks only (a histogram's y axis counts pixels)
        nonzero = [abs(v) for v in values if v]
        assert nonzero and max(nonzero) < 10 * SCALES[scale] and min(nonzero) > SCALES[scale] / 100
