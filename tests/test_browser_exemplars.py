"""The Exemplars page in Chromium: a first visitor sees the top images of the bundled examples without doing
anything; upload a zip, watch the progress bar move, open a channel's top images, open one in the sidebar. Leaves screenshots in ``artifacts/screenshots/`` (and, with FEATVIZ_README_SHOTS=1, the
README's ``docs/screenshots/exemplars*.png``).

Run: ``.venv/bin/python -m pytest tests/test_browser_exemplars.py`` (skipped when no Chromium is found).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.appserver import ROOT, AppServer, browser_marks, chromium, start_app
from tests.test_browser import (
    FRESH,
    go_to,
    image_caption,
    main,
    new_context,
    no_traceback,
    screenshot,
    settle,
    sidebar,
)
from tests.test_page_exemplars import shapes

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks()

ARTIFACTS = ROOT / "artifacts"
VIEWPORT = {"width": 1500, "height": 1100}
TIMEOUT_MS = 60_000
BAR = "[data-testid=stMain] [role=progressbar]"
# The progress bar's value now (null without one), read from bars that are not stale leftovers of an earlier run
BAR_VALUE = f"""(() => {{
    const bars = [...document.querySelectorAll('{BAR}')].filter(b => !b.closest('[data-stale=true]'));
    return bars.length ? Math.max(...bars.map(b => Number(b.getAttribute('aria-valuenow')))) : null; }})()"""


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    with start_app(log_path=ARTIFACTS / "browser-exemplars-server.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Any, app: AppServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = new_context(browser, viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(app.url)
    expect(main(page).locator("h1").first).to_have_text("Feature maps", timeout=TIMEOUT_MS)
    settle(page)
    yield page
    try:
        screenshot(page, request.node.name)
    finally:
        context.close()


def shapes_zip(n: int, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in shapes(n, seed):
            archive.writestr(f"shapes/{name}", data)
        archive.writestr("shapes/notes.txt", b"a file that is not a picture")
    return buffer.getvalue()


def choose_images(page: Any, source: str) -> None:
    main(page).get_by_test_id("stButtonGroup").get_by_role("radio", name=source, exact=True).click()
    settle(page)


def upload_zip(page: Any, data: bytes, name: str = "shapes.zip") -> None:
    choose_images(page, "Zip file")  # the page opens on the bundled examples
    files = main(page).locator("[data-testid=stFileUploader] input[type=file]")
    files.set_input_files({"name": name, "mimeType": "application/zip", "buffer": data})
    expect(main(page).get_by_role("button", name=re.compile(r"Find the exemplars"))).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)


def wait_until_finished(page: Any) -> None:
    expect(main(page).get_by_role("heading", name=re.compile(r"images read"))).to_be_visible(timeout=300_000)
    settle(page)


def wait_for_pictures(page: Any) -> list[str]:
    """Wait for a channel's 27 pictures (9 strongest, their patches, 9 weakest), all loaded; the captions."""
    expect(main(page).locator("[data-testid=stImage] img")).to_have_count(27, timeout=TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img')]"
        ".every(i => i.complete && i.naturalWidth > 0)")
    return main(page).get_by_test_id("stCaptionContainer").all_inner_texts()


def test_a_first_visitor_sees_the_top_images_of_the_bundled_examples(page: Any) -> None:
    go_to(page, "Exemplars", "Exemplars")
    expect(main(page).get_by_text(re.compile(r"^Pictures that come with featviz: .*CC0"))).to_be_visible()
    expect(main(page).get_by_text(re.compile(r"^The bundled examples: 188 files"))).to_be_visible()
    assert main(page).locator("[data-testid=stFileUploader]").count() == 0
    wait_until_finished(page)  # nothing pressed, nothing uploaded
    expect(main(page).get_by_role("heading", name=re.compile(r"^188 images read"))).to_be_visible()
    assert main(page).get_by_role("button", name=re.compile(r"Find the exemplars")).count() == 0
    captions = wait_for_pictures(page)
    names = [c.strip() for c in captions if c.strip().endswith((".png", ".jpg"))]
    assert len(names) == 27 and sum(c.startswith("peak") for c in captions) == 27, captions
    expect(main(page).get_by_role("combobox", name="Channel", exact=True)).to_have_value(
        re.compile(r"^channel \d+ · highest peak"))  # the strongest channel, chosen for the visitor
    no_traceback(page)


def test_upload_a_zip_watch_the_progress_and_open_the_top_images(page: Any) -> None:
    go_to(page, "Exemplars", "Exemplars")
    upload_zip(page, shapes_zip(480))
    expect(main(page).get_by_text("The zip file shapes.zip: 481 files")).to_be_visible(timeout=TIMEOUT_MS)
    # Every value the bar shows, sampled in the page every 50 ms (Streamlit redraws it twice a second).
    page.evaluate(f"""() => {{ window.barValues = [];
        window.barTimer = setInterval(() => {{ const v = {BAR_VALUE};
            if (v !== null && v !== window.barValues[window.barValues.length - 1]) window.barValues.push(v); }}, 50);
    }}""")
    main(page).get_by_role("button", name=re.compile(r"Find the exemplars")).click()
    page.wait_for_function(f"() => {{ const v = {BAR_VALUE}; return v > 0 && v < 100; }}", timeout=120_000)
    expect(main(page).get_by_text(re.compile(r"of 481 images · [\d.]+ images per second · about \d+ (s|min) left"))
           ).to_be_visible(timeout=TIMEOUT_MS)
    wait_until_finished(page)
    values = page.evaluate("() => { clearInterval(window.barTimer); return window.barValues; }")
    # How many values a browser sees depends on the machine's speed (a fast one reads the 480 pictures between
    # two redraws): what holds everywhere is a value part-way (waited for above) and no step back. That the job
    # itself reports many steps forward is tested on its progress record (test_exemplars.py).
    moving = [v for v in values if v > 0]
    assert any(0 < v < 100 for v in moving), f"the bar should show a value part-way, it showed {values}"
    assert moving == sorted(moving), f"the bar should move forward and never back, it showed {values}"
    expect(main(page).get_by_text("1 file could not be read")).to_be_visible(timeout=TIMEOUT_MS)
    # a channel's top images: pick one by number
    box = main(page).get_by_role("combobox", name="Channel", exact=True)
    box.click()
    box.press_sequentially("channel 7 ")
    page.get_by_role("option", name=re.compile(r"^channel 7 · ")).click()
    settle(page)
    captions = wait_for_pictures(page)
    assert sum("peak" in c for c in captions) == 27
    names = [c.strip() for c in captions if c.strip().endswith(".png")]
    assert len(names) == 27, captions
    first_name = names[0]
    # every name stays on one line: as high as the value's line below it
    heights = main(page).get_by_test_id("stCaptionContainer").evaluate_all(
        "els => els.map(e => [e.innerText.trim(), e.getBoundingClientRect().height])")
    line = max(h for text, h in heights if text.startswith("peak") and "\n" not in text)
    assert all(h <= line + 1 for text, h in heights if text.endswith(".png")), heights
    cut = main(page).get_by_test_id("stCaptionContainer").evaluate_all(  # and fits whole, without an ellipsis
        "els => els.filter(e => e.innerText.trim().endsWith('.png')).flatMap(e => [e, ...e.querySelectorAll('*')])"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)")
    assert not cut, cut
    if os.environ.get("FEATVIZ_README_SHOTS"):  # the page scrolls inside the app: make the window tall
        page.set_viewport_size({"width": VIEWPORT["width"], "height": 1780})
        settle(page)
        page.screenshot(path=str(ROOT / "docs" / "screenshots" / "exemplars.png"))
        page.set_viewport_size(VIEWPORT)
    # open the strongest image in the sidebar
    main(page).locator("[data-testid=stButton]" + FRESH).locator("button").filter(has_text="Open").first.click()
    settle(page)
    expect(image_caption(page)).to_contain_text(first_name.replace("…", "")[:8], timeout=TIMEOUT_MS)
    expect(main(page).get_by_text("is now the image in the sidebar")).to_be_visible(timeout=TIMEOUT_MS)
    no_traceback(page)


def test_stop_shows_what_was_found_so_far(page: Any, app: AppServer) -> None:
    # resnet18 at 224 px: about a minute for 900 pictures here, so the Stop lands long before the end even on a
    # much faster machine (the demo model reads them in 2 s, faster than a person, or this test, can press Stop).
    page.goto(app.url + "exemplars?model=tv:resnet18:random")
    expect(main(page).locator("h1").first).to_have_text("Exemplars", timeout=TIMEOUT_MS)
    expect(sidebar(page).get_by_text(re.compile(r"resnet18"))).not_to_have_count(0, timeout=TIMEOUT_MS)
    settle(page)
    upload_zip(page, shapes_zip(900, seed=1), "many.zip")
    main(page).get_by_role("button", name=re.compile(r"Find the exemplars")).click()
    page.wait_for_function(f"() => {BAR_VALUE} > 3", timeout=120_000)
    if os.environ.get("FEATVIZ_README_SHOTS"):
        page.screenshot(path=str(ROOT / "docs" / "screenshots" / "exemplars_running.png"))
    main(page).locator("[data-testid=stButton]" + FRESH).locator("button").filter(has_text="Stop").first.click()
    expect(main(page).get_by_text(re.compile(r"Stopped after [\d,]+ of 901 files"))).to_be_visible(timeout=TIMEOUT_MS)
    expect(main(page).get_by_role("button", name="Run again")).to_be_visible(timeout=TIMEOUT_MS)
    wait_until_finished(page)
    assert sidebar(page).count() == 1
    no_traceback(page)
