"""A map over the image, the distribution of a map's values, and the class probabilities."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from .style import (
    UIREVISION,
    VALUE_FORMAT,
    as_map2d,
    colorbar_spec,
    faded_colorscale,
    finite_minmax,
    image_axes,
    index_dtype,
    margin_for,
    resolve_colorscale,
    safe_range,
    title_spec,
    with_plain_numbers,
)


def _png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@with_plain_numbers
def overlay_figure(
    image: Image.Image,
    map2d: np.ndarray,
    *,
    opacity: float = 0.5,
    colorscale: str | Sequence[Any] | None = None,
    zrange: tuple[float, float] | None = None,
    smooth: bool = True,
    title: str | None = None,
    colorbar_title: str = "activation",
    diverging: bool = False,
    height: int | None = None,
    fade: bool = True,
    grey_image: bool = True,
) -> go.Figure:
    """``image`` (the model's view of the picture) with ``map2d`` drawn over it, covering it exactly.

    With ``fade`` (default), weak values are see-through, so the picture stays visible where the map is
    quiet and the colour marks where it responds; ``opacity`` scales the whole map on top of that.
    With ``grey_image`` (default), the picture is drawn in grey so the map's colours cannot be confused with
    the picture's own colours.

    Each map cell covers (image width / map width) × (image height / map height) image pixels, so the
    map's outer edges are the image's edges. ``smooth`` blends neighbouring cells (``zsmooth="best"``);
    hover still gives the exact value of the map cell under the cursor and its (x, y) in the map.
    """
    array = np.ascontiguousarray(as_map2d(map2d), dtype=np.float32)
    mh, mw = array.shape
    rgb = image.convert("L").convert("RGB") if grey_image else image.convert("RGB")
    width, height_px = rgb.size
    dx, dy = width / mw, height_px / mh
    found = finite_minmax(array) or (0.0, 0.0)
    lo, hi = zrange if zrange is not None else found
    zmin, zmax = safe_range(float(lo), float(hi), diverging)
    cells = np.stack(np.meshgrid(np.arange(mw), np.arange(mh)), axis=-1).astype(index_dtype(max(mw, mh)))
    fig = go.Figure()
    fig.add_trace(go.Image(source=_png_data_uri(rgb), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip", name="image"))
    fig.add_trace(
        go.Heatmap(
            z=array,
            x0=-0.5 + dx / 2,
            dx=dx,
            y0=-0.5 + dy / 2,
            dy=dy,
            customdata=cells,
            opacity=opacity,
            zsmooth="best" if smooth else False,
            colorscale=faded_colorscale(resolve_colorscale(colorscale, diverging), diverging) if fade
            else resolve_colorscale(colorscale, diverging),
            zmin=zmin,
            zmax=zmax,
            hovertemplate=(
                f"map cell x %{{customdata[0]}} · y %{{customdata[1]}}<br>value %{{z:{VALUE_FORMAT}}}"
                "<extra></extra>"
            ),
            hoverongaps=False,
            colorbar=colorbar_spec(colorbar_title),
            name="map",
        )
    )
    fig.update_layout(
        height=height or 520, margin=margin_for(bool(title)), uirevision=UIREVISION, **title_spec(title)
    )
    image_axes(fig)
    fig.update_xaxes(range=[-0.5, width - 0.5])
    fig.update_yaxes(range=[height_px - 0.5, -0.5], autorange=False)
    return fig


# ---------------------------------------------------------------------------------------------------
# Distribution, probabilities


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * power:
            return factor * power
    return 10.0 * power


def _nice_edges(lo: float, hi: float, count: int) -> np.ndarray:
    if hi <= lo:
        width = abs(lo) * 0.1 or 1.0
        return np.array([lo - width / 2, lo + width / 2])
    target = int(min(60, max(10, math.sqrt(count))))
    step = _nice_step(hi - lo, target)
    start = math.floor(lo / step) * step
    stop = math.ceil(hi / step) * step
    if stop <= hi:
        stop += step
    bins = max(1, round((stop - start) / step))
    edges = start + step * np.arange(bins + 1)
    edges[0] = min(edges[0], lo)  # guard against rounding: every value falls in a bin
    if edges[-1] <= hi:
        edges[-1] = np.nextafter(hi, np.inf)
    return edges


@with_plain_numbers
def histogram_figure(
    map2d: np.ndarray,
    *,
    title: str | None = None,
    log_counts: bool = False,
    height: int | None = None,
) -> go.Figure:
    """How one channel's values are distributed: counts in evenly spaced, round-numbered bins.

    Bins are computed here (the browser gets counts, not every value); the counts add up to the number
    of finite values (H*W for a healthy map). A dashed line marks zero when zero is in range.
    """
    values = np.asarray(as_map2d(map2d), dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    fig = go.Figure()
    if finite.size == 0:
        fig.add_annotation(
            text="No values to show", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
        fig.update_layout(height=height or 300, **title_spec(title))
        return fig
    edges = _nice_edges(float(finite.min()), float(finite.max()), finite.size)
    counts, _ = np.histogram(finite, bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    zero_share = float(np.count_nonzero(finite == 0)) / finite.size
    fig.add_trace(
        go.Bar(
            x=centres,
            y=counts.astype(np.int32),
            width=float(edges[1] - edges[0]),
            customdata=np.stack([edges[:-1], edges[1:]], axis=1),
            hovertemplate="values from %{customdata[0]:.4g} to %{customdata[1]:.4g}<br>%{y} pixels<extra></extra>",
            marker={"color": "#4c78a8", "line": {"width": 0}},
            name="values",
        )
    )
    if edges[0] <= 0 <= edges[-1]:
        fig.add_vline(
            x=0,
            line={"dash": "dash", "color": "#d62728", "width": 1.5},
            annotation={
                "text": f"zero ({zero_share:.0%} of pixels are exactly 0)" if zero_share else "zero",
                "font": {"size": 11},
            },
            annotation_position="top right",
        )
    fig.update_layout(
        height=height or 300,
        margin={"l": 50, "r": 10, "b": 40, "t": 40 if title else 20},
        bargap=0.02,
        showlegend=False,
        xaxis_title="activation value",
        yaxis_title="pixels (log scale)" if log_counts else "pixels",
        yaxis_type="log" if log_counts else "linear",
        **title_spec(title),
    )
    return fig


@with_plain_numbers
def probability_figure(
    top_k: Sequence[tuple[str, float]], *, title: str | None = None, height: int | None = None
) -> go.Figure:
    """Horizontal bars of the most probable classes, most probable on top, in percent."""
    fig = go.Figure()
    if not top_k:
        fig.add_annotation(
            text="This model gives no class probabilities",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
        )
        fig.update_layout(height=height or 160, xaxis_visible=False, yaxis_visible=False, **title_spec(title))
        return fig
    names = [str(name) for name, _ in top_k]
    percents = [float(p) * 100.0 for _, p in top_k]
    positions = list(range(len(names)))  # positions, not names: class names can repeat (ImageNet "crane")
    fig.add_trace(
        go.Bar(
            x=percents,
            y=positions,
            orientation="h",
            text=[f"{p:.1f}%" for p in percents],
            textposition="outside",
            cliponaxis=False,
            customdata=names,
            hovertemplate="%{customdata}: %{x:.2f}%<extra></extra>",
            marker={"color": "#4c78a8"},
        )
    )
    fig.update_layout(
        height=height or 60 + 34 * len(names),
        margin={"l": 10, "r": 50, "b": 30, "t": 40 if title else 10},
        showlegend=False,
        xaxis={"range": [0, 100], "ticksuffix": "%", "title": None},
        yaxis={
            "tickvals": positions,
            "ticktext": names,
            "autorange": "reversed",
            "automargin": True,
            "title": None,
        },
        **title_spec(title),
    )
    return fig


# ---------------------------------------------------------------------------------------------------
