"""Convolution filters: one tile per filter (a mosaic of kernels) and RGB pictures of first-layer filters."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..errors import LayerError
from .grid import MosaicLayout, mosaic_layout, tile_stack
from .mosaic import mosaic_figure
from .style import (
    DIVERGING,
    UIREVISION,
    check_channels,
    image_axes,
    margin_for,
    title_spec,
    with_plain_numbers,
)


def _as_weights(weights: Any) -> np.ndarray:
    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().numpy()
    array = np.asarray(weights, dtype=np.float32)
    if array.ndim != 4:
        raise LayerError(
            f"Expected convolution weights of shape (out channels, in channels, height, width), got {tuple(array.shape)}. "
            "Choose a Conv2d layer."
        )
    return array


def kernel_maps(weights: Any, input_channel: int | None = None) -> np.ndarray:
    """(O, kh, kw) float32 maps of a (O, I, kh, kw) weight tensor for :func:`filter_mosaic_figure`.

    The mean over input channels by default, or the weights of one ``input_channel``.
    """
    array = _as_weights(weights)
    if input_channel is None:
        return array.mean(axis=1, dtype=np.float64).astype(np.float32)
    check_channels([input_channel], array.shape[1], what="input channel")
    return np.ascontiguousarray(array[:, input_channel])


@with_plain_numbers
def filter_mosaic_figure(
    weights: Any,
    channels: Sequence[int] | np.ndarray | None = None,
    *,
    input_channel: int | None = None,
    colorscale: str | Sequence[Any] = DIVERGING,
    columns: int | None = None,
    title: str | None = None,
    height: int | None = None,
    labels: bool = True,
) -> go.Figure:
    """The filters of a deeper convolution as a diverging mosaic (white = 0, one scale for all filters).

    Each tile is one output channel's kernel: the mean over its input channels, or the weights of one
    ``input_channel``. Built with :func:`mosaic_figure` (so clicks and hovers work the same way).
    """
    maps = kernel_maps(weights, input_channel)
    what = "mean over input channels" if input_channel is None else f"input channel {input_channel}"
    return mosaic_figure(
        maps,
        channels,
        scale="shared",
        colorscale=colorscale,
        columns=columns,
        diverging=True,
        title=title,
        height=height,
        colorbar_title=f"weight ({what}; white = 0)",
        value_label="weight",
        item_label="filter",
        labels=labels,
    )


@with_plain_numbers
def rgb_filters_figure(
    weights: Any,
    channels: Sequence[int] | np.ndarray | None = None,
    *,
    columns: int | None = None,
    scale: float | None = None,
    title: str | None = "First-layer filters as colours",
    height: int | None = None,
) -> go.Figure:
    """First-layer kernels (O, 3, kh, kw) as small RGB tiles on one honest, symmetric scale.

    One scale for every kernel: weight 0 -> mid-grey (127.5, shown as 128), ``+scale`` -> 255 and
    ``-scale`` -> 0 in that colour channel, where ``scale`` defaults to the largest |weight| of ALL
    filters (not just the page). The subtitle states it. Hover gives the filter, the x/y inside it and
    the three raw weights (R, G, B).

    The tiles touch (no gap pixels: an image trace cannot hide its hover over gaps, it would read
    "filter NaN"); white lines drawn over the tile borders separate them. A last, partly filled row of
    tiles is a second image trace, so every hoverable pixel belongs to a filter.
    """
    array = _as_weights(weights)
    if array.shape[1] != 3:
        raise LayerError(
            f"Colour filters need 3 input channels (RGB); this layer has {array.shape[1]}. "
            "Show it with filter_mosaic_figure instead."
        )
    count, _, kh, kw = array.shape
    index = check_channels(np.arange(count) if channels is None else channels, count, what="filter")
    peak = float(np.max(np.abs(array))) if array.size else 0.0
    m = float(scale) if scale is not None else peak
    if not math.isfinite(m) or m <= 0:
        m = 1.0
    subtitle = (
        f"grey = 0, full colour = ±{m:.3g} ({'the largest weight' if scale is None else 'scale given'})"
    )
    fig = go.Figure()
    n = int(index.size)
    if n == 0 or kh == 0 or kw == 0:
        fig.add_annotation(
            text="No filters to show", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
        fig.update_layout(
            height=height or 200, xaxis_visible=False, yaxis_visible=False, **title_spec(title, subtitle)
        )
        return fig
    layout = mosaic_layout(n, kh, kw, columns=columns, gap=0)
    kernels = np.moveaxis(array[index], 1, -1)  # (n, kh, kw, 3)
    rgb = np.clip(np.rint(127.5 + 127.5 * kernels.astype(np.float64) / m), 0, 255).astype(np.uint8)
    ly, lx = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    info = np.concatenate(
        [
            np.broadcast_to(index[:, None, None, None], (n, kh, kw, 1)),
            np.broadcast_to(lx[None, :, :, None], (n, kh, kw, 1)),
            np.broadcast_to(ly[None, :, :, None], (n, kh, kw, 1)),
            kernels,
        ],
        axis=-1,
    ).astype(np.float32)
    hovertemplate = (
        "filter %{customdata[0]} · x %{customdata[1]} · y %{customdata[2]}<br>"
        "weights R %{customdata[3]:.4g}, G %{customdata[4]:.4g}, B %{customdata[5]:.4g}<extra></extra>"
    )
    full = (n // layout.columns) * layout.columns
    parts = [(0, full, MosaicLayout(full, kh, kw, full // layout.columns, layout.columns, 0))] if full else []
    if full < n:
        parts.append((full, n, mosaic_layout(n - full, kh, kw, columns=n - full, gap=0)))
    for start, stop, part in parts:
        fig.add_trace(
            go.Image(
                # z as a list: from a binary (typed) RGB array plotly.js cannot take the hover label's
                # colour ("Invalid color specifier" console warnings); filters are small anyway.
                z=tile_stack(rgb[start:stop], part, np.uint8(255)).tolist(),
                customdata=tile_stack(info[start:stop], part, np.float32(np.nan)),
                x0=0,
                y0=(start // layout.columns) * kh,
                dx=1,
                dy=1,
                hovertemplate=hovertemplate,
                hoverlabel={"bgcolor": "rgba(30,30,30,0.9)", "font": {"color": "white"}},
                name="filters",
            )
        )
    fig.update_layout(shapes=_separators(layout, line_width=2 if min(kh, kw) > 1 else 1))
    fig.update_layout(
        height=height or int(min(900, max(300, 140 + layout.rows * 70))),
        margin=margin_for(bool(title), subtitle=True),
        uirevision=UIREVISION,
        plot_bgcolor="white",
        **title_spec(title, subtitle),
    )
    image_axes(fig)
    fig.update_xaxes(range=[-0.5, layout.width - 0.5])
    fig.update_yaxes(range=[layout.height - 0.5, -0.5], autorange=False)
    return fig


def _separators(layout: MosaicLayout, line_width: int) -> list[dict[str, Any]]:
    """White lines along the borders between touching tiles (data coordinates, pixel centres at integers)."""
    line = {"color": "white", "width": line_width}
    shapes: list[dict[str, Any]] = []
    last_row_tiles = layout.n_tiles - (layout.rows - 1) * layout.columns
    for c in range(1, layout.columns):
        x = c * layout.tile_w - 0.5
        bottom = layout.height if c <= last_row_tiles else (layout.rows - 1) * layout.tile_h
        shapes.append(
            {"type": "line", "x0": x, "x1": x, "y0": -0.5, "y1": bottom - 0.5, "line": line, "layer": "above"}
        )
    for r in range(1, layout.rows):
        y = r * layout.tile_h - 0.5
        shapes.append(
            {
                "type": "line",
                "x0": -0.5,
                "x1": layout.width - 0.5,
                "y0": y,
                "y1": y,
                "line": line,
                "layer": "above",
            }
        )
    return shapes
