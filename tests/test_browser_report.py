"""The report in Chromium: opened from disk with every request blocked it draws every chart, hovers give the
exact values, and nothing is requested; downloaded from the running app it holds nothing of an upload unless
the user ticked "Include my image".

Screenshots go to ``artifacts/screenshots/report-*.png``. Skipped when no Chromium is found.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import featviz_core
from featviz_core import cam, extract, layer_info, load_demo, load_image, sample_bytes, sanity_check
from featviz_core.figures import mosaic_layout
from featviz_core.report import report_html
from featviz_core.report.html import SHOWN_CHANNELS, plotly_js
from tests.appserver import ROOT, AppServer, browser_marks, chromium, start_app
from tests.data_builders import png_bytes
from tests.test_browser import new_context, no_run_needed, settle

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks()

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060]")
HOVER = re.compile(r"channel (\d+)\s*x (\d+) · y (\d+)\s*value (\S+)")
LAYER = "block2.relu1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    return load_demo()


def open_offline(browser: Any, path: Path, name: str) -> tuple[Any, Any, list[str], list[str]]:
    """Open ``path`` with every request but the file itself aborted; wait until every chart is drawn."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    blocked: list[str] = []
    errors: list[str] = []

    def route(r: Any) -> None:
        if r.request.url == path.as_uri():
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_function(
        "() => { const c = document.querySelectorAll('.chart');"
        " return c.length > 0 && Array.from(c).every(d => d.querySelector('.main-svg') && d._fullLayout); }",
        timeout=60_000,
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"report-{name}.png"), full_page=True)
    return context, page, blocked, errors


def hover_mosaic(page: Any, col: float, row: float) -> str:
    chart = page.locator(".chart[data-name=mosaic]")
    chart.scroll_into_view_if_needed()
    page.mouse.move(2, 2)
    x, y = chart.evaluate(
        """(el, [c, r]) => { const fl = el._fullLayout; const box = el.querySelector('.nsewdrag').getBoundingClientRect();
            return [box.left + fl.xaxis.l2p(c), box.top + fl.yaxis.l2p(r)]; }""",
        [float(col), float(row)],
    )
    page.mouse.move(x, y)
    page.wait_for_selector(".chart[data-name=mosaic] .hoverlayer .hovertext", timeout=5000)
    return ZERO_WIDTH.sub("", page.locator(".chart[data-name=mosaic] .hovertext").first.text_content() or "")


@pytest.mark.parametrize("include", [True, False], ids=["with-image", "without-image"])
def test_offline_report_draws_every_chart_with_exact_hovers(browser, demo, tmp_path, include: bool) -> None:
    image = load_image(sample_bytes("star"))
    maps = extract(demo, image, [LAYER]).activations[LAYER]
    result = cam(demo, image, "block3")
    data = report_html(demo, layer_info(demo, LAYER), maps, view=demo.model_view(image) if include else None,
                       image_name="star.png", top_k=extract(demo, image, [LAYER]).top_k(5), cam=result,
                       sanity=sanity_check(demo, image, "block3", original=result), version=featviz_core.__version__)
    path = tmp_path / "report.html"
    path.write_bytes(data)
    context, page, blocked, errors = open_offline(browser, path, "with-image" if include else "without-image")
    try:
        charts = page.locator(".chart")
        assert charts.count() == (7 if include else 6)
        for i in range(charts.count()):  # every chart has drawn its heatmap bitmap
            expect(charts.nth(i).locator("g.hm image").first).to_be_attached()
        assert (page.locator("#view").count() == 1) == include
        strongest = [int(c) for c in np.argsort(-maps.mean(axis=(1, 2)), kind="stable")[:SHOWN_CHANNELS]]
        layout = mosaic_layout(SHOWN_CHANNELS, 32, 32)
        for tile, lx, ly in [(0, 5, 7), (3, 31, 0), (10, 16, 20)]:
            top, left = layout.origin(tile)
            match = HOVER.search(hover_mosaic(page, left + lx, top + ly))
            assert match, "no hover text"
            channel, x, y = int(match[1]), int(match[2]), int(match[3])
            assert (channel, x, y) == (strongest[tile], lx, ly)
            assert np.float32(float(match[4])) == maps[channel, ly, lx]  # exactly the float32 value
        verdict = page.locator("#verdict")
        assert verdict.inner_text().startswith("This map changes a lot")
        assert blocked == [], f"the report asked for {blocked}"
        assert errors == []
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------------
# Downloaded from the running app


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    with start_app(log_path=ROOT / "artifacts" / "browser-report-server.log") as server:
        yield server


def download_report(page: Any) -> tuple[str, bytes]:
    button = page.get_by_test_id("stMain").get_by_test_id("stDownloadButton").filter(has_text="Download report")
    with page.expect_download(timeout=120_000) as info:
        button.get_by_role("button").first.click()
    download = info.value
    no_run_needed(page)
    return download.suggested_filename, Path(download.path()).read_bytes()


def test_downloaded_report_of_an_upload_holds_none_of_it_unless_asked(browser, app, tmp_path) -> None:
    context = new_context(browser, viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(60_000)
    outside: list[str] = []
    page = context.new_page()
    page.on("request", lambda r: outside.append(r.url) if urllib.parse.urlsplit(r.url).hostname
            not in ("127.0.0.1", "localhost", None) and not r.url.startswith(("data:", "blob:")) else None)
    try:
        page.goto(app.url + "where_it_looks")
        page.wait_for_selector("[data-testid=stMain] [data-testid=stPlotlyChart] .js-plotly-plot")
        settle(page)
        upload = png_bytes(seed=99)
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_test_id("stButtonGroup").get_by_role("radio", name="Upload", exact=True).click()
        settle(page)
        sidebar.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(
            {"name": "patient-scan.png", "mimeType": "image/png", "buffer": upload})
        expect(sidebar.locator("[data-testid=stImageCaption]").first).to_contain_text("patient-scan.png")
        settle(page)
        checkbox = page.get_by_role("checkbox", name="Include my image")
        expect(checkbox).not_to_be_checked()
        before = app.forward_count()
        name, data = download_report(page)
        assert app.forward_count() == before, "the report reuses the page's cached map and check"
        assert name == f"featviz_TinyVGG-demo_{LAYER}_patient-scan_report.html"
        assert b"Your picture is not in this file" in data and b"patient-scan" not in data
        own = data.replace(plotly_js().encode(), b"")  # plotly.js itself carries a tiny icon as a data: URI
        assert upload[-200:] not in data and b"data:image/png" not in own
        path = tmp_path / name
        path.write_bytes(data)
        offline, shown, blocked, errors = open_offline(browser, path, "downloaded")
        offline.close()
        assert blocked == [] and errors == []

        page.get_by_text("Include my image").click()
        settle(page)
        expect(checkbox).to_be_checked()
        _, with_image = download_report(page)
        assert b"data:image/png;base64," in with_image.replace(plotly_js().encode(), b"")
        assert b"patient-scan.png" in with_image
        page.screenshot(path=str(SCREENSHOTS / "report-button.png"))
        assert outside == []
    finally:
        context.close()
