"""“What it responds to” in Debian's headless Chromium against the real app: the preview changes while a
picture is made, the final picture and its numbers appear, the gallery fills in one picture at a time.

Screenshots go to ``artifacts/screenshots/``; with ``FEATVIZ_README_SCREENSHOTS=1`` the README's
``docs/screenshots/responds_to*.png`` are (re)written too.
Run: ``.venv/bin/python -m pytest tests/test_browser_visualize.py`` (skipped when no Chromium is found).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.appserver import ROOT, AppServer, browser_marks, chromium, start_app
from tests.test_browser import new_context, no_run_needed, settle

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks()

ARTIFACTS = ROOT / "artifacts"
README_SHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
TIMEOUT_MS = 60_000
JOB_TIMEOUT_MS = 480_000  # a picture takes seconds; on a busy 2-core machine a minute or more
PREVIEW = "[data-testid=stMain] [data-testid=stImage] img"
README = os.environ.get("FEATVIZ_README_SCREENSHOTS") == "1"
# Light settings for the test (the demo's block 2 at 64 px); the README's screenshots show a deeper layer at
# the default size. Steps: enough for several previews on an idle machine, few enough for a busy one.
# 256 steps of the demo model at 64 px: 3 s on these 2 idle cores (long enough to see the preview change), about
# a minute with a CPU hog on one core (a picture's steps are ~17x slower then: see README, Performance).
SINGLE = ("?sample=star&layer=block3.relu2", "128", "256") if README else ("?sample=star&layer=block2.relu1", "64", "256")
GALLERY_STEPS = "128" if README else "64"


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    with start_app(log_path=ARTIFACTS / "browser-visualize-server.log") as server:
        yield server


@pytest.fixture(scope="module", autouse=True)
def patient_expect() -> Iterator[None]:
    """expect() waits 5 s by default; a busy 2-core machine needs longer (restored afterwards)."""
    expect.set_options(timeout=TIMEOUT_MS)
    yield
    expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = new_context(browser, viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    yield page
    context.close()


def main(page: Any) -> Any:
    return page.get_by_test_id("stMain")


def choose(page: Any, label: str, option: str) -> None:
    box = page.get_by_role("combobox", name=label, exact=True)
    if box.input_value() == option:  # already chosen: picking it again starts no run
        return
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def screenshot(page: Any, name: str, *, readme: bool = False, height: int | None = None) -> None:
    """Save a screenshot; ``height`` first makes the window that tall and scrolls to the top (Streamlit
    scrolls inside the page, so a full-page screenshot would not show more)."""
    if height is not None:
        page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        main(page).locator("h1").first.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        settle(page)
    (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "screenshots" / f"{name}.png"))
    if readme and README:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_SHOTS / f"{name}.png"))


def no_traceback(page: Any) -> None:
    assert page.get_by_test_id("stException").count() == 0
    assert "Traceback" not in page.inner_text("body")
    assert page.js_errors == []


def open_page(page: Any, app: AppServer, query: str) -> None:
    page.goto(app.url + "responds_to" + query)
    expect(main(page).locator("h1").first).to_have_text("What it responds to")
    expect(main(page).locator(".js-plotly-plot").first).to_be_visible()  # the channel's map over the image
    settle(page)


def test_preview_updates_during_the_run_and_the_final_picture_appears(page: Any, app: AppServer) -> None:
    query, size, steps = SINGLE
    open_page(page, app, query)
    expect(main(page).get_by_text("Press Start to make a picture")).to_be_visible()
    choose(page, "Size (px)", size)
    choose(page, "Steps", steps)
    main(page).get_by_role("button", name=re.compile("^Start: make a picture for channel")).click()
    bar = main(page).get_by_test_id("stProgress").filter(has_text="Making the picture")
    expect(bar).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.locator(PREVIEW)).to_have_count(1, timeout=JOB_TIMEOUT_MS)
    first_src = page.locator(PREVIEW).get_attribute("src")
    first_text = bar.inner_text()
    step = lambda text: int(re.search(rf"step (\d+) of {steps}", text)[1])  # noqa: E731
    # the preview is redrawn while the optimization runs: a new picture at a later step (each redraw gives the
    # picture a new address, also when a busy machine made no step in between: both are waited for)
    later_text = page.wait_for_function(
        """([sel, old, first]) => { const img = document.querySelector(sel);
            const bar = [...document.querySelectorAll('[data-testid=stProgress]')]
                .find(b => b.innerText.includes('Making the picture'));
            const step = bar && bar.innerText.match(/step (\\d+) of/);
            return img && img.getAttribute('src') !== old && step && Number(step[1]) > first && bar.innerText; }""",
        arg=[PREVIEW, first_src, step(first_text)], timeout=JOB_TIMEOUT_MS,
    ).json_value()
    assert step(later_text) > step(first_text)
    screenshot(page, "responds_to_running", readme=True)
    expect(main(page).get_by_test_id("stMetric").filter(has_text="Activation reached")).to_be_visible(
        timeout=JOB_TIMEOUT_MS)
    settle(page)
    expect(bar).to_have_count(0)
    expect(page.locator(PREVIEW)).to_have_count(1)
    value = main(page).get_by_test_id("stMetricValue").first.inner_text()
    assert float(value) > 0
    with page.expect_download() as download:
        main(page).get_by_role("button", name="Download picture (PNG)").click()
    no_run_needed(page)
    picture = Image.open(io.BytesIO(open(download.value.path(), "rb").read()))
    assert picture.size == (int(size), int(size)) and picture.mode == "RGB"
    assert "vseed=0" in page.url and f"vsteps={steps}" in page.url, "the link holds the picture's settings"
    screenshot(page, "responds_to", readme=True, height=1250)
    no_traceback(page)


def test_gallery_shows_each_picture_as_soon_as_it_is_done(page: Any, app: AppServer) -> None:
    open_page(page, app, "?sample=star&layer=" + ("block3.relu2" if README else "block2.relu1"))
    choose(page, "Size (px)", "64")
    choose(page, "Steps", GALLERY_STEPS)
    main(page).get_by_role("button", name="Make all 8 pictures").click()
    bar = main(page).get_by_test_id("stProgress").filter(has_text="Making 8 pictures")
    expect(bar).to_be_visible(timeout=JOB_TIMEOUT_MS)
    # part of the gallery is shown while the rest is still being made
    page.wait_for_function(
        """() => { const bar = [...document.querySelectorAll('[data-testid=stProgress]')]
                .find(b => /Making 8 pictures: [1-7] done/.test(b.innerText));
            return bar && document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img').length >= 1; }""",
        timeout=JOB_TIMEOUT_MS,
    )
    expect(main(page).get_by_role("button", name="Download all 8 (PNG)")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    settle(page)
    expect(main(page).get_by_test_id("stImageCaption").filter(has_text=re.compile(r"^Channel \d+ · "))).to_have_count(8)
    screenshot(page, "responds_to_gallery", readme=True, height=1900)
    no_traceback(page)
