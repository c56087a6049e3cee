"""featviz_core.figures.preview: the still picture has the mosaic's shape and exactly Plotly's colours."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale

from featviz_core import figures
from featviz_core.figures.preview import colour_table, heatmap_png


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(int)


def plotly_rgb(colorscale: str, positions: np.ndarray) -> np.ndarray:
    """Plotly's own interpolation of a named scale (plotly.colors.sample_colorscale), as 0-255 floats."""
    samples = sample_colorscale(get_colorscale(colorscale), [float(p) for p in positions])
    return np.array([[float(v) for v in s[s.index("(") + 1 : -1].split(",")] for s in samples])


@pytest.fixture
def maps() -> np.ndarray:
    rng = np.random.default_rng(4)
    out = rng.normal(size=(7, 9, 6)).astype(np.float32)
    out[2] = 0.0  # a dead channel
    out[3, 0, 0] = np.nan  # a missing value stays transparent, like a gap
    return out


@pytest.mark.parametrize("colorscale", ["Viridis", "Greys", "Inferno"])
def test_shared_scale_has_plotlys_colours_and_transparent_gaps(maps: np.ndarray, colorscale: str) -> None:
    fig = figures.mosaic_figure(maps, colorscale=colorscale, zrange=figures.layer_range(maps))
    heat = fig.data[0]
    z = np.asarray(heat.z, dtype=np.float64)
    pixels = decode(heatmap_png(fig))
    assert pixels.shape == (*z.shape, 4)
    finite = np.isfinite(z)
    assert np.array_equal(pixels[..., 3] == 255, finite) and not pixels[~finite, 3].any()
    position = (z[finite] - heat.zmin) / (heat.zmax - heat.zmin)
    expected = plotly_rgb(colorscale, position)
    assert np.abs(pixels[finite][:, :3] - expected).max() <= 1.0  # 8-bit rounding


def test_each_channel_its_own_scale(maps: np.ndarray) -> None:
    fig = figures.mosaic_figure(maps, scale="channel", colorscale="Viridis")
    z = np.asarray(fig.data[0].z, dtype=np.float64)
    pixels = decode(heatmap_png(fig))
    finite = np.isfinite(z)
    expected = plotly_rgb("Viridis", z[finite])  # already 0..1 per channel
    assert np.abs(pixels[finite][:, :3] - expected).max() <= 1.0


def test_colour_table_ends_on_the_scales_ends() -> None:
    table = colour_table([[0.0, "#000000"], [0.5, "rgb(255, 0, 0)"], [1.0, "rgba(0, 0, 255, 0.5)"]], levels=5)
    assert table.tolist() == [[0, 0, 0], [128, 0, 0], [255, 0, 0], [128, 0, 128], [0, 0, 255]]


def test_no_picture_without_a_heatmap_or_a_range() -> None:
    assert heatmap_png(go.Figure(go.Scatter(x=[1], y=[2]))) is None
    assert heatmap_png(go.Figure(go.Heatmap(z=[[1.0, 2.0]]))) is None  # Plotly would choose the range
    assert heatmap_png(figures.mosaic_figure(np.zeros((0, 4, 4), np.float32))) is None
