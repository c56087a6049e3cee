"""What the first visitor of a fresh ``streamlit run app.py`` sees (Community Cloud's way), in Chromium.

Nothing is loaded before the first visit there, so app.py must draw the page frame and "Loading the
model…" before it imports torch and the app; and switching to a model not loaded yet shows a spinner naming
it. Both are short-lived, so they are recorded by a MutationObserver from the page's first script on
(``tests.appserver.PAGE_MARKS_SCRIPT``), never by polling or sleeping. The speed of all this is measured
by ``python -m bench.run --only first_view``, not here.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from featviz_core.figures.preview import COLOUR_BAR_PX
from tests.appserver import (
    FEATVIZ_RUN,
    AppServer,
    browser_marks,
    clear_marks,
    launch_browser,
    marks_script,
    page_marks,
    start_app,
    watch,
)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks()

HEATMAP = """() => { const img = document.querySelector('.st-key-grid_chart g.hm image');
  return img && (img.getAttribute('href') || '').length > 0 ? img.getAttribute('href') : false; }"""
LOADING = "(document.querySelector('[data-testid=stMain]') || {}).textContent?.includes('Loading the model')"
STILL_SHOWN = """() => { const img = document.querySelector('.st-key-grid_still img');
  return !!img && img.complete && img.naturalWidth > 0 && getComputedStyle(img).display !== 'none'
    && !document.querySelector('.st-key-grid_chart .js-plotly-plot'); }"""
"""The still picture is in the page, decoded and displayed, while no Plotly chart exists yet: what the browser
paints next. (When it paints depends on the machine's load; ``bench/first_view.py`` times the paint.)"""
KEEP_THE_STILL = """window.__still = null; new MutationObserver(() => {
  const img = document.querySelector('.st-key-grid_still img'); if (img && !window.__still) window.__still = img.src;
}).observe(document, {subtree: true, childList: true});
"""
FROM_THE_START = {
    "loading": f"() => {LOADING}",

    # the page frame with it: our title, and the navigation to every page
    "frame_and_loading": f"() => {LOADING} && document.title.startsWith('featviz')"
                         " && document.querySelectorAll('[data-testid=stSidebarNavLink]').length > 1",
    "heatmap": HEATMAP,
}


@pytest.fixture(scope="module")
def fresh_app() -> Iterator[AppServer]:
    with start_app() as server:  # streamlit run app.py: nothing imported until the first visit
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = launch_browser(pw)
        try:
            yield chromium
        finally:
            chromium.close()


def _new_page(browser: Any, init_script: str) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(120_000)
    context.add_init_script(init_script)
    return context.new_page()


@pytest.fixture(scope="module")
def page(fresh_app: AppServer, browser: Any) -> Any:
    return _new_page(browser, marks_script(FROM_THE_START) + KEEP_THE_STILL)


def test_the_first_visit_shows_the_frame_and_a_loading_line_before_the_maps(page: Any, fresh_app: AppServer) -> None:
    page.goto(fresh_app.url + "?model=tv:resnet18:random")
    page.wait_for_function("() => 'heatmap' in window.__fv.marks")
    marks = page_marks(page)
    assert "loading" in marks, "no 'Loading the model…' line while the app was importing"
    assert marks["loading"] < marks["heatmap"]
    assert "frame_and_loading" in marks, "the loading line was shown without the page frame around it"
    expect(page.get_by_text("Loading the model…")).to_have_count(0)  # gone once the app is there
    assert page.get_by_test_id("stException").count() == 0


def _pixels(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGBA")).astype(int)


def test_the_still_picture_of_the_maps_has_plotlys_colours_and_goes_once_the_chart_is_drawn(page: Any) -> None:
    page.wait_for_function("() => 'heatmap' in window.__fv.marks")
    expect(page.locator(".st-key-grid_still")).to_be_hidden()  # the chart replaced it (here Plotly was loaded)
    still = page.evaluate("() => window.__still")
    assert still, "the first mosaic came without its still picture"
    plotly = _pixels(page.evaluate("() => document.querySelector('.st-key-grid_chart g.hm image').getAttribute('href')"))
    # the still is laid out as the chart: the figure's height, its top margin, each cell a block of pixels
    height, top, bottom = page.evaluate("""() => { const l = document.querySelector('.st-key-grid_chart .js-plotly-plot')
        ._fullLayout; return [l.height, l.margin.t, l.margin.b]; }""")
    picture = _pixels(still)
    assert picture.shape[0] == height
    rows, columns = plotly.shape[:2]
    ys = top + ((np.arange(rows) + 0.5) * (height - top - bottom) / rows).astype(int)
    xs = ((np.arange(columns) + 0.5) * (height - top - bottom) / rows).astype(int)
    ours = picture[np.ix_(ys, xs)]
    assert np.array_equal(ours[..., 3], plotly[..., 3])  # the same gaps
    opaque = ours[..., 3] > 0
    assert np.abs(ours[opaque][:, :3] - plotly[opaque][:, :3]).max() <= 1  # the same colours, to 8-bit rounding


STILL_BOX = """() => { const img = document.querySelector('.st-key-grid_still img');
  if (!img || !img.complete || img.naturalWidth === 0) return null;
  if (document.querySelector('[data-testid=stMain] [data-testid=stSkeleton]')) return null;  // the page still grows
  const r = img.getBoundingClientRect(); return [r.x, r.y, r.width, r.height, img.naturalWidth, img.naturalHeight]; }"""
"""The still picture on screen (x, y, width, height) and its size in pixels, once the page above it is drawn."""
CHART_BOX = """() => { const img = document.querySelector('.st-key-grid_chart g.hm image');
  if (!img || !(img.getAttribute('href') || '').length) return null;
  const r = img.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }"""


def test_the_still_picture_sits_where_the_chart_comes_and_stays_when_plotly_cannot_load(
        browser: Any, fresh_app: AppServer) -> None:
    blocked = _new_page(browser, "")
    drawn = _new_page(browser, "")
    try:
        blocked.route("**/plotly-light.min.js", lambda route: route.abort())  # the chart's code never arrives
        blocked.goto(fresh_app.url)
        still = blocked.wait_for_function(STILL_BOX).json_value()
        expect(blocked.locator(".st-key-grid_still img")).to_be_visible()
        expect(blocked.get_by_test_id("stMain").locator("h1")).to_have_text("Feature maps")
        assert blocked.locator(".st-key-grid_chart .js-plotly-plot").count() == 0
        drawn.goto(fresh_app.url)
        chart = drawn.wait_for_function(CHART_BOX).json_value()
        expect(drawn.locator(".st-key-grid_still")).to_be_hidden()
        top, bottom = drawn.evaluate("""() => { const l = document.querySelector('.st-key-grid_chart .js-plotly-plot')
            ._fullLayout; return [l.margin.t, l.margin.b]; }""")
        x, y, width, height, natural_width, natural_height = still
        scale = height / natural_height  # the picture's heatmap: below its top margin, left of the colour bar's room
        still = [x, y + top * scale, (natural_width - COLOUR_BAR_PX) * scale, (natural_height - top - bottom) * scale]
        # the same place and size (one pixel for rounding, and the chart may sit a few pixels off centre)
        assert abs(still[1] - chart[1]) <= 1 and abs(still[3] - chart[3]) <= 1, (still, chart)
        assert abs(still[0] - chart[0]) <= 6 and abs(still[2] - chart[2]) <= 1, (still, chart)
    finally:
        blocked.context.close()
        drawn.context.close()


def test_with_featviz_run_the_maps_are_on_screen_before_plotly_has_started(browser: Any) -> None:
    with start_app(command=FEATVIZ_RUN) as server:
        page = _new_page(browser, marks_script({"still": STILL_SHOWN, "heatmap": HEATMAP}))
        try:
            page.goto(server.url)
            page.wait_for_function("() => 'heatmap' in window.__fv.marks")
            marks = page_marks(page)
            assert "still" in marks, "the still picture was never on screen before the chart"
            assert marks["still"] < marks["heatmap"]
            expect(page.locator(".st-key-grid_still")).to_be_hidden()
            assert page.get_by_test_id("stException").count() == 0
        finally:
            page.context.close()


def test_switching_to_a_new_model_names_it_in_a_spinner(page: Any, fresh_app: AppServer) -> None:
    page.wait_for_function(HEATMAP)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')")
    old = page.evaluate(HEATMAP)
    clear_marks(page)
    watch(page, "spinner", "(name) => document.querySelector('[data-testid=stSidebar]').textContent"
                           ".includes('Building ' + name + '…')", "resnet34")
    watch(page, "new_heatmap", "(old) => { const img = document.querySelector('.st-key-grid_chart g.hm image');"
                               " return img && img.getAttribute('href') !== old; }", old)
    box = page.locator(".st-key-arch input[role='combobox']")
    box.click()
    box.press_sequentially("resnet34")
    page.get_by_role("option", name="ResNet · resnet34 · 83 MB").click()
    caption = page.locator("[data-testid=stMain] [data-testid=stCaptionContainer]").first
    expect(caption).to_contain_text(" · resnet34 · layer")
    page.wait_for_function("() => 'new_heatmap' in window.__fv.marks")
    marks = page_marks(page)
    assert "spinner" in marks, "no spinner named resnet34 while it was built"
    assert marks["click"] <= marks["spinner"] < marks["new_heatmap"]
    expect(page.get_by_text("Building resnet34…")).to_have_count(0)


def test_the_statistics_table_is_built_when_its_expander_opens(page: Any) -> None:
    main = page.get_by_test_id("stMain")
    expect(main.get_by_test_id("stDataFrame")).to_have_count(0)  # not part of the first view
    main.get_by_text("Numbers for every channel", exact=False).click()
    expect(main.get_by_test_id("stDataFrame")).to_be_visible()
    expect(main.get_by_text("Sort by clicking a column header.", exact=False)).to_be_visible()
