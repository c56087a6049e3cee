"""Figures for volumes and clips: one plane of a scan, where the other planes cut it, a clip's filmstrip.

:func:`plane_figure` draws any 2-D picture in millimetres' proportions (a slice of a
:class:`~featviz_core.images.Volume`, or later a feature map or a CAM at that slice): one float32
``go.Heatmap`` (the slice only, never the volume), grey between a display window's bounds by default, with
a hover that names the plane, the slice, the row, the column and the exact value in the volume's units.
:func:`cut_lines` says where the two other planes cross a plane on screen (the crosshair), following
:meth:`Volume.slice`'s radiological display. :func:`frame_figure` draws a colour frame of a clip and
:func:`filmstrip_figure` a row of a clip's frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..images.volume import PLANES, Volume
from .style import (
    NUMBER_FORMAT,
    UIREVISION,
    VALUE_FORMAT,
    colorbar_spec,
    faded_colorscale,
    finite_minmax,
    margin_for,
    resolve_colorscale,
    safe_range,
    title_spec,
    with_plain_numbers,
)

__all__ = [
    "GREY",
    "ORIENTATION",
    "PLANE_COLOURS",
    "cut_lines",
    "filmstrip_figure",
    "filmstrip_indices",
    "frame_figure",
    "plane_figure",
    "window_range",
]

ORIENTATION: dict[str, tuple[str, str, str, str]] = {
    "axial": ("A", "P", "R", "L"),
    "coronal": ("S", "I", "R", "L"),
    "sagittal": ("S", "I", "A", "P"),
}
"""The patient's side at the (top, bottom, left, right) edge of each plane of :meth:`Volume.slice`: anterior,
posterior, right, left, superior, inferior (radiological display: the patient's right on the left)."""

GREY = "Greys_r"
"""Black (low) to white (high): the usual way to show a scan."""

PLANE_COLOURS: dict[str, str] = {"axial": "#e8453c", "coronal": "#3cb44b", "sagittal": "#f2c12e"}
"""One colour per plane (red, green, yellow, as in 3D Slicer): a plane's frame and its line in the others."""


def window_range(window: tuple[float, float]) -> tuple[float, float]:
    """``(level, width)`` -> the (lowest, highest) value of the grey scale: ``level ± width / 2``."""
    level, width = (float(v) for v in window)
    return level - width / 2, level + width / 2


def cut_lines(volume: Volume, plane: str, indices: dict[str, int]) -> tuple[int, int]:
    """Where the two other planes cut ``plane``'s picture: (row of the horizontal line, column of the vertical
    one), in the coordinates of ``volume.slice(plane, ...)``. ``indices`` holds each plane's slice index.

    :meth:`Volume.slice` shows a volume flipped along both remaining axes (anterior and superior at the top,
    the patient's right on the left), so an index ``i`` along an axis of ``n`` voxels is at ``n - 1 - i``.
    The crossing of the two lines is the voxel the three planes share.
    """
    depth, height, width = volume.shape3d
    z, y, x = indices["axial"], indices["coronal"], indices["sagittal"]
    flip = volume.kind == "volume"

    def at(i: int, n: int) -> int:
        return n - 1 - i if flip else i

    if plane == "axial":
        return at(y, height), at(x, width)
    if plane == "coronal":
        return at(z, depth), at(x, width)
    if plane == "sagittal":
        return at(z, depth), at(y, height)
    raise ValueError(f"plane must be one of {', '.join(PLANES)}, not {plane!r}")


def _crosshair(shape: tuple[int, int], at: tuple[int, int], colours: tuple[str, str]) -> list[dict[str, Any]]:
    """A horizontal line at row ``at[0]`` and a vertical one at column ``at[1]`` across a picture of ``shape``
    (layout shapes: nothing is added to the data sent)."""
    (rows, columns), (row, column) = shape, at
    common = {"type": "line", "xref": "x", "yref": "y", "layer": "above", "opacity": 0.8}
    return [
        {**common, "x0": -0.5, "x1": columns - 0.5, "y0": row, "y1": row, "line": {"color": colours[0], "width": 1}},
        {**common, "x0": column, "x1": column, "y0": -0.5, "y1": rows - 0.5, "line": {"color": colours[1], "width": 1}},
    ]


def _plane_axes(rows: int, columns: int, aspect: float, frame: str | None) -> dict[str, Any]:
    """Layout of a picture: row 0 on top, ``aspect`` = row spacing / column spacing, no ticks, a coloured frame.
    (One layout dict: Plotly's ``update_*axes`` calls cost more than the rest of the figure.)"""
    common: dict[str, Any] = {"showticklabels": False, "showgrid": False, "zeroline": False, "ticks": "",
                              "constrain": "domain", "showline": False}
    layout: dict[str, Any] = {
        "xaxis": {**common, "range": [-0.5, columns - 0.5]},
        "yaxis": {**common, "range": [rows - 0.5, -0.5], "scaleanchor": "x", "scaleratio": aspect},
        "shapes": [],
    }
    if frame is not None:  # a rectangle on the axes' domain: the picture's own edges once its proportions are kept
        layout["shapes"].append({"type": "rect", "xref": "x domain", "yref": "y domain", "x0": 0, "x1": 1, "y0": 0,
                                 "y1": 1, "line": {"color": frame, "width": 3}, "layer": "above"})
    return layout


def _side_letters(sides: tuple[str, str, str, str]) -> list[dict[str, Any]]:
    """Letters just inside the picture's top, bottom, left and right edges (placed on the axes' domain, which is
    the picture itself once its proportions are kept)."""
    places = [(0.5, 1.0, "center", "top"), (0.5, 0.0, "center", "bottom"), (0.0, 0.5, "left", "middle"),
              (1.0, 0.5, "right", "middle")]
    return [
        {"text": f"<b>{letter}</b>", "x": x, "y": y, "xref": "x domain", "yref": "y domain", "xanchor": xa,
         "yanchor": ya, "showarrow": False, "font": {"color": "#ffd54f", "size": 13}, "xshift": 0, "yshift": 0}
        for letter, (x, y, xa, ya) in zip(sides, places, strict=True)
    ]


@with_plain_numbers
def plane_figure(
    slice2d: np.ndarray,
    spacing: tuple[float, float] = (1.0, 1.0),
    *,
    plane: str = "axial",
    index: int | None = None,
    window: tuple[float, float] | None = None,
    zrange: tuple[float, float] | None = None,
    colorscale: str | Sequence[Any] | None = GREY,
    units: str | None = None,
    value_label: str = "value",
    crosshair: tuple[int, int] | None = None,
    sides: tuple[str, str, str, str] | None = None,
    title: str | None = None,
    height: int = 420,
    showscale: bool = False,
    uirevision: str = UIREVISION,
    overlay: np.ndarray | None = None,
    overlay_label: str = "Grad-CAM",
    overlay_opacity: float = 0.8,
) -> go.Figure:
    """One plane of a scan (or any (rows, columns) map at that slice) with its true proportions.

    ``spacing`` is (row, column) in mm (:meth:`Volume.slice_spacing`): a 3 mm × 1 mm pixel is drawn three
    times taller than wide. The colours run over ``window`` (level, width: values outside take the end
    colours, as on a scanner's screen) or ``zrange``, else the picture's own range. Hover: plane, slice,
    row, column and the exact value followed by ``units``. ``crosshair`` = (row, column) draws where the
    other planes cut (see :func:`cut_lines`), in their colours. ``sides`` = letters shown inside the
    (top, bottom, left, right) edges, e.g. ``ORIENTATION[plane]``. A ``plane`` not in
    :data:`PLANES` (e.g. "frame") names the picture in the hover: "frame 12". ``overlay`` (same shape, values
    0..1, e.g. a CAM upsampled to the scan) is laid over the plane in Turbo, see-through where it is weak, at
    ``overlay_opacity``; the hover then gives both numbers.
    """
    array = np.ascontiguousarray(slice2d, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"plane_figure needs a (rows, columns) picture, not {array.shape}")
    rows, columns = array.shape
    if window is not None:
        lo, hi = window_range(window)
    elif zrange is not None:
        lo, hi = zrange
    else:
        lo, hi = finite_minmax(array) or (0.0, 1.0)
    zmin, zmax = safe_range(float(lo), float(hi), diverging=False)
    where = plane if index is None else f"{plane} · slice {index}" if plane in PLANES else f"{plane} {index}"
    unit = f" {units}" if units else ""
    hover = f"{where}<br>row %{{y}} · column %{{x}}<br>{value_label} %{{z:{VALUE_FORMAT}}}{unit}<extra></extra>"
    heatmap: dict[str, Any] = {
        "type": "heatmap", "z": array, "colorscale": resolve_colorscale(colorscale), "zmin": zmin, "zmax": zmax,
        "hovertemplate": hover, "hoverongaps": False, "showscale": showscale, "name": plane,
    }
    if showscale:
        heatmap["colorbar"] = {**colorbar_spec(f"{value_label}{unit}"), "tickformat": NUMBER_FORMAT,
                               "exponentformat": "e"}
    row_mm, column_mm = (float(s) if s and s > 0 else 1.0 for s in spacing)
    layout = _plane_axes(rows, columns, row_mm / column_mm, PLANE_COLOURS.get(plane))
    if crosshair is not None:
        others = [p for p in PLANES if p != plane]  # the horizontal line is the first other plane's cut
        layout["shapes"] += _crosshair((rows, columns), crosshair, (PLANE_COLOURS[others[0]], PLANE_COLOURS[others[1]]))
    if sides is not None:
        layout["annotations"] = _side_letters(sides)
    layout.update(height=height, margin=margin_for(bool(title)), uirevision=f"{uirevision}:{plane}",
                  plot_bgcolor="black", **title_spec(title))
    data = [heatmap]
    if overlay is not None:
        top = np.ascontiguousarray(overlay, dtype=np.float32)
        if top.shape != array.shape:
            raise ValueError(f"the overlay {top.shape} must have the plane's shape {array.shape}")
        heatmap["hoverinfo"] = "skip"
        heatmap.pop("hovertemplate")
        data.append({
            "type": "heatmap", "z": top, "customdata": array, "zmin": 0.0, "zmax": 1.0, "opacity": overlay_opacity,
            "colorscale": faded_colorscale("Turbo", diverging=False), "showscale": showscale,
            "name": f"{plane} {overlay_label}", "hoverongaps": False,
            "hovertemplate": (f"{where}<br>row %{{y}} · column %{{x}}<br>{overlay_label} %{{z:{VALUE_FORMAT}}}"
                              f"<br>{value_label} %{{customdata:{VALUE_FORMAT}}}{unit}<extra></extra>"),
        })
        if showscale:
            heatmap["showscale"] = False
            data[1]["colorbar"] = {**colorbar_spec(f"{overlay_label} (0–1)"), "tickformat": NUMBER_FORMAT}
    return go.Figure({"data": data, "layout": layout})


@with_plain_numbers
def frame_figure(
    frame: np.ndarray,
    *,
    index: int | None = None,
    title: str | None = None,
    height: int = 480,
    uirevision: str = UIREVISION,
) -> go.Figure:
    """One colour frame of a clip, (rows, columns, 3) with values 0..255; hover gives frame, row, column and
    the red, green and blue values. (A grey frame goes through :func:`plane_figure`.)"""
    array = np.ascontiguousarray(np.clip(np.rint(frame), 0, 255), dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"frame_figure needs a (rows, columns, 3) picture, not {array.shape}")
    where = "frame" if index is None else f"frame {index}"
    fig = go.Figure(go.Image(
        z=array,
        hovertemplate=f"{where}<br>row %{{y}} · column %{{x}}<br>red %{{z[0]}} · green %{{z[1]}} · "
                      "blue %{z[2]}<extra></extra>",
    ))  # fmt: skip
    rows, columns = array.shape[:2]
    fig.update_layout(**_plane_axes(rows, columns, 1.0, None), height=height, margin=margin_for(bool(title)),
                      uirevision=f"{uirevision}:frame", **title_spec(title))
    return fig


def filmstrip_indices(count: int, frames: int = 8) -> list[int]:
    """``frames`` evenly spaced frame numbers of a clip of ``count`` frames, first and last included."""
    if count <= 0:
        return []
    if count <= frames:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, frames)})


@with_plain_numbers
def filmstrip_figure(
    frames: Sequence[np.ndarray],
    indices: Sequence[int],
    *,
    window: tuple[float, float] | None = None,
    current: int | None = None,
    height: int = 150,
) -> go.Figure:
    """A row of small frames, each titled with its frame number (``current``'s title in bold). Grey frames
    use ``window``'s grey scale and hover their exact value; colour frames (rows, columns, 3) their RGB."""
    count = len(frames)
    fig = make_subplots(rows=1, cols=max(count, 1), horizontal_spacing=0.01,
                        subplot_titles=[f"<b>{i}</b>" if i == current else str(i) for i in indices])
    lo, hi = window_range(window) if window is not None else (0.0, 255.0)
    for k, (frame, number) in enumerate(zip(frames, indices, strict=True)):
        picture = np.asarray(frame)
        if picture.ndim == 3:
            trace: Any = go.Image(z=np.ascontiguousarray(np.clip(np.rint(picture), 0, 255), dtype=np.uint8),
                                  hovertemplate=f"frame {number}<extra></extra>")
        else:
            trace = go.Heatmap(z=np.ascontiguousarray(picture, dtype=np.float32), colorscale=GREY, zmin=lo,
                               zmax=hi, showscale=False,
                               hovertemplate=f"frame {number}<br>value %{{z:{VALUE_FORMAT}}}<extra></extra>")
        fig.add_trace(trace, row=1, col=k + 1)
        suffix = "" if k == 0 else str(k + 1)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{suffix}", scaleratio=1, row=1, col=k + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", constrain="domain")
    fig.update_annotations(font_size=11)
    fig.update_layout(height=height, margin={"l": 4, "r": 4, "b": 4, "t": 24}, showlegend=False)
    return fig
