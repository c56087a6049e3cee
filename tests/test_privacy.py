"""Privacy promises of the README: uploads never touch the disk; no network unless a download is chosen."""

from __future__ import annotations

import io
import os
import socket
import tempfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import light_charts, no_exception, upload_image
from tests.test_page_feature_maps import png

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "node_modules"}


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    files: dict[str, tuple[int, int]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith("pytest-of")]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                files[path] = (st.st_size, st.st_mtime_ns)
    return files


def contains(path: str, needle: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return needle in f.read(50_000_000)
    except OSError:
        return False


def test_an_upload_is_never_written_to_disk(make_app) -> None:
    data = png((123, 45, 67), size=(64, 48))
    marker = data[-64:]  # compressed image data: unique to this upload
    roots = (ROOT, Path(tempfile.gettempdir()))
    before = snapshot(*roots)
    at = upload_image(make_app, "private-scan.png", data)
    # and an upload through a real file_uploader widget (Compare page, image B)
    at.switch_page("pages/compare.py").run()
    at.segmented_control(key="compare_source").set_value("Upload").run()
    at.file_uploader(key="compare_upload").upload("private-b.png", data, "image/png").run()
    no_exception(at)
    assert len(at.get("plotly_chart")) == 3
    for page in ("pages/where_it_looks.py", "pages/compare.py", "pages/filters.py", "pages/model.py"):
        at.switch_page(page).run()
        no_exception(at)
    assert at.session_state["_selection"].image_name == "private-scan.png"
    after = snapshot(*roots)
    changed = [p for p, meta in after.items() if before.get(p) != meta]
    leaked = [p for p in changed if contains(p, marker)]
    assert not leaked, f"the upload was written to {leaked}"
    new_in_project = [p for p in changed if p.startswith(str(ROOT)) and p not in before]
    assert not new_in_project, new_in_project


@pytest.fixture
def connections(monkeypatch):
    """Every outgoing connection attempt (host, port); the attempt itself is refused."""
    attempts: list[tuple[str, int]] = []
    real_connect = socket.socket.connect

    def guarded_connect(self, address):  # type: ignore[no-untyped-def]
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(address, tuple) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append((host, address[1]))
            raise OSError("network disabled in tests")
        return real_connect(self, address)

    def guarded_create_connection(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append((address[0], address[1]))
        raise OSError("network disabled in tests")

    def guarded_getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host in ("127.0.0.1", "::1", "localhost"):
            return real_getaddrinfo(host, port, *args, **kwargs)
        attempts.append((host, port))
        raise OSError("network disabled in tests")

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts


def test_no_network_request_unless_a_download_is_chosen(make_app, monkeypatch, connections) -> None:
    at = make_app(offline=False)  # the app's own behaviour, not the offline switch
    for page in ("pages/where_it_looks.py", "pages/compare.py", "pages/filters.py", "pages/model.py",
                 "pages/feature_maps.py"):
        at.switch_page(page).run()
        no_exception(at)
    assert connections == [], "nothing may be fetched before the user asks for it"

    # The ImageNet choice offers a download button and fetches nothing by itself (a fresh session, so the
    # sidebar is in the test tree: see make_app).
    at = make_app(offline=False, state={"model_kind": "ImageNet model"})
    no_exception(at)
    assert any(b.label.startswith("Download resnet18 weights") for b in at.button)
    assert connections == []

    # Asking for the download (here through FEATVIZ_AUTO_DOWNLOAD, as a host would; the button runs the same
    # code) contacts the weights' server and nothing else; its failure is one sentence and the demo stays.
    monkeypatch.setenv("FEATVIZ_AUTO_DOWNLOAD", "1")
    at = make_app(offline=False)
    no_exception(at)
    assert connections and all("pytorch.org" in host for host, _ in connections)
    assert at.error and "Could not download" in at.error[0].value
    assert at.session_state["_selection"].model.source == "demo", "the demo model stays on screen"


def test_nothing_from_an_uploaded_zip_is_written_to_disk(make_app) -> None:
    from tests.test_page_exemplars import run_to_the_end, shapes_zip, upload_zip

    data = shapes_zip(12, seed=7, extra={"private/scan.png": png((9, 87, 65), size=(80, 60))})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        inner = archive.read("my shapes/private/scan.png")
    markers = (data[-200:-100], inner[-64:])  # the zip's own bytes and one image inside it
    roots = (ROOT, Path(tempfile.gettempdir()))
    before = snapshot(*roots)
    at = make_app(page="pages/exemplars.py")
    upload_zip(at, data, "private-ward.zip")
    job = run_to_the_end(at)  # decoded in worker processes, from memory
    assert job.state == "done" and job.result.count == 13
    at.button(key="ex_open_top_0").click().run()  # an exemplar becomes the sidebar's image
    no_exception(at)
    at.switch_page("pages/feature_maps.py").run()
    no_exception(at)
    after = snapshot(*roots)
    changed = [p for p, meta in after.items() if before.get(p) != meta]
    leaked = [p for p in changed if any(contains(p, m) for m in markers)]
    assert not leaked, f"the zip's contents were written to {leaked}"
    new_in_project = [p for p in changed if p.startswith(str(ROOT)) and p not in before]
    assert not new_in_project, new_in_project


def _chart_configs(at) -> list[dict]:  # type: ignore[no-untyped-def]
    import json

    from ui.light_chart import figure_of

    return ([json.loads(node.proto.config or "{}") for node in at.get("plotly_chart")]
            + [figure_of(node.proto.bytes).get("config", {}) for node in light_charts(at)])


def test_no_chart_offers_to_upload_itself(make_app) -> None:  # type: ignore[no-untyped-def]
    """plotly.js 4 adds a "Share chart..." button that uploads a chart's data to Plotly's cloud after one
    confirmation: every chart turns it off (or has no mode bar at all)."""
    from ui.router import PAGES

    seen = 0
    for path, _title, _icon in PAGES:
        at = make_app(page=path, state={"channel": 1, "filter_channel": 1})
        no_exception(at)
        for config in _chart_configs(at):
            seen += 1
            assert config.get("showSendToCloud") is False or config.get("displayModeBar") is False, (path, config)
    assert seen >= 8, "the pages drew their charts"
