"""The Feature maps page's charts in Chromium (ui/light_chart.py): drawn by the light build of Plotly, not by
Streamlit's; themed as the page is; following the window's width and a new layer's height; full screen and
back; a click on a tile; no button that uploads a chart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.appserver import ROOT, AppServer, browser_marks, chromium, start_app
from tests.test_browser import choose, click_tile, main, new_context, no_traceback, screenshot, settle

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks()

ARTIFACTS = ROOT / "artifacts"
MOSAIC = "[data-testid=stMain] .st-key-grid_chart .js-plotly-plot"
DRAWN = f"{MOSAIC} g.hm image"
LAYOUT = f"""() => {{ const el = document.querySelector('{MOSAIC}'); const l = el && el._fullLayout;
  return l ? {{width: l.width, height: l.height, box: el.clientWidth, paper: l.paper_bgcolor,
               font: l.font.color, full: document.fullscreenElement === el}} : null; }}"""


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    with start_app(log_path=ARTIFACTS / "browser-light-chart-server.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Any, app: AppServer) -> Iterator[Any]:
    context = new_context(browser, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.requests = requests
    page.goto(app.url)
    page.wait_for_selector(DRAWN, state="attached")
    settle(page)
    try:
        yield page
    finally:
        context.close()


def _layout(page: Any) -> dict[str, Any]:
    return page.evaluate(LAYOUT)


def test_the_page_loads_the_light_build_and_not_streamlits_plotly(page: Any) -> None:
    assert any(u.endswith("/plotly-light.min.js") for u in page.requests)
    assert not [u for u in page.requests if "PlotlyChart" in u], "Streamlit's 4.7 MB Plotly was fetched"
    titles = page.locator(f"{MOSAIC} .modebar-btn").evaluate_all("(b) => b.map(x => x.getAttribute('data-title'))")
    assert "Download plot as a PNG" in titles and "Reset axes" in titles
    assert not [t for t in titles if "Share" in t or "Cloud" in t]  # nothing uploads the maps
    layout = _layout(page)
    assert layout["paper"] == "#ffffff"  # the page's background (.streamlit/config.toml)
    no_traceback(page)


def test_the_chart_follows_the_window_and_a_new_layers_height(page: Any) -> None:
    before = _layout(page)
    assert before["width"] == before["box"] and before["height"] > 300
    page.set_viewport_size({"width": 1000, "height": 900})
    page.wait_for_function(f"""() => {{ const el = document.querySelector('{MOSAIC}');
        return el._fullLayout.width === el.clientWidth && el.clientWidth < {before['width']}; }}""")
    choose(page, "Layer", "block1.pool · MaxPool2d · 16×32×32")  # 16 channels: fewer rows, a lower chart
    page.wait_for_function(f"""() => {{ const el = document.querySelector('{MOSAIC}');
        return el && el._fullData.some(t => t.type === 'heatmap') && el._fullLayout.height < {before['height']}; }}""")
    settle(page)
    after = _layout(page)
    assert after["width"] == after["box"]
    page.set_viewport_size({"width": 1300, "height": 900})  # the new height is kept when the width changes
    page.wait_for_function(f"() => document.querySelector('{MOSAIC}')._fullLayout.width > {after['width']}")
    assert _layout(page)["height"] == after["height"]
    screenshot(page, "test_the_light_chart_follows_the_window")


def test_full_screen_and_back(page: Any) -> None:
    before = _layout(page)
    box = page.locator(f"{MOSAIC} .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.locator(f"{MOSAIC} .modebar-btn[data-title^='Full screen']").click()
    page.wait_for_function(f"""() => {{ const el = document.fullscreenElement;
        return el && el.matches('{MOSAIC}') && el._fullLayout.width === innerWidth
            && el._fullLayout.height === innerHeight; }}""")
    page.keyboard.press("Escape")
    page.evaluate("() => document.fullscreenElement && document.exitFullscreen()")
    page.wait_for_function(f"""() => {{ const el = document.querySelector('{MOSAIC}');
        return !document.fullscreenElement && el._fullLayout.height === {before['height']}
            && el._fullLayout.width === el.clientWidth; }}""")


def test_a_click_on_a_tile_opens_the_channel_and_the_detail_uses_the_light_build(page: Any) -> None:
    click_tile(page, 3)
    expect(main(page).get_by_role("heading", name="Channel 3", exact=True)).to_be_visible()
    page.wait_for_function("""() => ['detail_overlay', 'detail_map', 'detail_hist'].every(k =>
        document.querySelector(`.st-key-${k} .js-plotly-plot`)?._fullData?.length)""")
    assert not [u for u in page.requests if "PlotlyChart" in u]
    no_traceback(page)
