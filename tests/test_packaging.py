"""The installable package: metadata, the ``featviz`` command line, and the wheel installed and served.

``test_the_wheel_installs_and_serves_from_another_folder`` builds the wheel from the project's files (offline:
``pip wheel --no-deps --no-build-isolation``), installs it with ``--no-deps`` into a fresh virtual environment
that sees the already installed requirements through a ``.pth`` file, runs ``featviz --help`` and
``featviz --version``, starts ``featviz run`` from an unrelated folder and waits for the heatmap in Chromium.
Marked ``packaging`` (and ``browser``): ``pytest -m 'not packaging'`` leaves it out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest

import featviz
from featviz import cli, server
from tests.appserver import ROOT, chromium_path, launch_browser, start_app

MOSAIC = "[data-testid=stMain] .st-key-grid_chart .js-plotly-plot"


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirement_lines(name: str) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / name).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("-r")]


# ---------------------------------------------------------------------------------------------------
# Metadata and the command line (in this process)


def test_extras_list_the_same_requirements_as_the_requirement_files() -> None:
    project = _pyproject()["project"]
    assert project["optional-dependencies"]["dev"] == _requirement_lines("requirements-dev.txt")
    if (ROOT / "requirements-ray.txt").exists():
        assert project["optional-dependencies"]["ray"] == _requirement_lines("requirements-ray.txt")
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    assert project["scripts"] == {"featviz": "featviz.cli:main"}


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"featviz {featviz.__version__}"
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "run" in out and "exemplars" in out
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for option in ("--port", "--model", "--weights", "--classes", "--input-size", "--normalization", "--images"):
        assert option in out


def test_run_hands_the_model_options_to_the_app_and_the_port_to_streamlit(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda args, warm=True: seen.update(args=args, warm=warm) or 0)
    for name in cli._MODEL_ENV.values():
        monkeypatch.setenv(name, "")  # restored (removed) after the test, whatever the command sets
    code = cli.main(["run", "--port", "8642", "--model", "nets.faces:build", "--weights", "w.safetensors",
                     "--classes", "names.txt", "--input-size", "256x320", "--normalization", "0-1",
                     "--images", "/data/xrays", "--server.address", "0.0.0.0", "--no-warm"])
    assert code == 0
    assert seen == {"args": ["--server.address", "0.0.0.0", "--server.port", "8642"], "warm": False}
    assert {name: os.environ.get(name) for name in cli._MODEL_ENV.values()} == {
        "FEATVIZ_MODEL": "nets.faces:build", "FEATVIZ_WEIGHTS": "w.safetensors", "FEATVIZ_CLASSES": "names.txt",
        "FEATVIZ_INPUT_SIZE": "256x320", "FEATVIZ_NORMALIZATION": "0-1", "FEATVIZ_IMAGES": "/data/xrays",
    }
    from ui.cli import options

    assert options([]).input_size == (256, 320)  # what the app reads back


def test_a_wrong_streamlit_flag_stops_before_anything_loads(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import ui.warm

    monkeypatch.setattr(ui.warm, "warm_up", lambda: pytest.fail("warmed up despite a wrong flag"))
    assert server.serve(["--server.nonsense", "1"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_exemplars_is_dispatched_lazily(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "_EXEMPLARS", ("featviz_core.no_such_module",))
    assert cli.main(["exemplars", "--help"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(".") and len(err.splitlines()) == 1
    calls: list[list[str]] = []
    fake = types.ModuleType("featviz_core._fake_exemplars")
    fake.main = lambda argv: calls.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(cli, "_EXEMPLARS", (fake.__name__,))
    assert cli.main(["exemplars", "--layer", "x", "photos/"]) == 0
    assert calls == [["--layer", "x", "photos/"]]


def test_the_app_folder_and_its_settings_in_a_source_checkout() -> None:
    assert server.app_dir() == ROOT
    settings = server.shipped_settings()
    assert settings["server.maxUploadSize"] == 200 and settings["client.showErrorDetails"] == "none"
    assert len(settings) >= 10


# ---------------------------------------------------------------------------------------------------
# The wheel


def _project_files() -> list[str]:
    """The files a fresh clone has (tracked, plus new files git does not ignore)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode()
    return sorted({p for p in listed.split("\0") if p and (ROOT / p).is_file()})


def _expected_in_wheel(files: list[str]) -> set[str]:
    """Where each of the app's and the library's files must be inside the wheel."""
    expected = set()
    for path in files:
        if path.startswith(("featviz/", "featviz_core/")):
            expected.add(path)
        elif path.startswith(("ui/", "pages/")) or path in ("app.py", ".streamlit/config.toml"):
            expected.add("featviz/_app/" + path)
    return expected


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    for path in _project_files():
        target = source / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "-w", str(tmp / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("featviz-*.whl")
    return wheel


def _fresh_venv(where: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The requirements are already installed here: the fresh environment sees them, after its own packages.
    Path(purelib, "_featviz_requirements.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, timeout=300)
    return where / "bin" / "featviz"


@pytest.mark.packaging
@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Chromium not found: install chromium or set FEATVIZ_CHROMIUM")
@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to list the project's files")
def test_the_wheel_installs_and_serves_from_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if not n.startswith("featviz-")}  # without the .dist-info
    expected = _expected_in_wheel(_project_files())
    assert expected - names == set(), "missing from the wheel: add them to pyproject.toml [tool.setuptools]"
    assert names - expected == set(), "in the wheel but not in the project"
    assert {n.split("/")[0] for n in names} == {"featviz", "featviz_core"}  # no top-level ui/ or pages/

    command = _fresh_venv(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".streamlit").mkdir(parents=True)
    # A folder with Streamlit settings of its own: the app's shipped ones must still hold.
    (elsewhere / ".streamlit" / "config.toml").write_text('[server]\nmaxUploadSize = 1\n[theme]\nbase = "dark"\n')
    monkeypatch.delenv("PYTHONPATH", raising=False)
    for flag in ("--help", "--version"):
        done = subprocess.run([str(command), flag], cwd=elsewhere, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert ("featviz run" in done.stdout or "run" in done.stdout) if flag == "--help" else (
            done.stdout.strip() == f"featviz {featviz.__version__}")
    where = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-c",
                            "import featviz, featviz_core; print(featviz.__file__); print(featviz_core.__file__)"],
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where), where

    with start_app(command=(str(command), "run"), cwd=elsewhere, timeout=300) as app:
        line = app.wait_for_log(r"featviz app (\S+), settings (\{.*\})", timeout=60)
        assert Path(line[1]).is_relative_to(tmp_path / "venv") and Path(line[1]).name == "_app"
        shipped = server.shipped_settings(ROOT)
        assert json.loads(line[2]) == shipped
        with sync_api.sync_playwright() as pw:
            browser = launch_browser(pw)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(app.url)
                page.wait_for_selector(MOSAIC + " g.hm image", state="attached")
                caption = page.locator("[data-testid=stMain] [data-testid=stCaptionContainer]").first
                sync_api.expect(caption).to_contain_text("TinyVGG (demo) · layer")
                assert page.locator(MOSAIC).evaluate("(el) => el._fullData.some(t => t.type === 'heatmap')")
                assert page.get_by_test_id("stException").count() == 0
            finally:
                browser.close()
        assert re.search(r"featviz warm-up done in", app.log_text())
