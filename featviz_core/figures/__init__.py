"""Plotly figures for feature maps, overlays, histograms, class probabilities and convolution filters.

Only ``plotly.graph_objects`` is used (no Streamlit). The central piece is :func:`mosaic_figure`: every
channel of a page drawn as tiles of ONE ``go.Heatmap`` with NaN gaps between them, which builds and draws
far faster than one subplot per channel.

This module is the public face; the code lives in :mod:`~featviz_core.figures.style` (colour scales, ranges,
number formats, axes), :mod:`~featviz_core.figures.mosaic` (the mosaic, clicks on it, one channel) with
:mod:`~featviz_core.figures.grid` (its geometry), :mod:`~featviz_core.figures.charts` (overlay, histogram,
probabilities), :mod:`~featviz_core.figures.filters` (convolution filters) and :mod:`~featviz_core.figures.volume`
(planes of a volume with their crosshair, a clip's frames and filmstrip).

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

from .charts import (
    histogram_figure,
    overlay_figure,
    probability_figure,
)
from .filters import (
    filter_mosaic_figure,
    kernel_maps,
    rgb_filters_figure,
)
from .grid import MosaicLayout, mosaic_layout
from .mosaic import (
    channel_figure,
    channel_from_selection,
    mosaic_figure,
)
from .style import (
    COLORSCALES,
    DIVERGING,
    DIVERGING_COLORSCALES,
    NUMBER_FORMAT,
    TILES_TRACE_NAME,
    VALUE_FORMAT,
    layer_range,
    plain_numbers,
)
from .volume import (
    GREY,
    ORIENTATION,
    PLANE_COLOURS,
    cut_lines,
    filmstrip_figure,
    filmstrip_indices,
    frame_figure,
    plane_figure,
    window_range,
)

__all__ = [
    "COLORSCALES",
    "GREY",
    "ORIENTATION",
    "PLANE_COLOURS",
    "DIVERGING",
    "DIVERGING_COLORSCALES",
    "NUMBER_FORMAT",
    "TILES_TRACE_NAME",
    "VALUE_FORMAT",
    "MosaicLayout",
    "channel_figure",
    "channel_from_selection",
    "cut_lines",
    "filmstrip_figure",
    "filmstrip_indices",
    "filter_mosaic_figure",
    "frame_figure",
    "histogram_figure",
    "kernel_maps",
    "layer_range",
    "mosaic_figure",
    "mosaic_layout",
    "overlay_figure",
    "plain_numbers",
    "plane_figure",
    "probability_figure",
    "rgb_filters_figure",
    "window_range",
]
