"""ui/light_chart.py: what the browser is sent, the bundle it loads, and the page's use of it (AppTest). What the
browser draws from it (theme, hover, clicks, the still picture before it) is in tests/test_browser.py and
tests/test_browser_first_view.py."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io
import pytest

from tests.conftest import light_charts, plotly_figures
from ui.light_chart import ASSETS, BUNDLE, figure_of, payload


def _head(sent: bytes) -> dict:
    return json.loads(sent.decode("utf-8").split("\n", 1)[0])


def test_the_payload_is_the_figure_as_st_plotly_chart_sends_it_with_its_config() -> None:
    fig = go.Figure(go.Heatmap(z=np.arange(6, dtype=np.float32).reshape(2, 3)))
    fig.update_layout(height=300)
    config = {"displaylogo": False, "toImageButtonOptions": {"filename": "maps"}}
    sent = payload(fig, config, clicks=True)
    head = _head(sent)
    assert head["clicks"] is True
    assert re.fullmatch(r"component/ui\.light_chart\.plotly_light/plotly-light\.min\.js", head["src"])
    figure = figure_of(sent)
    assert figure.pop("config") == {**config, "showSendToCloud": False}
    assert figure == json.loads(plotly.io.to_json(fig, validate=False))  # st.plotly_chart's spec, byte for byte
    assert _head(payload(fig))["clicks"] is False
    assert figure_of(payload(go.Figure()))["data"] == []


def test_a_trace_the_bundle_cannot_draw_is_refused() -> None:
    with pytest.raises(ValueError, match="st.plotly_chart"):
        payload(go.Figure(go.Scatter3d(x=[1], y=[1], z=[1])))
    for trace in (go.Heatmap(z=[[1]]), go.Image(z=[[[0, 0, 0]]]), go.Bar(y=[1]), go.Scatter(y=[1])):
        payload(go.Figure(trace))


def test_the_bundle_is_plotly_js_of_the_plotly_package_with_its_licence() -> None:
    bundled = (ASSETS / BUNDLE).read_text(encoding="utf-8")
    version = re.match(r"/\*! plotly\.js v([\d.]+) \(core, heatmap, image, bar\) \| MIT License", bundled)
    assert version, "the bundle's first line names plotly.js's release and licence"
    reference = (files("plotly") / "package_data" / "plotly.min.js").read_text(encoding="utf-8")[:200]
    assert f"plotly.js v{version[1]}" in reference, "rebuild with scripts/plotly_light/build.sh"
    assert bundled.count("FeatvizPlotly") >= 1 and len(bundled) < 1_500_000
    assert "MIT" in (ASSETS / "LICENSE.txt").read_text(encoding="utf-8")
    lock = json.loads((Path(__file__).parent.parent / "scripts" / "plotly_light" / "package-lock.json")
                      .read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/plotly.js"]["version"] == version[1]


def test_feature_maps_draws_its_charts_with_the_light_build(make_app) -> None:  # type: ignore[no-untyped-def]
    at = make_app()
    charts = light_charts(at)
    assert [c.key for c in charts] == ["grid_chart"]
    mosaic = figure_of(charts[0].proto.bytes)
    assert _head(charts[0].proto.bytes)["clicks"] is True  # a click on a tile opens the channel
    assert mosaic["config"]["displaylogo"] is False and mosaic["config"]["toImageButtonOptions"]["filename"]
    assert plotly_figures(at)[0] == mosaic
    at.number_input(key="channel").set_value(3).run()
    assert [c.key for c in light_charts(at)] == ["grid_chart", "detail_overlay", "detail_map", "detail_hist"]
    assert [_head(c.proto.bytes)["clicks"] for c in light_charts(at)] == [True, False, False, False]
    assert not at.get("plotly_chart"), "the Feature maps page needs nothing of Streamlit's Plotly"
