"""cloud/: the Community Cloud entry point with PyTorch's CPU-only wheels.

Community Cloud installs the first dependency file it finds next to the main file, then at the root of the
repository; so ``cloud/app.py`` (a link to ``app.py``) with ``cloud/requirements.txt`` gets the CPU wheels
while ``requirements.txt`` stays the one for local installs. The links make ``cloud/`` the same app: Streamlit
resolves ``pages/...`` and ``import ui`` against the main file's folder.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.appserver import ROOT, chromium_path, launch_browser, start_app
from ui.router import PAGES

CLOUD = ROOT / "cloud"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _lines(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


def _requirements(path: Path) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in _lines(path) if not line.startswith("-")]
    return {r.name.lower(): r for r in reqs}


def test_cloud_requirements_pin_the_cpu_wheels_within_the_project_requirements() -> None:
    lines = _lines(CLOUD / "requirements.txt")
    assert f"--extra-index-url {CPU_INDEX}" in lines
    assert "-r ../requirements.txt" in lines and (CLOUD / "../requirements.txt").resolve() == ROOT / "requirements.txt"
    pins = _requirements(CLOUD / "requirements.txt")
    project = _requirements(ROOT / "requirements.txt")
    versions = {}
    for name in ("torch", "torchvision"):
        (spec,) = pins[name].specifier
        assert spec.operator == "==" and spec.version.endswith("+cpu"), spec
        version = Version(spec.version)
        assert project[name].specifier.contains(Version(version.base_version)), (name, version)
        versions[name] = version
    # torchvision 0.(N+15) is the release built for torch 2.N
    assert versions["torchvision"].minor == versions["torch"].minor + 15
    assert set(pins) == {"torch", "torchvision"}, "everything else comes from ../requirements.txt"


def test_cloud_is_the_same_app() -> None:
    for name in ("app.py", "ui", "pages", "featviz_core", "featviz"):
        link = CLOUD / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), name
    imported = {m.split(".")[0] for m in re.findall(r"^\s*(?:from|import)\s+([\w.]+)",
                                                   "\n".join(p.read_text() for p in [*(ROOT / "ui").glob("*.py"), ROOT / "app.py"]),
                                                   re.MULTILINE)}
    local = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert imported & local <= {"ui", "featviz_core", "featviz"}, "the app imports a package that cloud/ does not link"


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Chromium not found: install chromium or set FEATVIZ_CHROMIUM")
def test_streamlit_run_cloud_app_serves_the_app() -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    command = (sys.executable, "-m", "streamlit", "run", "cloud/app.py")  # as Community Cloud runs it: from the root
    with start_app(command=command) as app, sync_api.sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(app.url)
            page.wait_for_selector("[data-testid=stMain] .st-key-grid_chart g.hm image", state="attached")
            sync_api.expect(page.get_by_test_id("stSidebarNavLink")).to_have_count(len(PAGES))
            page.get_by_test_id("stSidebarNavLink").filter(has_text="Model").click()  # pages/ resolve from cloud/
            sync_api.expect(page.locator("[data-testid=stMain] h1").first).to_have_text("Model")
            assert page.get_by_test_id("stException").count() == 0
        finally:
            browser.close()
