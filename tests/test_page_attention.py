"""Attention page: a vision transformer's class-token attention per head and its rollout, on the image, with the
exact values of featviz_core.attention; a CNN gets one sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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


def test_a_hugging_face_vit_gets_the_same_view(make_app, tmp_path, monkeypatch) -> None:
    """A tiny seeded transformers ViT (6×6 patches, 3 heads, 3 layers) opened by its id from a temporary HF_HOME."""
    tr = pytest.importorskip("transformers")
    from tests.test_sources_hf import place_in_cache

    torch.manual_seed(3)
    folder = tmp_path / "tiny-vit"
    config = tr.ViTConfig(hidden_size=24, num_hidden_layers=3, num_attention_heads=3, intermediate_size=48,
                          image_size=48, patch_size=8, num_labels=2)
    tr.ViTForImageClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    tr.ViTImageProcessor(size={"height": 48, "width": 48}).save_pretrained(folder)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    place_in_cache(tmp_path / "hf" / "hub", "tiny/vit-attention", {p.name: p.read_bytes() for p in folder.iterdir()})

    at = make_app(state={"model_kind": "Hugging Face", "hf_id": "tiny/vit-attention"}, page=PAGE)
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.key == "hf:tiny/vit-attention"
    assert not at.info, "no 'not read' sentence for a Hugging Face ViT"
    overlay, heads = plotly_figures(at)
    expected = attention(sel.model, sel.image)
    assert expected.block == "vit.layers.2" and expected.maps.shape == (3, 6, 6)
    np.testing.assert_allclose(_z(overlay), expected.mean, rtol=1e-6)
    tiles = _z(heads)
    for head in range(3):
        assert any(np.allclose(tiles[r:r + 6, c:c + 6], expected.maps[head], rtol=1e-6)
                   for r in range(0, tiles.shape[0] - 5) for c in range(0, tiles.shape[1] - 5))
    assert any("class token" in c.value and "6×6 patches" in c.value and "block 3 of 3" in c.value
               for c in at.caption)
    mean = expected.mean  # the overlay's colours span the map's own range, and the caption says so
    heatmap = next(t for t in overlay["data"] if t["type"] == "heatmap")
    assert (heatmap["zmin"], heatmap["zmax"]) == pytest.approx((float(mean.min()), float(mean.max())), rel=1e-5)
    spread = next(c.value for c in at.caption if "own range" in c.value)
    assert f"{float(mean.min()):.4g} to {float(mean.max()):.4g}" in spread
    assert f"{float(mean.sum()) / 36:.4g} to every patch" in spread
    uniform = float(mean.max() - mean.min()) < 0.5 * float(mean.sum()) / 36
    assert ("nearly uniform" in spread) == uniform

    at.select_slider(key="attn_block").set_value("vit.layers.1").run()
    at.segmented_control(key="attn_method").set_value("rollout").run()
    no_exception(at)
    figures = plotly_figures(at)
    assert len(figures) == 1, "rollout is one map"
    np.testing.assert_allclose(_z(figures[0]), attention(sel.model, sel.image, "vit.layers.1", method="rollout").maps[0],
                               rtol=1e-6)
