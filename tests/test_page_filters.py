"""Filters page: first-layer RGB tiles, deeper layers as heatmaps, the link to a channel's map."""

from __future__ import annotations

import json

from featviz_core.layers.filters import conv_layers
from tests.conftest import no_exception, plotly_figures


def test_first_layer_filters_in_colour(make_app) -> None:
    at = make_app(page="pages/filters.py")
    no_exception(at)
    model = at.session_state["_selection"].model
    first = conv_layers(model)[0].name
    at.selectbox(key="filter_layer").set_value(first).run()
    no_exception(at)
    fig = plotly_figures(at)[0]
    assert fig["data"][0]["type"] == "image"
    assert "grey = 0" in json.dumps(fig["layout"]["title"])


def test_deeper_filters_and_one_channel(make_app) -> None:
    at = make_app(page="pages/filters.py")
    model = at.session_state["_selection"].model
    deeper = conv_layers(model)[-1].name
    at.selectbox(key="filter_layer").set_value(deeper).run()
    no_exception(at)
    assert plotly_figures(at)[0]["data"][0]["type"] == "heatmap"
    at.selectbox(key="filter_input").set_value(0).run()
    no_exception(at)
    at.session_state["_filter_channel"] = 2
    at.run()
    assert any(h.value == "Filter 2" for h in at.subheader)
    assert any("Open channel 2" in b.label for b in at.button)
