"""Take the README's screenshots of every page: `python scripts/screenshots.py` (needs Chromium); name views to
take only those: `python scripts/screenshots.py volume_model video_model`.

Runs the app offline (the bundled demo model), opens each page in Debian's Chromium through Playwright and
writes docs/screenshots/<page>.png.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.appserver import launch_browser, start_app  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
VIEWS = {
    "feature_maps": ("/?sample=star&layer=block1.relu1&channel=3", 1900),
    "where_it_looks": ("/where_it_looks?sample=retina", 1150),
    "compare": ("/compare?sample=circle", 1700),
    "filters": ("/filters?sample=star&layer=block1.relu1", 1150),
    "model": ("/model", 1000),
    "volume_model": ("/volume", 2250),  # the phantom through the bundled 3-D demo model
    "video_model": ("/?model=tv:r3d_18:random", 1250),  # a video classifier chosen, on a page for pictures
}


def wait_until_idle(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("[data-testid=stApp]")
    deadline = time.time() + 60
    while time.time() < deadline:
        running = page.locator("[data-testid=stStatusWidget]").count()
        plots = page.locator(".js-plotly-plot").count()
        if not running and plots:
            break
        time.sleep(0.5)
    time.sleep(2.0)


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(names) - set(VIEWS))
    if unknown:
        raise SystemExit(f"unknown view(s) {', '.join(unknown)}; choose from {', '.join(VIEWS)}")
    with start_app() as app, sync_playwright() as pw:
        browser = launch_browser(pw)
        for name, (path, height) in VIEWS.items():
            if names and name not in names:
                continue
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.goto(app.url.rstrip("/") + path)
            wait_until_idle(page)
            page.screenshot(path=str(OUT / f"{name}.png"))
            page.close()
            print("wrote", OUT / f"{name}.png")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
