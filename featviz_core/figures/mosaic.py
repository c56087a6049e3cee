"""The mosaic (every channel of a page as tiles of one heatmap, laid out by :mod:`.grid`), clicks on it, and one
channel's heatmap. See :mod:`featviz_core.figures` for the payload and hover design.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go

from .grid import MosaicLayout, mosaic_layout, tile_stack
from .style import (
    MAX_UINT,
    TILES_TRACE_NAME,
    UIREVISION,
    VALUE_FORMAT,
    as_map2d,
    as_maps,
    axis_labels,
    check_channels,
    colorbar_spec,
    finite_minmax,
    image_axes,
    index_dtype,
    layer_range,
    margin_for,
    resolve_colorscale,
    safe_range,
    title_spec,
    with_plain_numbers,
)


def _per_channel(tiles: np.ndarray, diverging: bool) -> np.ndarray:
    """Scale each (h, w) tile on its own: 0..1 (lowest..highest), or -1..1 by its largest |value|."""
    flat = tiles.reshape(tiles.shape[0], -1).astype(np.float64)
    finite = np.isfinite(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        if diverging:
            peak = np.where(finite, np.abs(flat), 0).max(axis=1, initial=0.0)
            scaled = flat / np.where(peak > 0, peak, 1.0)[:, None]
        else:
            lo = np.where(finite, flat, np.inf).min(axis=1, initial=np.inf)
            hi = np.where(finite, flat, -np.inf).max(axis=1, initial=-np.inf)
            span = hi - lo
            ok = np.isfinite(span) & (span > 0)
            scaled = np.where(ok[:, None], (flat - lo[:, None]) / np.where(ok, span, 1.0)[:, None], 0.0)
            scaled = np.where(finite, scaled, np.nan)
    return scaled.astype(np.float32).reshape(tiles.shape)


@with_plain_numbers
def mosaic_figure(
    maps: np.ndarray,
    channels: Sequence[int] | np.ndarray | None = None,
    *,
    scale: Literal["shared", "channel"] = "shared",
    colorscale: str | Sequence[Any] | None = None,
    zrange: tuple[float, float] | None = None,
    columns: int | None = None,
    diverging: bool = False,
    title: str | None = None,
    height: int | None = None,
    gap: int = 1,
    labels: bool = True,
    colorbar_title: str | None = None,
    value_label: str = "value",
    item_label: str = "channel",
    uirevision: str = UIREVISION,
    depth: int | None = None,
) -> go.Figure:
    """Tiles of the ``channels`` of ``maps`` (a layer's (C, H, W) array) as ONE heatmap with NaN gaps.

    ``channels`` is the page to show, in display order (default: all). Hover gives "channel N", the x and
    y *inside the tile* and the exact value. Clicking a tile's channel number (its top-left corner)
    selects a point of the transparent trace named ``"tiles"`` whose ``customdata`` is the channel, so
    ``st.plotly_chart(fig, on_select="rerun", selection_mode="points")`` returns it (read it with
    :func:`channel_from_selection`).

    ``scale="shared"``: one colour scale for the whole layer. ``zrange`` defaults to the lowest/highest
    value of the WHOLE layer (all of ``maps``, not just the page), so paging never changes colours;
    ``z`` is the raw float32 values and ``customdata`` the channel index per pixel (uint8, or uint16 from
    255 channels on; the largest value of the type marks the gaps). About 6.7 bytes per mosaic pixel
    in ``fig.to_json()``, plus 5–15 % because Plotly writes every "/" of base64 as ``\\u002f``.

    ``scale="channel"``: each tile scaled on its own to 0..1 (0 = that channel's lowest value, 1 = its
    highest; a constant channel is all 0). The hover still shows the raw value, carried in ``customdata``
    of shape (height, width, 2) float32 = (channel, raw value), so the payload is about 2.4 times the
    shared mode's (≈ 16 bytes per pixel).

    ``diverging=True`` centres the colours on zero with a symmetric range (default colour scale
    :data:`DIVERGING`, gaps grey): for differences and weights. Per channel, each tile is then divided by
    its largest absolute value (-1..1). ``colorscale`` defaults to Viridis (or :data:`DIVERGING`); plain
    labels of :data:`COLORSCALES` work too. ``value_label`` names the value in the hover ("weight"...),
    ``item_label`` the tiles ("filter"...). ``depth``: the maps are one depth of a 3-D layer's (C, D, H, W)
    maps, and the hover says which ("z 3 · x 5 · y 2").
    """
    array = as_maps(maps)
    count, h, w = (int(s) for s in array.shape)
    index = check_channels(np.arange(count) if channels is None else channels, count)
    n = int(index.size)
    layout = mosaic_layout(n, max(h, 1), max(w, 1), columns=columns, gap=gap)
    if n == 0 or h == 0 or w == 0:
        return _empty_figure(height, title)
    stack = np.asarray(array[index], dtype=np.float32)
    at_depth = "" if depth is None else f"z {int(depth)} · "
    where = f"{item_label} %{{customdata}}<br>{at_depth}x %{{x}} · y %{{y}}"
    if scale == "shared":
        lo, hi = zrange if zrange is not None else layer_range(array)
        payload = _shared_payload(stack, index, layout, (float(lo), float(hi)), diverging, where, value_label)
    elif scale == "channel":
        payload = _per_channel_payload(stack, index, layout, diverging, where, value_label)
    else:
        raise ValueError(f"scale must be 'shared' or 'channel', not {scale!r}")
    x_labels = axis_labels(layout.columns, w, gap)
    y_labels = axis_labels(layout.rows, h, gap)
    fig = go.Figure()
    fig.add_trace(
        go.Heatmap(
            z=payload.z,
            x=x_labels,
            y=y_labels,
            customdata=payload.customdata,
            hovertemplate=payload.hovertemplate,
            hoverongaps=False,
            colorscale=resolve_colorscale(colorscale, diverging),
            zmin=payload.zmin,
            zmax=payload.zmax,
            colorbar=colorbar_spec(colorbar_title or payload.colorbar),
            name="channels",
        )
    )
    one_pixel = stack.reshape(n, -1)[:, 0] if h == 1 and w == 1 else None
    fig.add_trace(
        _tiles_trace(
            layout,
            index,
            x_labels,
            y_labels,
            labels=labels,
            values=one_pixel,
            dark_text=diverging,
            item_label=item_label,
        )
    )
    _frame(fig, layout, height=height, title=title, diverging=diverging, uirevision=uirevision)
    return fig


@dataclass(frozen=True)
class _Payload:
    """What the mosaic's heatmap carries: colours (``z``), hover data, the colour range and the bar's title."""

    z: np.ndarray
    customdata: np.ndarray
    hovertemplate: str
    zmin: float
    zmax: float
    colorbar: str


def _shared_payload(stack: np.ndarray, index: np.ndarray, layout: MosaicLayout, zrange: tuple[float, float],
                    diverging: bool, where: str, value_label: str) -> _Payload:
    """One colour scale for the layer: ``z`` the raw values, ``customdata`` the channel (the smallest unsigned
    type that holds it; its largest value marks the gaps)."""
    n, h, w = stack.shape
    zmin, zmax = safe_range(zrange[0], zrange[1], diverging)
    dtype = index_dtype(int(index.max()))
    channel_tiles = np.broadcast_to(index[:, None, None], (n, h, w)).astype(dtype)
    return _Payload(
        z=tile_stack(stack, layout, np.float32(np.nan)),
        customdata=tile_stack(channel_tiles, layout, MAX_UINT[dtype]),
        hovertemplate=f"{where}<br>{value_label} %{{z:{VALUE_FORMAT}}}<extra></extra>",
        zmin=zmin,
        zmax=zmax,
        colorbar="activation (one scale for the whole layer)",
    )


def _per_channel_payload(stack: np.ndarray, index: np.ndarray, layout: MosaicLayout, diverging: bool, where: str,
                         value_label: str) -> _Payload:
    """Each tile on its own scale: ``z`` 0..1 (or -1..1), ``customdata`` (channel, raw value) float32 pairs."""
    n, h, w = stack.shape
    channel_tiles = np.broadcast_to(index[:, None, None], (n, h, w))
    pairs = np.stack([channel_tiles.astype(np.float32), stack], axis=-1)
    customdata = tile_stack(pairs, layout, np.float32(np.nan))
    customdata[..., 0][np.isnan(customdata[..., 0])] = -1
    where = where.replace("%{customdata}", "%{customdata[0]}")
    return _Payload(
        z=tile_stack(_per_channel(stack, diverging), layout, np.float32(np.nan)),
        customdata=customdata,
        hovertemplate=(
            f"{where}<br>{value_label} %{{customdata[1]:{VALUE_FORMAT}}}"
            "<br>colour position %{z:.3f}<extra></extra>"
        ),
        zmin=-1.0 if diverging else 0.0,
        zmax=1.0,
        colorbar=(
            "per channel: -1 / 1 = the channel's largest size, 0 = zero"
            if diverging
            else "per channel: 0 = the channel's lowest, 1 = its highest"
        ),
    )


def _empty_figure(height: int | None, title: str | None) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text="No channels to show", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=height or 200, **title_spec(title))
    return fig


def _frame(fig: go.Figure, layout: MosaicLayout, *, height: int | None, title: str | None, diverging: bool,
           uirevision: str) -> None:
    """Size, margins, hover behaviour and fixed image axes of a mosaic."""
    fig.update_layout(
        height=height or int(min(900, max(320, 120 + layout.rows * 96))),
        margin=margin_for(bool(title)),
        uirevision=uirevision,
        hovermode="closest",
        hoverdistance=4,
        showlegend=False,
        # gaps show the background: the page's for sequential scales, grey where white means zero
        plot_bgcolor="rgb(190,190,190)" if diverging else "rgba(0,0,0,0)",
        **title_spec(title),
    )
    image_axes(fig, categories=True)
    # Fixed ranges (category axes count in categories): autorange would pad for the click targets'
    # markers and text, leaving a band on one side and clipping the other (seen in Chromium).
    fig.update_xaxes(range=[-0.5, layout.width - 0.5], autorange=False)
    fig.update_yaxes(range=[layout.height - 0.5, -0.5], autorange=False)


def _tiles_trace(
    layout: MosaicLayout,
    index: np.ndarray,
    x_labels: list[str],
    y_labels: list[str],
    *,
    labels: bool,
    values: np.ndarray | None = None,
    dark_text: bool = False,
    item_label: str = "channel",
) -> go.Scatter:
    """Transparent click targets, each under its channel number near the tile's top-left corner.

    Not at the tile centre: Plotly's "closest" hover prefers a scatter point to the heatmap within
    (marker radius + ``hoverdistance``) screen pixels of it, which would hide the values of the middle of
    every tile (seen in Chromium). The number is offset into the tile by half its width (font size 11)
    plus a little, for a mosaic drawn some 800 pixels wide. ``values`` (for 1×1 tiles) puts the value in
    the target's hover. ``dark_text`` for diverging scales (white = 0).
    """
    px_per_cell = 800 / max(layout.width, layout.height, 1)
    digits = len(str(int(index.max())))
    ox = min(layout.tile_w - 1, round((3.3 * digits + 3) / px_per_cell))  # half a label + a little
    oy = min(layout.tile_h - 1, round(8 / px_per_cell))
    origins = layout.origins()
    xs = [x_labels[int(c) + ox] for c in origins[:, 1]]
    ys = [y_labels[int(r) + oy] for r in origins[:, 0]]
    if values is not None:
        hovertext = [
            f"{item_label} {int(c)}: value {np.float32(v)!s}<br>click to open it"  # str: shortest exact float32
            for c, v in zip(index, values, strict=True)
        ]
    else:
        hovertext = [f"{item_label} {int(c)}: click to open it" for c in index]
    ink, halo = ("black", "white") if dark_text else ("white", "black")
    return go.Scatter(
        x=xs,
        y=ys,
        customdata=index.astype(index_dtype(int(index.max()))),
        text=[str(int(c)) for c in index] if labels else None,
        hovertext=hovertext,
        mode="markers+text" if labels else "markers",
        textposition="middle center",
        textfont={"size": 11, "color": ink, "shadow": f"0px 0px 2px {halo}"},
        marker={"size": 16, "symbol": "square", "color": "rgba(0,0,0,0)"},
        selected={"marker": {"color": "rgba(0,0,0,0)"}, "textfont": {"color": ink}},
        unselected={"marker": {"opacity": 0}, "textfont": {"color": ink}},
        hovertemplate="%{hovertext}<extra></extra>",
        name=TILES_TRACE_NAME,
        cliponaxis=False,
        showlegend=False,
    )


def _as_int(value: Any) -> int | None:
    while isinstance(value, list | tuple) and value:
        value = value[0]
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number < 0 or number != int(number):
        return None
    return int(number)


def channel_from_selection(event_or_points: Any) -> int | None:
    """The channel a user clicked in a mosaic shown with ``st.plotly_chart(..., on_select="rerun")``.

    Accepts the returned event (``{"selection": {"points": [...]}}``; Streamlit's ``PlotlyState`` is a
    dict), the selection, or the list of points. Each point carries ``customdata``: a number, or a list
    whose first item is the channel (per-channel heatmap points). Points of later traces (the ``"tiles"``
    trace comes last) are preferred; with several tiles selected (box or lasso), the first one wins.
    Returns None when nothing usable was selected.
    """
    if event_or_points is None:
        return None
    selection = event_or_points
    if isinstance(selection, Mapping) and "selection" in selection:
        selection = selection["selection"]
    points = selection.get("points") or [] if isinstance(selection, Mapping) else selection
    if not isinstance(points, Sequence) or isinstance(points, str):
        return None
    ordered = sorted(
        (p for p in points if isinstance(p, Mapping)),
        key=lambda p: -int(p.get("curve_number", p.get("curveNumber", 0)) or 0),
    )
    for point in ordered:
        channel = _as_int(point.get("customdata"))
        if channel is not None:
            return channel
    return None


# ---------------------------------------------------------------------------------------------------
# One channel


@with_plain_numbers
def channel_figure(
    map2d: np.ndarray,
    *,
    colorscale: str | Sequence[Any] | None = None,
    zrange: tuple[float, float] | None = None,
    title: str | None = None,
    diverging: bool = False,
    colorbar_title: str = "activation",
    height: int | None = None,
    uirevision: str = UIREVISION,
) -> go.Figure:
    """One channel at full resolution; hover gives x (column), y (row) and the exact value.

    ``zrange`` fixes the colour range (pass :func:`layer_range` of the layer to keep the mosaic's
    colours); by default it is the map's own lowest..highest value.
    """
    array = np.ascontiguousarray(as_map2d(map2d), dtype=np.float32)
    found = finite_minmax(array) or (0.0, 0.0)
    lo, hi = zrange if zrange is not None else found
    zmin, zmax = safe_range(float(lo), float(hi), diverging)
    fig = go.Figure(
        go.Heatmap(
            z=array,
            colorscale=resolve_colorscale(colorscale, diverging),
            zmin=zmin,
            zmax=zmax,
            hovertemplate=f"x %{{x}} · y %{{y}}<br>value %{{z:{VALUE_FORMAT}}}<extra></extra>",
            hoverongaps=False,
            colorbar=colorbar_spec(colorbar_title),
        )
    )
    fig.update_layout(
        height=height or 480, margin=margin_for(bool(title)), uirevision=uirevision, **title_spec(title)
    )
    image_axes(fig)
    return fig
