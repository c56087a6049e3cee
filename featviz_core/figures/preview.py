"""A still picture of a heatmap figure, drawn by the server, for the moment before Plotly can draw it.

Plotly's JavaScript (about 4.7 MB) is fetched and started only when a page's first chart arrives; on a
small machine that takes one to three seconds, during which the visitor would see an empty box. The
mosaic is an image already, so the server can draw it at once: :func:`heatmap_png` turns the figure's
heatmap trace into a PNG with exactly the colours Plotly will use (the trace's own colour scale, ``zmin``
and ``zmax``, linear between the scale's stops, as Plotly does), one picture pixel per heatmap cell, gaps
(NaN) transparent. The page shows it until the interactive chart has been drawn in its place.
:func:`still_png` lays that picture out as the chart will be: the figure's height, its top and bottom
margins and the colour bar's room as transparent borders, each cell a block of screen pixels, so the page
can show it as a plain image, right at once, with no style rule of its own.

    >>> png = heatmap_png(mosaic_figure(maps))      # bytes, or None when the figure has no heatmap
    >>> still = still_png(mosaic_figure(maps))      # the same colours, at the size the chart takes
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from .style import stop_rgb

__all__ = ["COLOUR_BAR_PX", "StillLayout", "colour_table", "heatmap_png", "still_layout", "still_png"]

COLOUR_BAR_PX = 80
"""Room the chart's colour bar takes right of the heatmap: the still picture keeps it empty, so that centred in
the same box as the chart, its heatmap sits where the chart's will."""
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
    rgba = _heatmap_rgba(fig)
    return None if rgba is None else _png(rgba)


@dataclass(frozen=True)
class StillLayout:
    """Where the heatmap is in :func:`still_png`'s picture (pixels): ``top`` rows and ``right`` columns of
    border, the heatmap ``height`` × ``width`` (each of its ``rows`` × ``columns`` cells a block of pixels),
    the picture ``total_height`` (the figure's height) × ``total_width``."""

    top: int
    height: int
    width: int
    rows: int
    columns: int
    total_height: int
    right: int = COLOUR_BAR_PX

    @property
    def total_width(self) -> int:
        return self.width + self.right

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Picture row and column of each cell's centre: sampling there gives back one pixel per cell."""
        ys = self.top + ((np.arange(self.rows) + 0.5) * self.height / self.rows).astype(int)
        xs = ((np.arange(self.columns) + 0.5) * self.width / self.columns).astype(int)
        return ys, xs


def still_layout(fig: go.Figure) -> StillLayout | None:
    """The layout of :func:`still_png` for ``fig`` (None when there is no picture): the heatmap as high as the
    figure's plotting area (its height less its top and bottom margins), square cells, as the chart draws it
    on a screen wide enough for it."""
    trace = _heatmap(fig)
    if trace is None or trace.z is None:
        return None
    rows, columns = np.shape(trace.z)[:2]
    total = int(fig.layout.height or 450)
    margin = fig.layout.margin
    top, bottom = int(margin.t or 0), int(margin.b or 0)
    height = max(total - top - bottom, 1)
    width = max(round(columns * height / max(rows, 1)), 1)
    return StillLayout(top=top, height=height, width=width, rows=rows, columns=columns, total_height=total)


def still_png(fig: go.Figure) -> bytes | None:
    """:func:`heatmap_png` laid out as the chart of ``fig`` will be (:func:`still_layout`): the cells enlarged
    without blurring (nearest neighbour), transparent borders for the margins and the colour bar; None when
    :func:`heatmap_png` would be."""
    rgba, layout = _heatmap_rgba(fig), still_layout(fig)
    if rgba is None or layout is None:
        return None
    cells = Image.fromarray(rgba, "RGBA").resize((layout.width, layout.height), Image.Resampling.NEAREST)
    picture = Image.new("RGBA", (layout.total_width, layout.total_height), (0, 0, 0, 0))
    picture.paste(cells, (0, layout.top))
    return _png(np.asarray(picture), compress_level=6)  # 50 kB for 197×197 cells at 684 px, not 67


def _png(rgba: np.ndarray, compress_level: int = 1) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _heatmap_rgba(fig: go.Figure) -> np.ndarray | None:
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
    return rgba
