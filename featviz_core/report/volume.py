"""The report of a 3-D model on a scan (the Volumes and clips page): the same one-file, offline HTML as
:func:`~featviz_core.report.html.report_html`, with the scan in three planes at the chosen slices.

The "include my image" rule holds for the scan: with ``include_scan=False`` no voxel of it is in the file (nor
its file name or description); the planes then show Grad-CAM on its own, on the scan's grid, and the report says
so. The layer's maps are the model's response to the scan, so early layers can still show its outlines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np

from .. import figures, stats
from ..cam.base import CamResult
from ..cam.resize import upsample
from ..images.volume import PLANES, Volume
from ..models.loaded import LoadedModel
from .html import SHOWN_CHANNELS, Charts, escape, footer, html_page, section_limits, top_table

__all__ = ["depth_index", "volume_report_html"]

TITLES = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}
PLANE_HEIGHT = 380


def depth_index(scan_slice: int, scan_depth: int, layer_depth: int) -> int:
    """The layer's depth index that covers the scan's axial slice ``scan_slice`` (the model sees the whole scan
    resampled to its input, and each layer's depth divides it evenly)."""
    return min(layer_depth - 1, scan_slice * layer_depth // max(scan_depth, 1))


def _planes(charts: Charts, volume: Volume, indices: Mapping[str, int], window: tuple[float, float],
            overlay: Volume | None, include_scan: bool, name: str) -> str:
    """The three planes side by side: the scan (with the map over it), or the map alone without the scan."""
    cells = []
    for plane in PLANES:
        index = int(indices[plane])
        spacing = volume.slice_spacing(plane)
        title = f"{TITLES[plane]} · slice {index}"
        if include_scan:
            fig = figures.plane_figure(
                volume.slice(plane, index), spacing, plane=plane, index=index, window=window, units=volume.units,
                overlay=None if overlay is None else overlay.slice(plane, index), sides=figures.ORIENTATION[plane],
                title=title, height=PLANE_HEIGHT, showscale=overlay is not None and plane == "sagittal",
                crosshair=figures.cut_lines(volume, plane, dict(indices)) if overlay is None else None,
            )
        else:
            assert overlay is not None
            fig = figures.plane_figure(
                overlay.slice(plane, index), spacing, plane=plane, index=index, zrange=(0.0, 1.0), colorscale="Turbo",
                value_label="Grad-CAM", sides=figures.ORIENTATION[plane], title=title, height=PLANE_HEIGHT,
                showscale=plane == "sagittal",
            )
        cells.append(f'<div style="flex:1 1 300px;min-width:260px">{charts.add(fig, f"{name}-{plane}")}</div>')
    return '<div class="row">' + "".join(cells) + "</div>"


def _section_scan(charts: Charts, volume: Volume, indices: Mapping[str, int], window: tuple[float, float],
                  include_scan: bool) -> str:
    head = "<h2>The scan at the chosen slices</h2>"
    if not include_scan:
        return head + (
            '<p class="note" id="no-image">Your scan is not in this file: you chose not to include it. No voxel '
            "of it, nor its file name or description, is stored here. The maps below are drawn on their own, on "
            "the scan's grid, not over the scan. Feature maps are the model's response to the scan, so those of "
            "early layers can still show its outlines.</p>"
        )
    level, width = window
    units = f" {volume.units}" if volume.units else ""
    where = ", ".join(f"{plane} {int(indices[plane])}" for plane in PLANES)
    return head + (
        f'<p class="sub">{escape(volume.description)} · slices {escape(where)} · window level {level:g}{units}, '
        f"width {width:g}{units}. The patient's right is on the left of the axial and coronal pictures; hover "
        "for exact values.</p>" + _planes(charts, volume, indices, window, None, True, "scan")
    )


def _section_model(model: LoadedModel, top_k: Sequence[tuple[str, float]]) -> str:
    size = "×".join(str(s) for s in model.input_shape[1:])
    return ("<h2>The model</h2><table>"
            f"<tr><th>name</th><td>{escape(model.name)}</td></tr>"
            f"<tr><th>where it comes from</th><td>{escape(model.provenance)}</td></tr>"
            f"<tr><th>input</th><td>{model.input_channels} channel(s), {size} (depth × height × width); the "
            "scan is resampled to it</td></tr>"
            f"<tr><th>identifier</th><td><code>{escape(model.key)}</code></td></tr></table>"
            "\n<h2>The model's guesses for this scan</h2>\n"
            + (top_table(top_k) if top_k else '<p class="note">This model does not output class scores.</p>'))


def _section_layer(charts: Charts, layer: str, maps: np.ndarray, depth: int, scan_slice: int) -> str:
    at = np.ascontiguousarray(maps[:, depth], dtype=np.float32)
    shown = [int(c) for c in stats.order_channels(stats.channel_stats(at), "mean")[:SHOWN_CHANNELS]]
    channels, layer_depth, height, width = maps.shape
    return (f"<h2>Layer {escape(layer)} at depth {depth} of {layer_depth}: its {len(shown)} strongest channels</h2>"
            f"<p>Of {channels} channels ({height}×{width} cells at each of {layer_depth} depths), the {len(shown)} "
            f"with the highest average at depth {depth}, which covers the scan's axial slice {scan_slice}, strongest "
            "first. One colour scale for the whole layer; hover for exact values.</p>\n"
            + charts.add(figures.mosaic_figure(at, shown, zrange=figures.layer_range(maps), depth=depth), "mosaic"))


def _section_cam(charts: Charts, volume: Volume, indices: Mapping[str, int], window: tuple[float, float],
                 cam: CamResult | None, note: str | None, include_scan: bool) -> str:
    head = "<h2>Where it looks, in three planes</h2>"
    if cam is None:
        return head + f'<p class="note">{escape(note or "Not computed.")}</p>'
    heat = upsample(cam.normalized, volume.shape3d)
    overlay = Volume(array=heat, spacing=volume.spacing, kind="volume", modality=None, window=None, description="")
    cells = "×".join(str(s) for s in cam.shape)
    text = (f"<p>Grad-CAM of “{escape(cam.class_name)}” at layer <b>{escape(cam.layer)}</b> ({cells} cells, depth × "
            "height × width), stretched over the scan: 0 = no push towards this class, 1 = the strongest push"
            + (", see-through where it is weak." if include_scan else ".") + "</p>")
    return head + text + _planes(charts, volume, indices, window, overlay, include_scan, "cam")


def volume_report_html(
    model: LoadedModel,
    layer: str,
    maps: np.ndarray,
    *,
    volume: Volume,
    indices: Mapping[str, int],
    window: tuple[float, float],
    include_scan: bool,
    scan_name: str | None = None,
    top_k: Sequence[tuple[str, float]] = (),
    cam: CamResult | None = None,
    cam_note: str | None = None,
    version: str = "",
    created: datetime | None = None,
) -> bytes:
    """The report of a 3-D model on ``volume`` as UTF-8 HTML bytes.

    ``maps`` are ``layer``'s (C, D, H, W) maps; the depth that covers the axial slice ``indices["axial"]`` goes in
    (its :data:`SHOWN_CHANNELS` strongest channels). ``indices`` are the slices of the three planes, ``window``
    the (level, width) the scan is shown with. ``include_scan=False`` leaves every voxel of the scan out, with
    ``scan_name`` and its description; Grad-CAM (``cam``, or ``cam_note`` saying why not) is then drawn alone.
    """
    created = created or datetime.now(timezone.utc).astimezone()
    array = np.asarray(maps, dtype=np.float32)
    if array.ndim != 4:
        raise ValueError(f"volume_report_html needs a 3-D layer's (C, D, H, W) maps, not {array.shape}")
    scan_slice = int(indices["axial"])
    depth = depth_index(scan_slice, volume.shape3d[0], array.shape[1])
    charts = Charts()
    title = f"featviz report · {model.name} · layer {layer}"
    scan = escape(scan_name) if include_scan and scan_name else "your scan"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{scan} · {escape(created.strftime("%Y-%m-%d %H:%M %Z").strip())}</p>',
        _section_scan(charts, volume, indices, window, include_scan),
        _section_model(model, top_k),
        _section_layer(charts, layer, array, depth, scan_slice),
        _section_cam(charts, volume, indices, window, cam, cam_note, include_scan),
        section_limits(),
        footer(version, created),
    ]
    return html_page(title, body, charts)
