"""The "ONNX file" model source in the sidebar, and the pages with an ONNX model (AppTest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featviz_core import extract, load_onnx
from tests.conftest import decode_array, no_exception
from tests.onnx_builders import small_cnn
from tests.test_page_feature_maps import mosaic

PADDLE = (Path(__file__).parent / "data" / "onnx" / "paddle_tiny.onnx").read_bytes()
MIME = "application/octet-stream"


def onnx_app(make_app, name: str, data: bytes, **state):  # type: ignore[no-untyped-def]
    at = make_app(state={"model_kind": "ONNX file", **state})
    at.file_uploader(key="onnx_file").upload(name, data, MIME).run()
    return at


def test_upload_shows_the_feature_maps_of_the_onnx_model(make_app) -> None:  # type: ignore[no-untyped-def]
    at = onnx_app(make_app, "paddle_tiny.onnx", PADDLE)
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.source == "onnx" and sel.model.supports_gradients
    assert any("your ONNX file paddle_tiny.onnx" in c.value for c in at.sidebar.caption)
    assert not at.sidebar.number_input, "a fixed-size graph needs no size inputs"
    at.selectbox(key="layer").set_value("Relu_0").run()
    no_exception(at)
    z = decode_array(mosaic(at)["data"][0]["z"])
    maps = extract(load_onnx(PADDLE, "paddle_tiny.onnx"), sel.image, ["Relu_0"]).activations["Relu_0"]
    np.testing.assert_array_equal(np.sort(z[np.isfinite(z)]), np.sort(maps.ravel()))
    labels = at.selectbox(key="layer").options
    assert "Relu_0 · ReLU · 8×16×16" in labels


def test_dynamic_size_asks_for_height_and_width(make_app) -> None:  # type: ignore[no-untyped-def]
    at = onnx_app(make_app, "dynamic.onnx", small_cnn(dynamic=True).SerializeToString())
    no_exception(at)
    assert at.number_input(key="onnx_height").value == 224 and at.number_input(key="onnx_width").value == 224
    at.number_input(key="onnx_height").set_value(64).run()
    at.number_input(key="onnx_width").set_value(48).run()
    no_exception(at)
    assert at.session_state["_selection"].model.input_size == (64, 48)
    assert at.session_state["_selection"].layer.shape == (6, 64, 48)
    at.radio(key="onnx_scaling").set_value("0-255").run()
    assert "0 to 255" in at.session_state["_selection"].model.provenance


def test_a_file_onnxruntime_runs_says_why_grad_cam_is_missing(make_app) -> None:  # type: ignore[no-untyped-def]
    data = small_cnn("ThresholdedRelu", alpha=0.1).SerializeToString()
    at = onnx_app(make_app, "tiny.onnx", data)
    no_exception(at)
    assert not at.session_state["_selection"].model.supports_gradients
    assert any("Grad-CAM is not available" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/where_it_looks.py").run()
    no_exception(at)
    assert any("Grad-CAM needs the model's gradients" in i.value for i in at.info)
    assert at.selectbox(key="cam_method").value == "eigencam"  # a method that needs no gradients
    assert not at.error


def test_a_bad_file_is_explained_and_the_demo_stays(make_app) -> None:  # type: ignore[no-untyped-def]
    at = onnx_app(make_app, "model.onnx", b"\x89HDF\r\n\x1a\n" + bytes(100))
    no_exception(at)
    assert any("Keras .h5 file" in e.value for e in at.error)
    assert at.session_state["_selection"].model.source == "demo"


def test_every_page_works_with_both_kinds_of_onnx_model(make_app) -> None:  # type: ignore[no-untyped-def]
    for data in (PADDLE, small_cnn("ThresholdedRelu", alpha=0.1).SerializeToString()):
        at = onnx_app(make_app, "model.onnx", data)
        for page in (
            "pages/where_it_looks.py",
            "pages/compare.py",
            "pages/filters.py",
            "pages/model.py",
            "pages/feature_maps.py",
        ):
            at.switch_page(page).run()
            no_exception(at)
            assert not at.error, [e.value for e in at.error]


def test_an_uploaded_onnx_file_is_never_written_to_disk(make_app) -> None:  # type: ignore[no-untyped-def]
    import tempfile

    from tests.test_privacy import ROOT, contains, snapshot

    data = small_cnn("ThresholdedRelu", alpha=0.123456).SerializeToString()  # onnxruntime runs it
    marker = data[-48:]
    roots = (ROOT, Path(tempfile.gettempdir()))
    before = snapshot(*roots)
    at = onnx_app(make_app, "private.onnx", data)
    no_exception(at)
    assert at.session_state["_selection"].model.source == "onnx"
    after = snapshot(*roots)
    changed = [p for p, meta in after.items() if before.get(p) != meta]
    assert not [p for p in changed if contains(p, marker)]
