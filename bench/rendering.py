"""Rendering the grid: featviz's mosaic against the usual ways, in build time and bytes sent.

For each layer shape (a page of at most 64 channels is drawn, as on the Feature maps page):

- ``mosaic``      ``featviz_core.figures.mosaic_figure`` (one ``go.Heatmap`` with NaN gaps + click targets);
- ``subplots``    plotly ``make_subplots`` with one ``go.Heatmap`` per channel (float32 z, one shared colour
  axis, a hover with channel, x, y and the value: the same information);
- ``matplotlib``  the classic grid: one ``imshow`` per channel on an Agg figure, saved as PNG (no hover).

Every variant also computes the layer's colour range (``layer_range``), as the page does. Timed in
interleaved rounds: the figure build, and Plotly's serialisation (``plotly.io.to_json(fig,
validate=False)``, what ``st.plotly_chart`` sends). Payload: ``len(to_json)`` as sent ("escaped": Plotly
writes every "/" of base64 as ``\\u002f``, six characters) and with those escapes undone ("raw").

Floor: the shown values as float32 in base64 (4 bytes per value x 4/3) plus each shown channel's index
(1 byte, 2 from 256 channels on, in base64). Targets: mosaic build <= 1/10 of ``subplots``; payload <=
1.1 x floor.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from featviz_core import figures

from .common import clock, interleaved, ratio, summary

__all__ = ["SHAPES", "PAGE", "b64_len", "floor_bytes", "measure_shape", "run"]

PAGE = 64
SHAPES: tuple[tuple[int, int, int], ...] = ((64, 56, 56), (64, 112, 112), (512, 7, 7), (2048, 7, 7))
BUILD_TARGET = 0.10
PAYLOAD_TARGET = 1.10


def b64_len(nbytes: int) -> int:
    """Characters of the base64 encoding of ``nbytes`` bytes."""
    return 4 * math.ceil(nbytes / 3)


def floor_bytes(n_channels: int, h: int, w: int) -> dict[str, int]:
    """The least JSON a browser needs to show and hover these values exactly (base64 float32 + index)."""
    values = n_channels * h * w
    index_size = 1 if n_channels <= 256 else 2
    return {
        "values": b64_len(4 * values),
        "channel_index_per_tile": b64_len(index_size * n_channels),
        "floor": b64_len(4 * values) + b64_len(index_size * n_channels),
        "floor_with_index_per_pixel": b64_len(4 * values) + b64_len(index_size * values),
    }


def activations(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Seeded ReLU-like float32 maps (half exact zeros, like a post-ReLU layer)."""
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_normal(shape, dtype=np.float32), 0).astype(np.float32)


def build_mosaic(maps: np.ndarray, shown: Sequence[int]) -> go.Figure:
    zrange = figures.layer_range(maps)
    return figures.mosaic_figure(maps, shown, scale="shared", colorscale="Viridis", zrange=zrange)


def build_subplots(maps: np.ndarray, shown: Sequence[int]) -> go.Figure:
    """The usual way: a grid of subplots, one heatmap trace per channel, one shared colour axis."""
    from plotly.subplots import make_subplots

    lo, hi = figures.layer_range(maps)
    n = len(shown)
    h, w = maps.shape[1:]
    grid = figures.mosaic_layout(n, h, w)
    fig = make_subplots(
        rows=grid.rows, cols=grid.columns, horizontal_spacing=0.004, vertical_spacing=0.004,
    )
    for i, c in enumerate(shown):
        r, col = divmod(i, grid.columns)
        fig.add_trace(
            go.Heatmap(
                z=np.ascontiguousarray(maps[c], dtype=np.float32),
                coloraxis="coloraxis",
                hovertemplate=f"channel {c}<br>x %{{x}} · y %{{y}}<br>value %{{z:{figures.VALUE_FORMAT}}}"
                "<extra></extra>",
                name=f"channel {c}",
            ),
            row=r + 1,
            col=col + 1,
        )
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, autorange="reversed")
    fig.update_layout(
        coloraxis={"colorscale": "Viridis", "cmin": lo, "cmax": hi},
        height=int(min(900, max(320, 120 + grid.rows * 96))),
        margin={"l": 4, "r": 4, "b": 4, "t": 8},
        showlegend=False,
    )
    return fig


def render_matplotlib(maps: np.ndarray, shown: Sequence[int]) -> bytes:
    """The classic grid: one imshow per channel, Agg, PNG at (at least) one pixel per value."""
    from matplotlib.figure import Figure

    lo, hi = figures.layer_range(maps)
    n = len(shown)
    h, w = maps.shape[1:]
    grid = figures.mosaic_layout(n, h, w)
    dpi = 100
    cell = max(h, w, 40) * 1.15 / dpi  # every value gets a screen pixel; small maps stay readable
    fig = Figure(figsize=(grid.columns * cell, grid.rows * cell), dpi=dpi)
    axes = fig.subplots(grid.rows, grid.columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(maps[shown[i]], cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(str(shown[i]), fontsize=6, pad=1)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _payload(fig: go.Figure) -> tuple[int, int, float]:
    t0 = clock()
    text = pio.to_json(fig, validate=False)
    seconds = clock() - t0
    return len(text), len(text.replace("\\u002f", "/")), seconds


def measure_shape(
    shape: tuple[int, int, int], rounds: int = 7, warmup: int = 1, matplotlib: bool = True
) -> dict[str, Any]:
    """Build times (interleaved), serialisation times and payload sizes of the three ways for one shape."""
    maps = activations(shape)
    shown = list(range(min(PAGE, shape[0])))
    variants: dict[str, Any] = {
        "mosaic": lambda: build_mosaic(maps, shown),
        "subplots": lambda: build_subplots(maps, shown),
    }
    if matplotlib:
        variants["matplotlib_png"] = lambda: render_matplotlib(maps, shown)
    times = interleaved(variants, rounds=rounds, warmup=warmup)
    stats = {name: summary(samples) for name, samples in times.items()}

    # serialisation: interleaved too, on figures built once
    built = {"mosaic": build_mosaic(maps, shown), "subplots": build_subplots(maps, shown)}
    sizes: dict[str, tuple[int, int]] = {}
    json_times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(max(1, rounds)):
        for name, fig in built.items():
            escaped, raw, seconds = _payload(fig)
            sizes[name] = (escaped, raw)
            json_times[name].append(seconds)
    floor = floor_bytes(len(shown), shape[1], shape[2])
    png = render_matplotlib(maps, shown) if matplotlib else b""

    out: dict[str, Any] = {
        "shape": list(shape),
        "shown_channels": len(shown),
        "shown_values": len(shown) * shape[1] * shape[2],
        "rounds": rounds,
        "floor_bytes": floor,
        "variants": {},
    }
    for name in variants:
        entry: dict[str, Any] = {"build_s": stats[name]["median"], "build": stats[name]}
        if name in built:
            escaped, raw = sizes[name]
            to_json = summary(json_times[name])["median"]
            entry.update(
                {
                    "to_json_s": to_json,
                    "build_plus_json_s": entry["build_s"] + to_json,
                    "payload_escaped_bytes": escaped,
                    "payload_raw_bytes": raw,
                    "payload_escaped_over_floor": ratio(escaped, floor["floor"]),
                    "payload_raw_over_floor": ratio(raw, floor["floor"]),
                    "payload_raw_over_floor_with_pixel_index": ratio(raw, floor["floor_with_index_per_pixel"]),
                }
            )
        else:
            entry.update({"png_bytes": len(png), "hover": False})
        out["variants"][name] = entry
    mosaic, subplots = out["variants"]["mosaic"], out["variants"]["subplots"]
    build_ratio = ratio(mosaic["build_s"], subplots["build_s"])
    out["targets"] = {
        "build_over_subplots": build_ratio,
        "build_pass": build_ratio is not None and build_ratio <= BUILD_TARGET,
        "total_over_subplots": ratio(mosaic["build_plus_json_s"], subplots["build_plus_json_s"]),
        "payload_raw_over_floor": mosaic["payload_raw_over_floor"],
        "payload_raw_pass": mosaic["payload_raw_over_floor"] <= PAYLOAD_TARGET,
        "payload_escaped_over_floor": mosaic["payload_escaped_over_floor"],
        "payload_escaped_pass": mosaic["payload_escaped_over_floor"] <= PAYLOAD_TARGET,
    }
    return out


def payload_breakdown(shape: tuple[int, int, int]) -> dict[str, int]:
    """Where the mosaic's bytes go: z, customdata, axis labels, click targets, the rest (raw JSON chars)."""
    import json

    maps = activations(shape)
    shown = list(range(min(PAGE, shape[0])))
    fig = build_mosaic(maps, shown)
    spec = json.loads(pio.to_json(fig, validate=False))
    heat, tiles = spec["data"][0], spec["data"][1]

    def size(obj: Any) -> int:
        return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    parts = {
        "z": size(heat.get("z")),
        "customdata": size(heat.get("customdata")),
        "axis_labels": size(heat.get("x")) + size(heat.get("y")),
        "click_targets": size(tiles),
    }
    parts["rest"] = size(spec) - sum(parts.values())
    return parts


def run(
    rounds: int = 7,
    shapes: Sequence[tuple[int, int, int]] = SHAPES,
    matplotlib: bool = True,
    warmup: int = 1,
) -> dict[str, Any]:
    results = [measure_shape(tuple(s), rounds=rounds, warmup=warmup, matplotlib=matplotlib) for s in shapes]
    return {
        "page": PAGE,
        "targets": {"build": f"mosaic <= {BUILD_TARGET} x subplots", "payload": f"<= {PAYLOAD_TARGET} x floor"},
        "shapes": results,
        "mosaic_breakdown_first_shape": payload_breakdown(tuple(shapes[0])) if shapes else {},
    }
