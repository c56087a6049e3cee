"""The Volumes and clips page in Debian's headless Chromium: the phantom's three planes are drawn from the exact
slices, hovering a pixel gives its exact HU value, and the axial slider changes the picture. Leaves
``artifacts/screenshots/test_volume_page.png`` (and ``...-slider.png``).

Run: ``.venv/bin/python -m pytest tests/test_browser_volume.py`` (skipped when no Chromium is found).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from featviz_core.images import PLANES, phantom_volume
from tests.appserver import ROOT, AppServer, browser_marks, chromium, start_app
from tests.test_browser import go_to, main, new_context, no_traceback, screenshot, settle

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks()

HOVER = re.compile(r"(\w+) · slice (\d+)\s*row (\d+) · column (\d+)\s*value (\S+) HU")


def chart(plane: str) -> str:
    return f"[data-testid=stMain] .st-key-volume_chart_{plane} .js-plotly-plot"


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    with start_app(log_path=ROOT / "artifacts" / "browser-volume-server.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def shown(page: Any, plane: str) -> np.ndarray:
    """The heatmap's z as Plotly holds it in the page."""
    rows = page.locator(chart(plane)).evaluate(
        "(el) => Array.from(el._fullData[0].z, (r) => Array.from(r))"
    )
    return np.array(rows, dtype=np.float32)


def hover_text(page: Any, plane: str, row: int, column: int) -> str:
    plot = chart(plane)
    page.mouse.move(2, 2)
    page.wait_for_selector(plot + " .hoverlayer .hovertext", state="detached")
    x, y = page.locator(plot).evaluate(
        """(el, [c, r]) => { const fl = el._fullLayout; const box = el.querySelector('.nsewdrag').getBoundingClientRect();
            return [box.left + fl.xaxis.l2p(c), box.top + fl.yaxis.l2p(r)]; }""",
        [column, row],
    )
    page.mouse.move(x, y)
    page.wait_for_selector(plot + " .hoverlayer .hovertext")
    return page.locator(plot + " .hoverlayer .hovertext").first.text_content() or ""


def test_volume_page(app: AppServer, browser: Any) -> None:
    volume = phantom_volume()
    context = new_context(browser)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(app.url)
        page.wait_for_selector("[data-testid=stMain] .st-key-grid_chart .js-plotly-plot", state="attached")  # the first maps
        settle(page)
        go_to(page, "Volumes and clips", "Volumes and clips")
        for plane in PLANES:  # drawn, with the exact middle slice
            expect(page.locator(chart(plane) + " g.hm image")).to_have_count(1)
            index = volume.shape3d[PLANES.index(plane)] // 2
            assert np.array_equal(shown(page, plane), volume.slice(plane, index)), plane
            box = page.locator(chart(plane) + " g.hm image").bounding_box()
            assert box and box["width"] > 200 and box["height"] > 200
        expect(main(page).get_by_text(volume.description)).to_be_visible()

        axial = volume.slice("axial", 32)
        for row, column in [(40, 60), (48, 20)]:  # the heart, the right lung
            text = hover_text(page, "axial", row, column)
            match = HOVER.search(text)
            assert match, text
            assert match.group(1, 2, 3, 4) == ("axial", "32", str(row), str(column))
            assert np.float32(float(match[5])) == axial[row, column]
        screenshot(page, "test_volume_page")

        thumb = page.locator(".st-key-volume_axial input[type=range]")
        thumb.focus()
        for _ in range(5):
            thumb.press("ArrowRight")
        expect(thumb).to_have_value("37")
        # the redrawn picture (the old one can stay beside it while the viewer reruns)
        expect(page.locator(chart("axial") + " .gtitle").filter(has_text="slice 37 ")).to_have_count(1)
        settle(page)
        expect(page.locator(chart("axial"))).to_have_count(1)
        assert np.array_equal(shown(page, "axial"), volume.slice("axial", 37))
        screenshot(page, "test_volume_page-slider")
        no_traceback(page)
        assert main(page).get_by_test_id("stAlertContentError").count() == 0
        assert errors == []
    finally:
        context.close()
