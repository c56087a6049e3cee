"""Attention page: a vision transformer's class-token attention per head and its rollout, on the image, with the
exact values of featviz_core.attention; a CNN gets one sentence."""

from __future__ import annotations

import numpy as np

from featviz_core import attention
from tests.conftest import decode_array, no_exception, plotly_figures

PAGE = "pages/attention.py"


def _z(figure: dict) -> np.ndarray:
    heatmaps = [t for t in figure["data"] if t["type"] == "heatmap"]
    return decode_array(heatmaps[0]["z"]).astype(np.float64)


def test_class_token_attention_per_head_and_rollout_of_a_vit(make_app, monkeypatch) -> None:
    monkeypatch.setenv("FEATVIZ_MODEL", "tests.custom_models:build_vit")
    at = make_app(page=PAGE)
    no_exception(at)
    sel = at.session_state["_selection"]
    overlay, heads = plotly_figures(at)
    expected = attention(sel.model, sel.image)  # the last block, every head
    np.testing.assert_allclose(_z(overlay), expected.mean, rtol=1e-6)
    tiles = _z(heads)
    for head in range(3):  # the mosaic holds each head's map
        assert any(np.allclose(tiles[r:r + 14, c:c + 14], expected.maps[head], rtol=1e-6)
                   for r in range(0, tiles.shape[0] - 13) for c in range(0, tiles.shape[1] - 13))
    assert any("class token" in c.value and "14×14 patches" in c.value for c in at.caption)

    at.select_slider(key="attn_block").set_value("blocks.3.attn").run()
    no_exception(at)
    np.testing.assert_allclose(_z(plotly_figures(at)[0]), attention(sel.model, sel.image, "blocks.3.attn").mean,
                               rtol=1e-6)
    at.segmented_control(key="attn_method").set_value("rollout").run()
    no_exception(at)
    figures = plotly_figures(at)
    assert len(figures) == 1, "rollout is one map"
    rollout = attention(sel.model, sel.image, "blocks.3.attn", method="rollout")
    np.testing.assert_allclose(_z(figures[0]), rollout.maps[0], rtol=1e-6)


def test_a_cnn_gets_a_sentence_and_no_chart(make_app) -> None:
    at = make_app(page=PAGE)
    no_exception(at)
    assert not plotly_figures(at)
    assert any("no attention from a class token" in i.value for i in at.info)
