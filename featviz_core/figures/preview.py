"""A still picture of a heatmap figure, drawn by the server, for the moment before Plotly can draw it.

Plotly's JavaScript (about 4.7 MB) is fetched and started only when a page's first chart arrives; on a
small machine that takes one to three seconds, during which the visitor would see an empty box. The
mosaic is an image already, so the server can draw it at once: :func:`heatmap_png` turns the figure's
heatmap trace into a PNG with exactly the colours Plotly will use (the trace's own colour scale, ``zmin``
and ``zmax``, linear between the scale's stops, as Plotly does), one picture pixel per heatmap cell, gaps
(NaN) transparent. The page shows it until the interactive chart has been drawn in its place.

    >>> png = heatmap_png(mosaic_figure(maps))      # bytes, or None when the figure has no heatmap
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from .style import stop_rgb

__all__ = ["colour_table", "heatmap_png"]

_LEVELS = 1024
"""Entries of the colour table: finer than a screen can show between two 8-bit colours."""


def colour_table(colorscale: Sequence[Any], levels: int = _LEVELS) -> np.ndarray:
    """(levels, 3) uint8: the colour scale sampled at ``levels`` evenly spaced positions from 0 to 1,
    each colour linear in RGB between the two stops around it (Plotly's own interpolation)."""
    stops = np.array([float(position) for position, _ in colorscale], dtype=np.float64)
    rgb = np.array([stop_rgb(str(colour)) for _, colour in colorscale], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, levels)
    table = np.stack([np.interp(positions, stops, rgb[:, k]) for k in range(3)], axis=1)
    return np.clip(np.round(table), 0, 255).astype(np.uint8)


def _heatmap(fig: go.Figure) -> go.Heatmap | None:
    for trace in fig.data:
        if isinstance(trace, go.Heatmap) and trace.z is not None:
            return trace
    return None


def heatmap_png(fig: go.Figure) -> bytes | None:
    """The first heatmap of ``fig`` as an RGBA PNG (row 0 on top, as featviz draws images), or None
    when there is none, it has no numbers, or it has no colour range (``zmin``/``zmax``)."""
    trace = _heatmap(fig)
    if trace is None or trace.zmin is None or trace.zmax is None or not trace.colorscale:
        return None
    z = np.asarray(trace.z, dtype=np.float64)
    if z.ndim != 2 or z.size == 0:
        return None
    lo, hi = float(trace.zmin), float(trace.zmax)
    finite = np.isfinite(z)
    span = hi - lo if hi > lo else 1.0
    position = np.clip((np.where(finite, z, lo) - lo) / span, 0.0, 1.0)
    table = colour_table(trace.colorscale)
    index = np.round(position * (len(table) - 1)).astype(np.intp)
    rgba = np.zeros((*z.shape, 4), dtype=np.uint8)
    rgba[..., :3] = table[index]
    rgba[..., 3] = np.where(finite, 255, 0)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
