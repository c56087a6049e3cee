"""Eight sessions at once on one cached model: each gets exactly its own maps; nothing is left behind."""

from __future__ import annotations

import threading

import numpy as np

from featviz_core import extract
from featviz_core.layers import hook_count
from tests.conftest import decode_array, plotly_figures
from tests.test_page_feature_maps import png


def test_eight_sessions_share_one_model(make_app) -> None:
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
