"""Screenshots of "Where it looks" (methods, sanity check, Score-CAM's progress) and of the report, for the
README: `python scripts/screenshots_cams.py` (needs Chromium). Writes docs/screenshots/cam_*.png and
docs/screenshots/report.png, using the bundled demo model offline."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from featviz_core.cam import CAM_METHODS  # noqa: E402
from tests.appserver import launch_browser, start_app  # noqa: E402


def METHOD_LABEL(name: str) -> str:  # noqa: N802 - reads like the label it gives
    return CAM_METHODS[name].replace(": ", " — ", 1)

OUT = ROOT / "docs" / "screenshots"


def idle(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_timeout(300)
    page.wait_for_selector(
        "[data-testid=stApp][data-test-connection-state=CONNECTED][data-test-script-state=notRunning]",
        state="attached", timeout=120_000,
    )
    page.wait_for_function("() => !document.querySelector('[data-stale=true]')", timeout=120_000)
    time.sleep(1.5)


def choose(page, label: str, option: str) -> None:  # type: ignore[no-untyped-def]
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.press_sequentially(option.split(" — ")[0])  # long lists are virtual: filter so the option is drawn
    page.get_by_role("option", name=option, exact=True).click()
    idle(page)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with start_app() as app, sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.goto(app.url + "where_it_looks?sample=star")
        page.wait_for_selector("[data-testid=stMain] [data-testid=stPlotlyChart] .js-plotly-plot", timeout=120_000)
        idle(page)
        page.get_by_role("combobox", name="Which method?", exact=True).click()
        time.sleep(1.0)
        page.screenshot(path=str(OUT / "cam_methods.png"))
        page.keyboard.press("Escape")
        idle(page)
        page.get_by_test_id("stMain").get_by_text("Rank correlation", exact=True).scroll_into_view_if_needed()
        page.mouse.wheel(0, 320)
        time.sleep(1.0)
        page.screenshot(path=str(OUT / "cam_sanity.png"))
        button = page.get_by_test_id("stMain").get_by_test_id("stDownloadButton").filter(has_text="Download report")
        with page.expect_download(timeout=120_000) as info:
            button.get_by_role("button").first.click()
        report = Path(tempfile.mkdtemp()) / "report.html"
        report.write_bytes(Path(info.value.path()).read_bytes())
        view = browser.new_page(viewport={"width": 1100, "height": 1400})
        view.goto(report.as_uri())
        view.wait_for_function("() => Array.from(document.querySelectorAll('.chart')).every(d => d.querySelector('.main-svg'))")
        time.sleep(1.0)
        view.screenshot(path=str(OUT / "report.png"), full_page=True)
        # Score-CAM on a wider layer (resnet18's layer4, 512 channels, random weights: no download needed)
        page.evaluate("window.scrollTo(0, 0)")
        page.get_by_test_id("stSidebar").get_by_text("ImageNet model", exact=True).click()
        idle(page)
        page.get_by_test_id("stSidebar").get_by_text("Pretrained ImageNet weights", exact=True).click()
        idle(page)
        choose(page, "Which method?", METHOD_LABEL("scorecam"))
        page.wait_for_selector("[data-testid=stMain] [data-testid=stProgress]", timeout=60_000)
        page.wait_for_function("() => /of 512 forward passes, about/.test(document.body.innerText)", timeout=60_000)
        page.screenshot(path=str(OUT / "cam_scorecam_progress.png"))
        browser.close()
    for name in ("cam_methods", "cam_sanity", "cam_scorecam_progress", "report"):
        print("wrote", OUT / f"{name}.png")


if __name__ == "__main__":
    main()
