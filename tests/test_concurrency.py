"""Eight sessions at once on one cached model: each gets exactly its own maps; nothing is left behind."""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator
from unittest.mock import MagicMock

import numpy as np
import pytest
import streamlit.testing.v1.app_test as app_test
from streamlit.components.v2.component_manager import BidiComponentManager
from streamlit.runtime import Runtime
from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from featviz_core import extract
from featviz_core.layers import hook_count
from tests.conftest import decode_array, plotly_figures
from tests.test_page_feature_maps import png


@pytest.fixture
def one_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One runtime for every session, as a real server has. ``AppTest`` installs a runtime of its own for each
    run and removes it when that run ends, which, with runs in parallel threads, takes it away from the
    others while they still draw (a component or a picture then finds no runtime)."""
    runtime = MagicMock(spec=Runtime)
    runtime.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    runtime.cache_storage_manager = MemoryCacheStorageManager()
    runtime.dataframe_source_mgr = DataframeSourceManager()
    runtime.bidi_component_registry = BidiComponentManager()
    monkeypatch.setattr(Runtime, "_instance", runtime)
    monkeypatch.setattr(app_test, "Runtime", types.SimpleNamespace(_instance=None))  # its swaps go nowhere
    yield


def test_eight_sessions_share_one_model(make_app, one_runtime) -> None:
    first = make_app()
    model = first.session_state["_selection"].model
    layers = [info.name for info in first.session_state["_selection"].layers]
    apps = [make_app(state={"image_source": "Upload"}) for _ in range(8)]
    for i, at in enumerate(apps):
        at.file_uploader(key="upload").upload(f"img{i}.png", png((30 * i, 255 - 30 * i, 7 * i)), "image/png")
        at.selectbox(key="layer").set_value(layers[i % len(layers)])
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def run(at) -> None:  # type: ignore[no-untyped-def]
        try:
            barrier.wait()
            at.run()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(at,)) for at in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, at in enumerate(apps):
        assert not at.exception
        sel = at.session_state["_selection"]
        assert sel.model is model, "one cached model for every session"
        assert sel.image_name == f"img{i}.png" and sel.layer.name == layers[i % len(layers)]
        expected = extract(model, sel.image, [sel.layer.name]).activations[sel.layer.name]
        z = decode_array(plotly_figures(at)[0]["data"][0]["z"])
        np.testing.assert_array_equal(np.sort(z[np.isfinite(z)]), np.sort(expected.ravel()))
    assert hook_count(model.module) == 0
