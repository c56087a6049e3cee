"""Where it looks page: prediction, Grad-CAM and the mean activation."""

from __future__ import annotations

import numpy as np

from featviz_core.cam import gradcam
from tests.conftest import decode_array, no_exception, plotly_figures


def test_gradcam_for_the_top_class_on_the_demo_model(make_app) -> None:
    at = make_app(page="pages/where_it_looks.py")
    no_exception(at)
    assert at.title[0].value == "Where it looks"
    figs = plotly_figures(at)
    assert len(figs) == 3  # probabilities, Grad-CAM overlay, mean activation overlay
    sel = at.session_state["_selection"]
    layer = at.session_state["cam_layer"]
    top = sel.extraction().top_k_indices(1)[0]
    assert at.session_state["cam_class"] == top
    expected = gradcam(sel.model, sel.image, layer, top)
    overlay = figs[1]
    heat = next(t for t in overlay["data"] if t["type"] == "heatmap")
    np.testing.assert_array_equal(decode_array(heat["z"]).reshape(expected.normalized.shape), expected.normalized)
    assert "What drives" in overlay["layout"]["title"]["text"]


def test_another_class_and_layer(make_app) -> None:
    at = make_app(page="pages/where_it_looks.py")
    radio = at.radio(key="cam_class")
    second = radio.options[1]
    radio.set_value(at.session_state["_selection"].extraction().top_k_indices(2)[1]).run()
    no_exception(at)
    assert second in [o for o in at.radio(key="cam_class").options]
    layers = at.selectbox(key="cam_layer").options
    at.selectbox(key="cam_layer").set_value(at.session_state["_selection"].layers[0].name).run()
    no_exception(at)
    assert len(layers) == len(at.session_state["_selection"].layers)
    assert len(plotly_figures(at)) == 3
