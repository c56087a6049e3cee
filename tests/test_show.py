"""``featviz.show(model)`` (featviz/notebook.py): the dashboard on a model in memory, served from a thread of the
calling process. From a script whose model class lives in its ``__main__``, from a real Jupyter kernel (nbclient),
in Chromium; the sidebar's "Your code" reading the in-process registry; ``stop()`` freeing the port.

Servers start only in child processes (a script, a kernel): Streamlit's runtime and configuration are
process-wide, and this test process also runs AppTests.
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import re
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featviz import registry
from featviz.notebook import Handle
from featviz_core import ModelLoadError, default_layer, extract, load_image
from featviz_core.images import default_sample, sample_bytes
from featviz_core.models.sources import load_module
from tests.appserver import NO_CHROMIUM, ROOT, chromium, chromium_path, free_port
from tests.conftest import decode_array, no_exception, plotly_figures
from tests.custom_models import NOTHING_FITS, LeNet5

# The model a user would write in a notebook cell or a script: its class exists only in that process's __main__.
TINY_NET = textwrap.dedent('''
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(7)
            self.stem = nn.Sequential(nn.Conv2d(3, 7, 5, stride=4), nn.ReLU())
            self.head = nn.Linear(7, 3)

        def forward(self, x):
            return self.head(self.stem(x).mean((2, 3)))
''')
CLASSES = ["cat", "dog", "fox"]
DEADLINE = 120.0  # seconds for one step of a child process (importing torch and Streamlit on two busy cores)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(ROOT), "FEATVIZ_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch"),
                "PYTHONUNBUFFERED": "1"})
    env.pop("FEATVIZ_MODEL", None)
    return env


def _health(url: str) -> int:
    with urllib.request.urlopen(url + "_stcore/health", timeout=10) as response:  # noqa: S310 - loopback
        return int(response.status)


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# ---------------------------------------------------------------------------------------------------
# Without a server


def test_importing_featviz_stays_cheap_and_show_comes_on_first_use() -> None:
    code = ("import sys, featviz; heavy = [m for m in ('torch', 'streamlit', 'featviz.notebook') if m in sys.modules];"
            "print(heavy); print(callable(featviz.show), 'featviz.notebook' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=120).stdout.split("\n")
    assert out[:2] == ["[]", "True True"]


class _Stub:
    url, port, host = "http://localhost:8765/", 8765, "127.0.0.1"

    def __init__(self) -> None:
        self.up = True

    def alive(self) -> bool:
        return self.up

    def stop(self, timeout: float = 30.0) -> None:
        self.up = False


def test_the_handle_shows_a_link_and_a_frame_in_jupyter() -> None:
    model = load_module(LeNet5())
    server = _Stub()
    handle = Handle(server, model)  # type: ignore[arg-type]
    html = handle._repr_html_()
    assert '<a href="http://localhost:8765/"' in html and "LeNet5" in html and "<iframe" not in html
    frame = handle.iframe(height=420)._repr_html_()
    assert 'src="http://localhost:8765/"' in frame and 'height="420"' in frame
    inline = Handle(server, model, inline=True, height=600)._repr_html_()  # type: ignore[arg-type]
    assert '<iframe src="http://localhost:8765/"' in inline and 'height="600"' in inline
    handle.stop()
    assert not handle.running and "has stopped" in handle._repr_html_() and "stopped" in repr(handle)


def test_show_explains_what_it_cannot_show_before_starting_anything() -> None:
    import featviz

    with pytest.raises(TypeError, match="takes a torch nn.Module or a featviz_core.LoadedModel, not str"):
        featviz.show("resnet18")
    with pytest.raises(ModelLoadError, match=r"could not run on a 3×224×224 input.*preprocessing=Preprocessing"):
        featviz.show(NOTHING_FITS)
    assert registry.current() is None


def test_the_sidebar_shows_the_model_handed_over_in_this_process(make_app) -> None:
    lenet = load_module(LeNet5(), classes=[str(d) for d in range(10)], name="LeNet5", key="python:test:LeNet5")
    registry.publish(lenet)
    try:
        at = make_app()
        no_exception(at)
        assert at.session_state["model_kind"] == "Your code"
        assert any("handed over by featviz.show()" in i.value for i in at.info)
        assert any("From Python: `LeNet5`" in c.value for c in at.sidebar.caption)
        assert any("featviz chose 32×32, the size this model accepts" in c.value for c in at.sidebar.caption)
        sel = at.session_state["_selection"]
        assert sel.model is lenet
        maps = extract(lenet, sel.image, [sel.layer.name]).activations[sel.layer.name]
        heat = next(t for t in plotly_figures(at)[0]["data"] if t["type"] == "heatmap")
        z, channel = decode_array(heat["z"]).astype(np.float32), decode_array(heat["customdata"])
        rows, cols = np.nonzero(channel == 0)
        np.testing.assert_array_equal(z[rows.min():rows.max() + 1, cols.min():cols.max() + 1], maps[0])
    finally:
        registry.clear()


# ---------------------------------------------------------------------------------------------------
# From a script: its own class in __main__, a second show() in the same process, stop()

SCRIPT = TINY_NET + textwrap.dedent('''
    import json, sys
    import featviz

    def say(**fields):
        print(json.dumps(fields), flush=True)
        sys.stdin.readline()  # the test says when to go on

    port = int(sys.argv[1])
    import socket
    with socket.create_server(("127.0.0.1", 0)) as blocker:  # a port something else listens on
        try:
            featviz.show(TinyNet(), port=blocker.getsockname()[1])
            taken = ""
        except OSError as exc:
            taken = str(exc)
    handle = featviz.show(TinyNet(), classes=["cat", "dog", "fox"], port=port)
    say(url=handle.url, name=handle.model.name, provenance=handle.model.provenance, classes=handle.model.categories,
        taken=taken)
    again = featviz.show(TinyNet(), port=port)
    say(url=again.url, same_server=again.running and handle.running, key_changed=again.model.key != handle.model.key)
    handle.stop()
    say(stopped=not again.running)
    fresh = featviz.show(TinyNet(), port=port)
    say(url=fresh.url, running=fresh.running)
    fresh.stop()
''')


class _Child:
    """A child process that prints one JSON line per step and waits for a line on stdin before the next."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith("{"):
                self.lines.put(line)

    def step(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.lines.get(timeout=DEADLINE)))
        except queue.Empty:
            raise AssertionError("the script said nothing in time:\n" + "".join(self.output)[-3000:]) from None

    def go_on(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()


@pytest.fixture
def script(tmp_path: Path) -> Iterator[tuple[_Child, int]]:
    path = tmp_path / "my_script.py"
    path.write_text(SCRIPT)
    port = free_port()
    process = subprocess.Popen([sys.executable, str(path), str(port)], cwd=tmp_path, env=_env(tmp_path), text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield _Child(process), port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def test_show_from_a_script_serves_its_own_class_replaces_it_and_stops(script: tuple[_Child, int]) -> None:
    child, port = script
    first = child.step()
    assert first["url"] == f"http://localhost:{port}/" and first["name"] == "TinyNet"
    assert first["classes"] == CLASSES and first["provenance"].startswith("your model TinyNet from Python")
    assert re.fullmatch(r"Port \d+ on 127\.0\.0\.1 is taken; choose another port.*", first["taken"])
    assert _health(first["url"]) == 200
    with urllib.request.urlopen(first["url"], timeout=10) as page:  # noqa: S310 - loopback
        assert b"<div id=\"root\">" in page.read()
    child.go_on()
    second = child.step()
    assert second == {"url": first["url"], "same_server": True, "key_changed": True}
    child.go_on()
    assert child.step() == {"stopped": True}, "every handle shares the one server"
    assert _refuses(port), "stop() frees the port"
    child.go_on()
    third = child.step()
    assert third == {"url": first["url"], "running": True}, "after stop(), show() starts a fresh server"
    assert _health(third["url"]) == 200
    child.go_on()
    assert child.process.wait(DEADLINE) == 0, "".join(child.output)[-3000:]
    assert _refuses(port)
    assert "Traceback" not in "".join(child.output)


# ---------------------------------------------------------------------------------------------------
# From a real Jupyter kernel, seen in Chromium


def _run_cell(client: Any, notebook: Any, index: int) -> list[dict[str, Any]]:
    cell = notebook.cells[index]
    client.execute_cell(cell, index)
    return list(cell.outputs)


def _text(outputs: list[dict[str, Any]]) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        else:
            data = out.get("data", {})
            parts.append(data.get("text/html", "") + data.get("text/plain", ""))
    return "\n".join(parts)


@contextmanager
def _serving(body: str) -> Iterator[str]:
    """``body`` as an HTML page at http://localhost:PORT/ (a stand-in for the notebook's own page)."""
    data = body.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason=NO_CHROMIUM)
def test_show_from_a_jupyter_kernel_draws_the_models_maps_in_chromium(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from tests.test_browser import MOSAIC, header_caption, mosaic, new_context, no_traceback, settle, tiles_of

    port = free_port()
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(TINY_NET + textwrap.dedent(f'''
            import featviz
            handle = featviz.show(TinyNet(), classes={CLASSES!r}, port={port})
            handle''')),
        nbformat.v4.new_code_cell("handle.iframe(height=700)"),
        nbformat.v4.new_code_cell("import pickle\nprint('pickled', len(pickle.dumps(TinyNet())) > 0)"),
        nbformat.v4.new_code_cell("handle.stop()\nprint('running', handle.running)"),
    ])
    client = nbclient.NotebookClient(notebook, timeout=int(DEADLINE), kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel(env=_env(tmp_path)):
        shown = _text(_run_cell(client, notebook, 0))
        found = re.search(r'<a href="(http://localhost:\d+/)"', shown)
        assert found, shown
        url = found[1]
        assert url == f"http://localhost:{port}/" and "TinyNet" in shown and _health(url) == 200
        frame = _text(_run_cell(client, notebook, 1))
        assert f'<iframe src="{url}"' in frame and 'height="700"' in frame

        namespace: dict[str, Any] = {}
        exec(TINY_NET, namespace)  # the same class and seed, here: the maps the page must show
        expected = load_module(namespace["TinyNet"](), classes=CLASSES)
        layer = default_layer(expected)
        image = load_image(sample_bytes(default_sample(for_demo=False)))
        maps = extract(expected, image, [layer]).activations[layer]
        with chromium() as browser:
            context = new_context(browser)
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector(MOSAIC + " g.hm image", state="attached", timeout=DEADLINE * 1000)
            settle(page)
            assert "TinyNet" in header_caption(page).inner_text() and layer in header_caption(page).inner_text()
            assert page.get_by_test_id("stSidebar").get_by_text("From Python: TinyNet", exact=False).count() == 1
            tiles = tiles_of(mosaic(page))
            assert sorted(tiles) == list(range(maps.shape[0])) == list(range(7))
            for channel, tile in tiles.items():
                np.testing.assert_allclose(tile, maps[channel], rtol=1e-4, atol=1e-5)
            no_traceback(page)
            with _serving(frame) as notebook_url:  # the frame's HTML, from another port of this machine
                page.goto(notebook_url)
                inside = page.frame_locator("iframe")
                inside.locator(MOSAIC + " g.hm image").wait_for(state="attached", timeout=DEADLINE * 1000)
                assert inside.get_by_text("From Python: TinyNet", exact=False).count() == 1
            context.close()

        assert "pickled True" in _text(_run_cell(client, notebook, 2)), "the notebook's __main__ is its own again"
        assert "running False" in _text(_run_cell(client, notebook, 3))
        assert _refuses(port), "stop() frees the port"
