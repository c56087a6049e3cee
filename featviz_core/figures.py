"""Plotly figures for feature maps, overlays, histograms, class probabilities and convolution filters.

Only ``plotly.graph_objects`` is used (no Streamlit). The central piece is :func:`mosaic_figure`: every
channel of a page drawn as tiles of ONE ``go.Heatmap`` with NaN gaps between them, which builds and draws
far faster than one subplot per channel.

Payload. Plotly (>= 6) sends numpy arrays of float32 and small integer types as base64 binary
(``{"dtype": "f4", "bdata": ...}``), about 1.33 bytes on the wire per byte of data; lists and float16
fall back to slow JSON text. So every large array here is float32 or uint8/uint16 numpy.

Tile-local coordinates in the hover, without a per-pixel coordinate array: the mosaic's axes are
*category* axes whose labels are the coordinate inside the tile made unique per tile column (or row) with
invisible zero-width characters: ``"3"`` in the first tile column, ``"3\\u200b"`` in the second, ``"3\\u200c"``
in the third... Hover shows ``%{x}`` and ``%{y}``, which read as ``3``. The labels cost a few kilobytes
however many pixels there are. The channel under the cursor comes from ``customdata`` (one uint8 or
uint16 per pixel).

Verified in headless Chromium with plotly.js 4.1.1 (plotly.py 7.1), from ``fig.write_html`` pages and
from ``fig.to_json()`` specs (what Streamlit sends), by hovering pixels and reading the ``.hovertext``
element (``tests/test_figures.py::test_browser_*``):
the zero-width labels stay distinct categories and render invisibly, so the hover reads
"x 3 · y 5" in every tile; hover over a NaN gap shows nothing (``hoverongaps=False``); 3-D typed
arrays (``customdata`` of shape (H, W, 2)) are decoded, so ``%{customdata[1]}`` works; the ``.9~g``
format shows enough digits that the text parses back to the exact float32 value. In Streamlit 1.67,
clicking a tile's number returned ``{"selection": {"points": [{"curve_number": 1, "customdata": 241,
...}]}}``; clicking the heatmap itself returns no points.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import plotly.colors as pcolors
import plotly.graph_objects as go
from PIL import Image

from .errors import LayerError

__all__ = [
    "COLORSCALES",
    "DIVERGING",
    "DIVERGING_COLORSCALES",
    "NUMBER_FORMAT",
    "TILES_TRACE_NAME",
    "VALUE_FORMAT",
    "MosaicLayout",
    "channel_figure",
    "channel_from_selection",
    "filter_mosaic_figure",
    "histogram_figure",
    "kernel_maps",
    "layer_range",
    "mosaic_figure",
    "mosaic_layout",
    "overlay_figure",
    "plain_numbers",
    "probability_figure",
    "rgb_filters_figure",
]

COLORSCALES: dict[str, str] = {
    "Viridis (blue to yellow)": "Viridis",
    "Cividis (colour-blind friendly)": "Cividis",
    "Inferno (black to yellow)": "Inferno",
    "Magma (black to pale pink)": "Magma",
    "Plasma (blue to yellow)": "Plasma",
    "Greys (black to white)": "Greys_r",
    "Turbo (rainbow)": "Turbo",
}
"""Sequential colour scales: plain label -> Plotly name. Any of both may be passed as ``colorscale``."""

DIVERGING = "RdBu_r"
"""The diverging scale for signed values (differences, weights): blue below zero, white at 0, red above."""

DIVERGING_COLORSCALES: dict[str, str] = {
    "Blue - white - red (below / above zero)": "RdBu_r",
    "Purple - white - green": "PRGn",
    "Brown - white - teal": "BrBG",
}
"""Diverging colour scales (centred on zero): plain label -> Plotly name."""

VALUE_FORMAT = ".9~g"
"""d3 format for activation values in hovers: 9 significant digits, the fewest that always parse back to
the exact float32 value (8 digits fail for about 1 value in 80), trailing zeros trimmed."""

NUMBER_FORMAT = "~g"
"""d3 format of the tick numbers of every axis and colour bar: plain (0.25, 20000) or scientific (1.5e-7)
like the hovers', never Plotly's default SI suffixes ("150n" for 1.5e-7, "2k" for 2000), which read as
units."""

TILES_TRACE_NAME = "tiles"
"""Name of the mosaic's transparent click-target trace (``customdata`` = channel index)."""

_ZW = ("\u200b", "\u200c", "\u200d")  # zero-width space, non-joiner, joiner
_ZW_GAP = "\u2060"  # word joiner: prefix of the labels of gap rows/columns
_MAX_UINT = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535, np.dtype(np.uint32): 2**32 - 1}
_UIREVISION = "featviz"
_PLACEHOLDER = re.compile(r"#0000[0-4][0-9]", re.IGNORECASE)  # Streamlit's theme placeholders


# ---------------------------------------------------------------------------------------------------
# Small helpers


def plain_numbers(fig: go.Figure) -> go.Figure:
    """Give every axis and colour bar of ``fig`` tick numbers in :data:`NUMBER_FORMAT` (in place; returns
    ``fig``). Every figure of this module goes through it; figures built elsewhere can too."""
    ticks = {"tickformat": NUMBER_FORMAT, "exponentformat": "e"}
    fig.update_xaxes(**ticks)
    fig.update_yaxes(**ticks)
    for trace in fig.data:  # only the colour bars that are drawn: touching another one would draw it
        if "colorbar" in trace and trace.showscale is not False:
            trace.colorbar.update(ticks)
        marker = getattr(trace, "marker", None)
        if marker is not None and "colorbar" in marker and marker.showscale:
            marker.colorbar.update(ticks)
    fig.for_each_coloraxis(lambda axis: axis.colorbar.update(ticks) if axis.showscale is not False else None)
    return fig


def _plain_numbers(build: Callable[..., go.Figure]) -> Callable[..., go.Figure]:
    """Decorator: :func:`plain_numbers` on the figure ``build`` returns."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> go.Figure:
        return plain_numbers(build(*args, **kwargs))

    return wrapper


def _colorscale(name: str | Sequence[Any] | None, diverging: bool = False) -> str | Sequence[Any]:
    """A Plotly colour scale from a plain label, a Plotly name or a list; None -> the default."""
    if name is None:
        return DIVERGING if diverging else "Viridis"
    if isinstance(name, str):
        return _no_streamlit_placeholders(COLORSCALES.get(name, DIVERGING_COLORSCALES.get(name, name)))
    return name


def _no_streamlit_placeholders(name: str) -> str | list[list[Any]]:
    """``name``, or its stops with colours #000001–#000040 written as rgb().

    Streamlit's chart theme replaces those hex strings anywhere in a figure with its own colours (they are
    its placeholders), so Inferno and Magma, which start at #000004, showed their lowest values in pink.
    """
    try:
        stops = pcolors.get_colorscale(name)
    except Exception:  # not a Plotly name: let Plotly report it
        return name
    if not any(_PLACEHOLDER.fullmatch(colour) for _, colour in stops):
        return name
    return [
        [position, "rgb({},{},{})".format(*pcolors.hex_to_rgb(colour)) if _PLACEHOLDER.fullmatch(colour) else colour]
        for position, colour in stops
    ]


def _faded(colorscale: str | Sequence[Any], diverging: bool) -> list[list[Any]]:
    """``colorscale`` with transparency where the map is weak, so the image shows through there.

    Sequential scales: fully transparent at the low end, opaque from 40 % of the range up. Diverging scales:
    transparent at the centre (zero), opaque towards both ends.
    """
    stops = pcolors.get_colorscale(colorscale) if isinstance(colorscale, str) else [list(s) for s in colorscale]
    faded = []
    for position, colour in stops:
        if colour.startswith("#"):
            r, g, b = pcolors.hex_to_rgb(colour)
        else:
            r, g, b = (int(float(v)) for v in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3])
        weight = abs(position - 0.5) * 2 if diverging else position
        alpha = min(1.0, weight / 0.4)
        faded.append([position, f"rgba({r},{g},{b},{alpha:.3f})"])
    return faded


def _finite_minmax(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values, or None when there is none."""
    array = np.asarray(values)
    if array.size == 0:
        return None
    lo, hi = float(np.min(array)), float(np.max(array))
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return None
    return float(finite.min()), float(finite.max())


def layer_range(maps: np.ndarray) -> tuple[float, float]:
    """The (lowest, highest) finite value of a whole layer: the shared colour range of its mosaic.

    Compute it once per layer (over all channels, not the page shown) so paging never changes colours.
    """
    found = _finite_minmax(maps)
    return found if found is not None else (0.0, 0.0)


def _safe_range(lo: float, hi: float, diverging: bool) -> tuple[float, float]:
    """A colour range that is never empty: constant maps and all-zero layers still get a usable bar."""
    if diverging:
        m = max(abs(lo), abs(hi))
        if not math.isfinite(m) or m == 0:
            m = 1.0
        return -m, m
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi > lo:
        return lo, hi
    if lo == 0:
        return 0.0, 1.0  # an all-zero map shows as the lowest colour: "nothing fired"
    pad = abs(lo) * 0.5
    return lo - pad, hi + pad


def _suffix(j: int) -> str:
    """Bijective base-3 string of zero-width characters: 0 -> "", 1 -> ZW0, 2 -> ZW1, 3 -> ZW2, 4 -> ZW0 ZW0..."""
    out = ""
    while j > 0:
        j -= 1
        out = _ZW[j % 3] + out
        j //= 3
    return out


def _axis_labels(groups: int, size: int, gap: int) -> list[str]:
    """Unique category labels along one mosaic axis that read as the coordinate inside the tile."""
    labels: list[str] = []
    for g in range(groups):
        suffix = _suffix(g)
        labels.extend(f"{i}{suffix}" for i in range(size))
        if g < groups - 1:
            labels.extend(f"{_ZW_GAP}{suffix}{_ZW_GAP * (k + 1)}" for k in range(gap))
    return labels


def _index_dtype(max_channel: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_channel < _MAX_UINT[np.dtype(dtype)]:
            return np.dtype(dtype)
    raise LayerError(f"Channel index {max_channel} is too large to draw.")


def _as_maps(maps: np.ndarray) -> np.ndarray:
    array = np.asarray(maps)
    if array.ndim != 3:
        raise LayerError(
            f"Expected feature maps of shape (channels, height, width), got {tuple(array.shape)}. "
            "Choose a layer whose output is a spatial feature map (see list_layers(model))."
        )
    return array


def _as_map2d(map2d: np.ndarray) -> np.ndarray:
    array = np.asarray(map2d)
    if array.ndim != 2:
        raise LayerError(f"Expected one channel's map of shape (height, width), got {tuple(array.shape)}.")
    return array


def _check_channels(channels: Sequence[int] | np.ndarray, count: int, what: str = "channel") -> np.ndarray:
    index = np.asarray(channels, dtype=np.int64).reshape(-1)
    if index.size and (index.min() < 0 or index.max() >= count):
        bad = int(index[(index < 0) | (index >= count)][0])
        raise LayerError(
            f"There is no {what} {bad}: this layer has {count} {what}s, numbered 0 to {count - 1}."
        )
    return index


def _title(title: str | None, subtitle: str | None = None) -> dict[str, Any]:
    if not title and not subtitle:
        return {}
    spec: dict[str, Any] = {"text": title or "", "x": 0, "xanchor": "left", "font": {"size": 15}}
    if subtitle:
        spec["subtitle"] = {"text": subtitle, "font": {"size": 12}}
    return {"title": spec}


def _image_axes(fig: go.Figure, *, categories: bool = False) -> None:
    """Image orientation (row 0 on top), square pixels, no ticks."""
    common: dict[str, Any] = {
        "showticklabels": False,
        "showgrid": False,
        "zeroline": False,
        "ticks": "",
        "showline": False,
        "constrain": "domain",
    }
    if categories:
        common["type"] = "category"
    fig.update_xaxes(**common)
    fig.update_yaxes(**common, autorange="reversed", scaleanchor="x", scaleratio=1)


def _colorbar(title: str) -> dict[str, Any]:
    return {"title": {"text": title, "side": "right"}, "thickness": 14, "outlinewidth": 0}


def _margin(has_title: bool, subtitle: bool = False) -> dict[str, int]:
    return {"l": 4, "r": 4, "b": 4, "t": 64 if subtitle else (40 if has_title else 8)}


# ---------------------------------------------------------------------------------------------------
# Mosaic geometry


@dataclass(frozen=True)
class MosaicLayout:
    """Where each tile of a mosaic sits, in mosaic pixels (row 0 on top, column 0 on the left).

    Tile ``i`` is in grid row ``i // columns`` and grid column ``i % columns``; tiles are ``tile_h`` ×
    ``tile_w`` pixels with ``gap`` empty pixels between neighbours (none around the outside).
    """

    n_tiles: int
    tile_h: int
    tile_w: int
    rows: int
    columns: int
    gap: int

    @property
    def height(self) -> int:
        """Total mosaic height in pixels."""
        return self.rows * self.tile_h + max(self.rows - 1, 0) * self.gap

    @property
    def width(self) -> int:
        """Total mosaic width in pixels."""
        return self.columns * self.tile_w + max(self.columns - 1, 0) * self.gap

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the mosaic."""
        return self.height, self.width

    def origin(self, index: int) -> tuple[int, int]:
        """(row, column) of the top-left pixel of tile ``index``."""
        if not 0 <= index < self.n_tiles:
            raise IndexError(f"tile {index} is outside this mosaic of {self.n_tiles} tiles")
        r, c = divmod(index, self.columns)
        return r * (self.tile_h + self.gap), c * (self.tile_w + self.gap)

    def origins(self) -> np.ndarray:
        """(n_tiles, 2) int array of every tile's top-left (row, column)."""
        i = np.arange(self.n_tiles)
        return np.stack(
            [(i // self.columns) * (self.tile_h + self.gap), (i % self.columns) * (self.tile_w + self.gap)],
            axis=1,
        )

    def center(self, index: int) -> tuple[float, float]:
        """(row, column) of the centre of tile ``index`` (a half-integer for even tile sizes)."""
        top, left = self.origin(index)
        return top + (self.tile_h - 1) / 2, left + (self.tile_w - 1) / 2

    def tile_at(self, row_px: float, col_px: float) -> int | None:
        """Index of the tile under mosaic pixel (row, column); None in a gap or outside the mosaic."""
        if not (math.isfinite(row_px) and math.isfinite(col_px)):
            return None
        row, col = math.floor(row_px), math.floor(col_px)
        if not (0 <= row < self.height and 0 <= col < self.width):
            return None
        r, dr = divmod(row, self.tile_h + self.gap)
        c, dc = divmod(col, self.tile_w + self.gap)
        if dr >= self.tile_h or dc >= self.tile_w:
            return None
        index = r * self.columns + c
        return index if index < self.n_tiles else None


def mosaic_layout(
    n_tiles: int, tile_h: int, tile_w: int, columns: int | None = None, gap: int = 1
) -> MosaicLayout:
    """A near-square grid for ``n_tiles`` tiles of ``tile_h`` × ``tile_w`` pixels.

    Without ``columns``, the grid is chosen so the whole mosaic is roughly as wide as it is tall
    (8 × 8 for 64 square tiles), then balanced so the last row is as full as possible. Explicit
    ``columns`` are kept (at most ``n_tiles``).
    """
    if n_tiles < 0 or tile_h < 1 or tile_w < 1 or gap < 0:
        raise ValueError("mosaic_layout needs n_tiles >= 0, tiles of at least 1×1 pixel and gap >= 0")
    if n_tiles == 0:
        return MosaicLayout(0, tile_h, tile_w, 0, 0, gap)
    if columns is None:
        columns = math.ceil(math.sqrt(n_tiles * (tile_h + gap) / (tile_w + gap)))
        columns = max(1, min(columns, n_tiles))
        columns = math.ceil(n_tiles / math.ceil(n_tiles / columns))  # same rows, fewest columns
    columns = max(1, min(int(columns), n_tiles))
    rows = math.ceil(n_tiles / columns)
    return MosaicLayout(n_tiles, tile_h, tile_w, rows, columns, gap)


def _tile(stack: np.ndarray, layout: MosaicLayout, fill: Any) -> np.ndarray:
    """Arrange ``stack`` (n, h, w, *extra) as the mosaic (height, width, *extra), gaps set to ``fill``."""
    n, h, w = stack.shape[:3]
    extra = stack.shape[3:]
    g = layout.gap
    cells = layout.rows * layout.columns
    padded = np.full((cells, h + g, w + g, *extra), fill, dtype=stack.dtype)
    padded[:n, :h, :w] = stack
    grid = padded.reshape(layout.rows, layout.columns, h + g, w + g, *extra)
    grid = grid.swapaxes(1, 2).reshape(layout.rows * (h + g), layout.columns * (w + g), *extra)
    return np.ascontiguousarray(grid[: layout.height, : layout.width])


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


@_plain_numbers
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
    uirevision: str = _UIREVISION,
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
    ``item_label`` the tiles ("filter"...).
    """
    array = _as_maps(maps)
    count, h, w = (int(s) for s in array.shape)
    index = _check_channels(np.arange(count) if channels is None else channels, count)
    n = int(index.size)
    layout = mosaic_layout(n, max(h, 1), max(w, 1), columns=columns, gap=gap)
    fig = go.Figure()
    if n == 0 or h == 0 or w == 0:
        fig.add_annotation(
            text="No channels to show", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
        fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=height or 200, **_title(title))
        return fig

    stack = np.asarray(array[index], dtype=np.float32)
    x_labels = _axis_labels(layout.columns, w, gap)
    y_labels = _axis_labels(layout.rows, h, gap)
    channel_tiles = np.broadcast_to(index[:, None, None], (n, h, w))
    value_format = VALUE_FORMAT
    where = f"{item_label} %{{customdata}}<br>x %{{x}} · y %{{y}}"
    if scale == "shared":
        lo, hi = zrange if zrange is not None else layer_range(array)
        zmin, zmax = _safe_range(float(lo), float(hi), diverging)
        z = _tile(stack, layout, np.float32(np.nan))
        dtype = _index_dtype(int(index.max()))
        customdata: np.ndarray = _tile(channel_tiles.astype(dtype), layout, _MAX_UINT[dtype])
        hovertemplate = f"{where}<br>{value_label} %{{z:{value_format}}}<extra></extra>"
        bar = colorbar_title or "activation (one scale for the whole layer)"
    elif scale == "channel":
        zmin, zmax = (-1.0, 1.0) if diverging else (0.0, 1.0)
        z = _tile(_per_channel(stack, diverging), layout, np.float32(np.nan))
        pairs = np.stack([channel_tiles.astype(np.float32), stack], axis=-1)
        customdata = _tile(pairs, layout, np.float32(np.nan))
        customdata[..., 0][np.isnan(customdata[..., 0])] = -1
        where = where.replace("%{customdata}", "%{customdata[0]}")
        hovertemplate = (
            f"{where}<br>{value_label} %{{customdata[1]:{value_format}}}"
            "<br>colour position %{z:.3f}<extra></extra>"
        )
        bar = colorbar_title or (
            "per channel: -1 / 1 = the channel's largest size, 0 = zero"
            if diverging
            else "per channel: 0 = the channel's lowest, 1 = its highest"
        )
    else:
        raise ValueError(f"scale must be 'shared' or 'channel', not {scale!r}")

    fig.add_trace(
        go.Heatmap(
            z=z,
            x=x_labels,
            y=y_labels,
            customdata=customdata,
            hovertemplate=hovertemplate,
            hoverongaps=False,
            colorscale=_colorscale(colorscale, diverging),
            zmin=zmin,
            zmax=zmax,
            colorbar=_colorbar(bar),
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
    rows = layout.rows
    fig.update_layout(
        height=height or int(min(900, max(320, 120 + rows * 96))),
        margin=_margin(bool(title)),
        uirevision=uirevision,
        hovermode="closest",
        hoverdistance=4,
        showlegend=False,
        # gaps show the background: the page's for sequential scales, grey where white means zero
        plot_bgcolor="rgb(190,190,190)" if diverging else "rgba(0,0,0,0)",
        **_title(title),
    )
    _image_axes(fig, categories=True)
    # Fixed ranges (category axes count in categories): autorange would pad for the click targets'
    # markers and text, leaving a band on one side and clipping the other (seen in Chromium).
    fig.update_xaxes(range=[-0.5, layout.width - 0.5], autorange=False)
    fig.update_yaxes(range=[layout.height - 0.5, -0.5], autorange=False)
    return fig


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
        customdata=index.astype(_index_dtype(int(index.max()))),
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


@_plain_numbers
def channel_figure(
    map2d: np.ndarray,
    *,
    colorscale: str | Sequence[Any] | None = None,
    zrange: tuple[float, float] | None = None,
    title: str | None = None,
    diverging: bool = False,
    colorbar_title: str = "activation",
    height: int | None = None,
    uirevision: str = _UIREVISION,
) -> go.Figure:
    """One channel at full resolution; hover gives x (column), y (row) and the exact value.

    ``zrange`` fixes the colour range (pass :func:`layer_range` of the layer to keep the mosaic's
    colours); by default it is the map's own lowest..highest value.
    """
    array = np.ascontiguousarray(_as_map2d(map2d), dtype=np.float32)
    found = _finite_minmax(array) or (0.0, 0.0)
    lo, hi = zrange if zrange is not None else found
    zmin, zmax = _safe_range(float(lo), float(hi), diverging)
    fig = go.Figure(
        go.Heatmap(
            z=array,
            colorscale=_colorscale(colorscale, diverging),
            zmin=zmin,
            zmax=zmax,
            hovertemplate=f"x %{{x}} · y %{{y}}<br>value %{{z:{VALUE_FORMAT}}}<extra></extra>",
            hoverongaps=False,
            colorbar=_colorbar(colorbar_title),
        )
    )
    fig.update_layout(
        height=height or 480, margin=_margin(bool(title)), uirevision=uirevision, **_title(title)
    )
    _image_axes(fig)
    return fig


def _png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@_plain_numbers
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
    array = np.ascontiguousarray(_as_map2d(map2d), dtype=np.float32)
    mh, mw = array.shape
    rgb = image.convert("L").convert("RGB") if grey_image else image.convert("RGB")
    width, height_px = rgb.size
    dx, dy = width / mw, height_px / mh
    found = _finite_minmax(array) or (0.0, 0.0)
    lo, hi = zrange if zrange is not None else found
    zmin, zmax = _safe_range(float(lo), float(hi), diverging)
    cells = np.stack(np.meshgrid(np.arange(mw), np.arange(mh)), axis=-1).astype(_index_dtype(max(mw, mh)))
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
            colorscale=_faded(_colorscale(colorscale, diverging), diverging) if fade
            else _colorscale(colorscale, diverging),
            zmin=zmin,
            zmax=zmax,
            hovertemplate=(
                f"map cell x %{{customdata[0]}} · y %{{customdata[1]}}<br>value %{{z:{VALUE_FORMAT}}}"
                "<extra></extra>"
            ),
            hoverongaps=False,
            colorbar=_colorbar(colorbar_title),
            name="map",
        )
    )
    fig.update_layout(
        height=height or 520, margin=_margin(bool(title)), uirevision=_UIREVISION, **_title(title)
    )
    _image_axes(fig)
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


@_plain_numbers
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
    values = np.asarray(_as_map2d(map2d), dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    fig = go.Figure()
    if finite.size == 0:
        fig.add_annotation(
            text="No values to show", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
        fig.update_layout(height=height or 300, **_title(title))
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
        **_title(title),
    )
    return fig


@_plain_numbers
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
        fig.update_layout(height=height or 160, xaxis_visible=False, yaxis_visible=False, **_title(title))
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
        **_title(title),
    )
    return fig


# ---------------------------------------------------------------------------------------------------
# Convolution filters


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
    _check_channels([input_channel], array.shape[1], what="input channel")
    return np.ascontiguousarray(array[:, input_channel])


@_plain_numbers
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


@_plain_numbers
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
    index = _check_channels(np.arange(count) if channels is None else channels, count, what="filter")
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
            height=height or 200, xaxis_visible=False, yaxis_visible=False, **_title(title, subtitle)
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
                z=_tile(rgb[start:stop], part, np.uint8(255)).tolist(),
                customdata=_tile(info[start:stop], part, np.float32(np.nan)),
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
        margin=_margin(bool(title), subtitle=True),
        uirevision=_UIREVISION,
        plot_bgcolor="white",
        **_title(title, subtitle),
    )
    _image_axes(fig)
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
