"""Run the real featviz app for browser tests and benchmarks, and open Debian's Chromium on it.

    from playwright.sync_api import sync_playwright
    from tests.appserver import launch_browser, start_app

    with start_app() as app, sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page()
        page.goto(app.url)
        ...
        print(app.forward_passes())     # the server's "featviz forward pass #N: ..." log lines

``start_app`` runs ``python -m streamlit run app.py`` in its own process group on a free loopback port,
offline (``FEATVIZ_OFFLINE=1``) and with ``TORCH_HOME`` in a fresh temporary folder (so no ImageNet weights
are found and the first view is the bundled demo model), waits for ``/_stcore/health``, writes the server's
stdout and stderr to a log file, and kills the whole process group at the end. ``command`` starts something
else that takes Streamlit's flags instead, e.g. ``start_app(command=FEATVIZ_RUN)`` for ``python -m featviz
run`` or ``start_app(command=["/venv/bin/featviz", "run"], cwd=tmp)`` for an installed one.

Chromium: Debian's ``/usr/bin/chromium`` or the one named by ``FEATVIZ_CHROMIUM``; never ``playwright
install`` (which downloads).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The project folder (where ``app.py`` is)."""

STREAMLIT_RUN = (sys.executable, "-m", "streamlit", "run", "app.py")
"""The default command: Streamlit's own, in the project folder (Community Cloud's way)."""
FEATVIZ_RUN = (sys.executable, "-m", "featviz", "run")
"""The project's command line (``make run``): imports and warms up the first view before it listens."""

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

FORWARD_PASS = re.compile(r"featviz forward pass #(\d+): (\S+) (\S+) image=([0-9a-f]+) layers=(\S*)")
"""A line the app logs for every model forward pass (see ui/cache.py)."""


@dataclass(frozen=True)
class ForwardPass:
    """One parsed ``featviz forward pass`` log line."""

    number: int
    kind: str  # "extract" or "gradcam"
    model_key: str
    image: str  # the first 12 hex digits of the image bytes' SHA-256
    layers: tuple[str, ...]


@dataclass
class AppServer:
    """A running ``streamlit run app.py`` (use it through :func:`start_app`)."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    torch_home: Path
    env: dict[str, str] = field(repr=False)
    started_at: float = 0.0
    """``time.perf_counter()`` just before the server process was started."""
    ready_at: float = 0.0
    """``time.perf_counter()`` when ``/_stcore/health`` first answered (polled every ``poll`` seconds)."""

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, contains: str = "") -> list[str]:
        return [line for line in self.log_text().splitlines() if contains in line]

    def forward_passes(self) -> list[ForwardPass]:
        """The forward passes the server has logged so far, in order."""
        found = []
        for match in FORWARD_PASS.finditer(self.log_text()):
            layers = tuple(match[5].split(",")) if match[5] else ()
            found.append(ForwardPass(int(match[1]), match[2], match[3], match[4], layers))
        return found

    def forward_count(self) -> int:
        return len(self.forward_passes())

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until a log line matches the regular expression ``pattern``; return the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match:
                return match
            if time.monotonic() > deadline:
                raise TimeoutError(f"no server log line matched {pattern!r} within {timeout:.0f} s")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and everything it started (its whole process group)."""
        if self.process.poll() is None:
            _kill_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.process, signal.SIGKILL)
                self.process.wait(timeout)
        else:  # the server is gone, but a child might not be
            _kill_group(self.process, signal.SIGKILL)


def _kill_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # start_new_session: the group id is the server's pid
    except ProcessLookupError:
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "_stcore/health", timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def start_app(
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    *,
    log_path: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
    extra_args: tuple[str, ...] = (),
    command: Sequence[str] = STREAMLIT_RUN,
    cwd: str | os.PathLike[str] | None = None,
    poll: float = 0.2,
) -> Iterator[AppServer]:
    """Run the app until the ``with`` block ends.

    ``env`` is added to (and overrides) this process's environment; ``FEATVIZ_OFFLINE=1`` and a fresh
    temporary ``TORCH_HOME`` are set unless ``env`` gives them. ``log_path`` (default: a file in a
    temporary folder, kept only while the server runs; emptied first) receives the server's stdout and
    stderr.
    With ``port=None`` a free port is chosen (and another one tried if that one is taken meanwhile).
    ``command`` (default ``python -m streamlit run app.py``) is followed by Streamlit's server flags and
    ``extra_args``; it runs in ``cwd`` (default: the project folder). The health check is polled every
    ``poll`` seconds (benchmarks poll faster).
    """
    workdir = Path(tempfile.mkdtemp(prefix="featviz-app-"))
    try:
        merged = dict(os.environ)
        merged.update({"FEATVIZ_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
        merged.pop("FEATVIZ_AUTO_DOWNLOAD", None)
        merged.pop("TORCH_HOME", None)
        if env:
            merged.update(env)
        if "TORCH_HOME" not in merged:
            merged["TORCH_HOME"] = str(workdir / "torch")
        torch_home = Path(merged["TORCH_HOME"])
        torch_home.mkdir(parents=True, exist_ok=True)
        log_file = Path(log_path) if log_path is not None else workdir / "server.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_bytes(b"")  # forward_passes() counts this server's lines only
        server: AppServer | None = None
        attempts = 1 if port is not None else 3
        for attempt in range(attempts):
            chosen = port if port is not None else free_port()
            server = _launch(chosen, merged, log_file, torch_home, (*command, *_flags(chosen), *extra_args),
                             Path(cwd) if cwd is not None else ROOT)
            if _wait_healthy(server, timeout, poll):
                break
            server.stop()
            if attempt == attempts - 1:
                raise RuntimeError(
                    f"the app did not start on port {chosen} within {timeout:.0f} s; its log:\n"
                    + server.log_text()[-4000:]
                )
        assert server is not None
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _flags(port: int) -> tuple[str, ...]:
    return (
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    )


def _launch(
    port: int, env: dict[str, str], log_file: Path, torch_home: Path, command: tuple[str, ...], cwd: Path
) -> AppServer:
    with open(log_file, "ab") as out:  # the child keeps its own descriptor
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    return AppServer(url=url, port=port, process=process, log_path=log_file, torch_home=torch_home, env=env,
                     started_at=started)


def _wait_healthy(server: AppServer, timeout: float, poll: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            return False  # e.g. the port was taken
        if _healthy(server.url):
            server.ready_at = time.perf_counter()
            return True
        time.sleep(poll)
    return False


PAGE_MARKS_SCRIPT = """
window.__fv = {marks: {}, watch: []};
window.__fvCheck = () => {
  const fv = window.__fv;
  for (const w of fv.watch) { if (!(w.name in fv.marks)) { try { if (w.fn()) fv.marks[w.name] = performance.now(); } catch (e) {} } }
};
new MutationObserver(() => window.__fvCheck()).observe(document, {subtree: true, childList: true, characterData: true,
  attributes: true, attributeFilter: ['href', 'data-stale', 'data-test-script-state']});
document.addEventListener('click', () => { if (!('click' in window.__fv.marks)) window.__fv.marks.click = performance.now(); }, true);
"""
"""An init script (``context.add_init_script(PAGE_MARKS_SCRIPT)``) that records, on the page's own clock
(``performance.now()``, 0 = navigation start), the first moment each watched condition held, from every
change of the page: no polling, so short-lived things (a spinner) are seen too. See :func:`watch`."""


STILL_PAINTED_JS = """() => { const img = document.querySelector('.st-key-grid_still img');
  if (!img) return false;
  if (img.__fvPainted) return true;
  if (!img.__fvWaits) {
    img.__fvWaits = true;
    const painted = () => requestAnimationFrame(() => requestAnimationFrame(() => {
      if (img.isConnected && img.getBoundingClientRect().height > 50) { img.__fvPainted = true; window.__fvCheck(); }
    }));
    if (img.complete) painted(); else img.addEventListener('load', painted, {once: true});
  }
  return false; }"""
"""A watcher (for :func:`marks_script`) that holds once the still picture of the first mosaic (ui/still.py) has
been on screen: decoded, laid out at its height, and a frame painted after that (two animation frames); never
when the interactive chart hid it first."""


def marks_script(conditions: Mapping[str, str]) -> str:
    """:data:`PAGE_MARKS_SCRIPT` with watchers from the start: name -> JavaScript function source (no
    argument), e.g. ``{"heatmap": "() => document.querySelector('g.hm image')"}``."""
    lines = [f"window.__fv.watch.push({{name: {json.dumps(name)}, fn: {source}}});"
             for name, source in conditions.items()]
    return PAGE_MARKS_SCRIPT + "\n".join(lines) + "\n"


def watch(page: Any, name: str, condition: str, arg: Any = None) -> None:
    """Record in :func:`page_marks` when the JavaScript ``condition`` (a function of ``arg``) first holds."""
    page.evaluate(
        """([name, source, arg]) => { const fn = eval(source); const fv = window.__fv;
        delete fv.marks[name]; fv.watch = fv.watch.filter(w => w.name !== name);
        fv.watch.push({name, fn: () => fn(arg)}); window.__fvCheck(); }""",
        [name, condition, arg],
    )


def page_marks(page: Any) -> dict[str, float]:
    """Milliseconds (page clock) at which each watched condition first held (and ``click``: the first click
    since :func:`clear_marks`)."""
    return dict(page.evaluate("() => window.__fv.marks"))


def clear_marks(page: Any) -> None:
    page.evaluate("() => { window.__fv.marks = {}; }")


def chromium_path() -> str | None:
    """The Chromium to use: ``$FEATVIZ_CHROMIUM``, else Debian's ``/usr/bin/chromium``; None when missing."""
    path = os.environ.get("FEATVIZ_CHROMIUM") or DEFAULT_CHROMIUM
    found = shutil.which(path)
    return found if found and os.access(found, os.X_OK) else None


NO_CHROMIUM = "Chromium not found: install Debian's chromium or set FEATVIZ_CHROMIUM=/path/to/chromium"


def browser_marks() -> list[Any]:
    """A browser test module's ``pytestmark``: marked ``browser``, skipped with the reason without Chromium."""
    import pytest

    return [pytest.mark.browser, pytest.mark.skipif(chromium_path() is None, reason=NO_CHROMIUM)]


@contextmanager
def chromium(camera: bool = False) -> Iterator[Any]:
    """A Playwright session with headless Chromium (see :func:`launch_browser`), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_browser(pw, camera=camera)
        try:
            yield browser
        finally:
            browser.close()


def launch_browser(playwright: Any, camera: bool = False, **options: Any) -> Any:
    """Launch headless Chromium with Playwright (``camera=True``: a fake camera that needs no permission)."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError("Chromium not found: install chromium or set FEATVIZ_CHROMIUM=/path/to/chromium")
    args = CHROMIUM_ARGS + (CAMERA_ARGS if camera else [])
    return playwright.chromium.launch(executable_path=executable, args=args, **options)
