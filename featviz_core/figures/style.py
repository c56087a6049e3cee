"""Shared pieces of featviz's Plotly figures: colour scales, value ranges, number formats, axes, titles.

The figures themselves are in :mod:`featviz_core.figures` (the public module), which re-exports these names.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import plotly.colors as pcolors
import plotly.graph_objects as go

from ..errors import LayerError

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
MAX_UINT = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535, np.dtype(np.uint32): 2**32 - 1}
UIREVISION = "featviz"
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


def with_plain_numbers(build: Callable[..., go.Figure]) -> Callable[..., go.Figure]:
    """Decorator: :func:`plain_numbers` on the figure ``build`` returns."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> go.Figure:
        return plain_numbers(build(*args, **kwargs))

    return wrapper


def resolve_colorscale(name: str | Sequence[Any] | None, diverging: bool = False) -> str | Sequence[Any]:
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


def stop_rgb(colour: str) -> tuple[float, float, float]:
    """A colour scale's stop colour, '#rrggbb', 'rgb(r, g, b)' or 'rgba(r, g, b, a)' (alpha ignored) -> (r, g, b)."""
    text = colour.strip()
    if text.startswith("#"):
        r, g, b = pcolors.hex_to_rgb(text)
        return float(r), float(g), float(b)
    r, g, b = (float(part) for part in text[text.index("(") + 1 : text.rindex(")")].split(",")[:3])
    return r, g, b


def faded_colorscale(colorscale: str | Sequence[Any], diverging: bool) -> list[list[Any]]:
    """``colorscale`` with transparency where the map is weak, so the image shows through there.

    Sequential scales: fully transparent at the low end, opaque from 40 % of the range up. Diverging scales:
    transparent at the centre (zero), opaque towards both ends.
    """
    stops = pcolors.get_colorscale(colorscale) if isinstance(colorscale, str) else [list(s) for s in colorscale]
    faded = []
    for position, colour in stops:
        r, g, b = (int(v) for v in stop_rgb(colour))
        weight = abs(position - 0.5) * 2 if diverging else position
        alpha = min(1.0, weight / 0.4)
        faded.append([position, f"rgba({r},{g},{b},{alpha:.3f})"])
    return faded


def finite_minmax(values: np.ndarray) -> tuple[float, float] | None:
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
    found = finite_minmax(maps)
    return found if found is not None else (0.0, 0.0)


def safe_range(lo: float, hi: float, diverging: bool) -> tuple[float, float]:
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


def axis_labels(groups: int, size: int, gap: int) -> list[str]:
    """Unique category labels along one mosaic axis that read as the coordinate inside the tile."""
    labels: list[str] = []
    for g in range(groups):
        suffix = _suffix(g)
        labels.extend(f"{i}{suffix}" for i in range(size))
        if g < groups - 1:
            labels.extend(f"{_ZW_GAP}{suffix}{_ZW_GAP * (k + 1)}" for k in range(gap))
    return labels


def index_dtype(max_channel: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_channel < MAX_UINT[np.dtype(dtype)]:
            return np.dtype(dtype)
    raise LayerError(f"Channel index {max_channel} is too large to draw.")


def as_maps(maps: np.ndarray) -> np.ndarray:
    array = np.asarray(maps)
    if array.ndim != 3:
        raise LayerError(
            f"Expected feature maps of shape (channels, height, width), got {tuple(array.shape)}. "
            "Choose a layer whose output is a spatial feature map (see list_layers(model))."
        )
    return array


def as_map2d(map2d: np.ndarray) -> np.ndarray:
    array = np.asarray(map2d)
    if array.ndim != 2:
        raise LayerError(f"Expected one channel's map of shape (height, width), got {tuple(array.shape)}.")
    return array


def check_channels(channels: Sequence[int] | np.ndarray, count: int, what: str = "channel") -> np.ndarray:
    index = np.asarray(channels, dtype=np.int64).reshape(-1)
    if index.size and (index.min() < 0 or index.max() >= count):
        bad = int(index[(index < 0) | (index >= count)][0])
        raise LayerError(
            f"There is no {what} {bad}: this layer has {count} {what}s, numbered 0 to {count - 1}."
        )
    return index


def title_spec(title: str | None, subtitle: str | None = None) -> dict[str, Any]:
    if not title and not subtitle:
        return {}
    spec: dict[str, Any] = {"text": title or "", "x": 0, "xanchor": "left", "font": {"size": 15}}
    if subtitle:
        spec["subtitle"] = {"text": subtitle, "font": {"size": 12}}
    return {"title": spec}


def image_axes(fig: go.Figure, *, categories: bool = False) -> None:
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


def colorbar_spec(title: str) -> dict[str, Any]:
    return {"title": {"text": title, "side": "right"}, "thickness": 14, "outlinewidth": 0}


def margin_for(has_title: bool, subtitle: bool = False) -> dict[str, int]:
    return {"l": 4, "r": 4, "b": 4, "t": 64 if subtitle else (40 if has_title else 8)}
