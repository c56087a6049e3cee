"""What the first visitor of a fresh ``streamlit run app.py`` sees (Community Cloud's way), in Chromium.

Nothing is loaded before the first visit there, so app.py must draw the page frame and "Loading the
model…" before it imports torch and the app; and switching to a model not loaded yet shows a spinner naming
it. Both are short-lived, so they are recorded by a MutationObserver from the page's first script on
(``tests.appserver.PAGE_MARKS_SCRIPT``), never by polling or sleeping. The speed of all this is measured
by ``python -m bench.run --only first_view``, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.appserver import (
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
def page(fresh_app: AppServer) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(120_000)
            context.add_init_script(marks_script(FROM_THE_START))
            yield context.new_page()
        finally:
            browser.close()


def test_the_first_visit_shows_the_frame_and_a_loading_line_before_the_maps(page: Any, fresh_app: AppServer) -> None:
    page.goto(fresh_app.url + "?model=tv:resnet18:random")
    page.wait_for_function("() => 'heatmap' in window.__fv.marks")
    marks = page_marks(page)
    assert "loading" in marks, "no 'Loading the model…' line while the app was importing"
    assert marks["loading"] < marks["heatmap"]
    assert "frame_and_loading" in marks, "the loading line was shown without the page frame around it"
    expect(page.get_by_text("Loading the model…")).to_have_count(0)  # gone once the app is there
    assert page.get_by_test_id("stException").count() == 0


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
