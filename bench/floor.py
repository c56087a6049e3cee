"""The floor of a first view: the same first picture on bare Streamlit pages, started and visited as featviz is.

featviz's first view cannot beat Streamlit itself: a fresh Streamlit server, a fresh browser context, one page.
Two bare pages, written to a temporary folder with the project's own ``.streamlit/config.toml``, show exactly
what featviz's first view shows first:

- *bare image page*: ``st.image`` of the still picture featviz draws while Plotly starts (``ui/still.py``: the
  same PNG, laid out at the chart's size, same pixels) and nothing else;
- *bare Plotly page*: ``st.plotly_chart`` of one ``go.Heatmap`` with the same numbers, colour range, colour scale
  and height as featviz's first mosaic, and nothing else.

Neither imports torch or featviz. They are visited by :func:`bench.first_view.first_view_once` with the same
marks (the picture inside ``.st-key-grid_still``, the heatmap inside ``.st-key-grid_chart``), so "first
picture" and "interactive map" are timed alike on all three pages. Goals (issue: the first view against its
floor): featviz's first picture ≤ the bare image page + :data:`PICTURE_MARGIN_S`; its interactive map ≤
:data:`MAP_RATIO` × the bare Plotly page.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGE_LABEL", "MAP_RATIO", "PICTURE_MARGIN_S", "PLOTLY_LABEL", "first_figure", "goals", "prepare", "variants"]

ROOT = Path(__file__).resolve().parent.parent
IMAGE_LABEL = "bare Streamlit page, one image"
PLOTLY_LABEL = "bare Streamlit page, one Plotly heatmap"
PICTURE_MARGIN_S = 0.4
MAP_RATIO = 1.1

IMAGE_PAGE = '''"""A bare Streamlit page: the first view's still picture, nothing else (bench/floor.py)."""
from pathlib import Path

import streamlit as st

with st.container(key="grid_still"):
    st.image(Path(__file__).with_name("still.png").read_bytes())
'''

PLOTLY_PAGE = '''"""A bare Streamlit page: the first view's mosaic as one Plotly heatmap, nothing else (bench/floor.py)."""
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

here = Path(__file__).parent
spec = json.loads((here / "heatmap.json").read_text())
z = np.load(here / "z.npy")
fig = go.Figure(go.Heatmap(z=z, zmin=spec["zmin"], zmax=spec["zmax"], colorscale=spec["colorscale"]))
fig.update_layout(height=spec["height"], yaxis={"autorange": "reversed", "scaleanchor": "x"})
with st.container(key="grid_chart"):
    st.plotly_chart(fig)
'''


def first_figure() -> Any:
    """featviz's first mosaic for a visitor of a server with no ImageNet weights (the demo model), built as the
    app builds it (``ui/warm.py``)."""
    from featviz_core import default_layer, extract, figures, stats
    from featviz_core.demo import load_demo
    from featviz_core.images import default_sample, load_image, sample_bytes

    model = load_demo()
    layer = default_layer(model)
    sample = default_sample(for_demo=True)
    maps = extract(model, load_image(sample_bytes(sample), f"{sample}.png"), [layer]).activations[layer]
    order = stats.order_channels(stats.channel_stats(maps), "index")
    return figures.mosaic_figure(maps, [int(c) for c in order[:64]], scale="shared",
                                 colorscale=next(iter(figures.COLORSCALES)), zrange=figures.layer_range(maps))


def prepare(dest: Path) -> dict[str, Any]:
    """Write both bare pages, their data and the project's Streamlit config into ``dest``; returns what they
    show (the heatmap's shape, the picture's bytes)."""
    from featviz_core.figures.preview import still_png

    fig = first_figure()
    trace = next(t for t in fig.data if t.type == "heatmap")
    png = still_png(fig)
    if png is None:
        raise RuntimeError("the first mosaic has no picture")
    z = np.asarray(trace.z, dtype=np.float32)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "still.png").write_bytes(png)
    np.save(dest / "z.npy", z)
    colorscale = [[float(p), str(c)] for p, c in trace.colorscale]
    (dest / "heatmap.json").write_text(json.dumps({"zmin": float(trace.zmin), "zmax": float(trace.zmax),
                                                   "colorscale": colorscale, "height": int(fig.layout.height)}))
    (dest / "image_page.py").write_text(IMAGE_PAGE)
    (dest / "plotly_page.py").write_text(PLOTLY_PAGE)
    shutil.copytree(ROOT / ".streamlit", dest / ".streamlit", dirs_exist_ok=True)
    return {"heatmap_shape": list(z.shape), "png_bytes": len(png), "height_px": int(fig.layout.height)}


def variants(folder: Path) -> dict[str, dict[str, Any]]:
    """The bare pages as first-view variants (label -> command, folder, environment) of ``folder``
    (:func:`prepare` it first)."""
    py = sys.executable
    return {
        IMAGE_LABEL: {"command": (py, "-m", "streamlit", "run", "image_page.py"), "cwd": folder, "env": {},
                      "until": "still"},
        PLOTLY_LABEL: {"command": (py, "-m", "streamlit", "run", "plotly_page.py"), "cwd": folder, "env": {}},
    }


def goals(first_view: dict[str, Any], label: str) -> dict[str, Any]:
    """featviz (``label``) against the floor, from the medians of :func:`bench.first_view.run`'s first views."""
    def median(variant: str, key: str) -> float | None:
        return (first_view.get(variant, {}).get(key) or {}).get("median")

    picture, image = median(label, "first_map_s"), median(IMAGE_LABEL, "still_s")  # featviz: still or chart
    chart, bare_chart = median(label, "heatmap_s"), median(PLOTLY_LABEL, "heatmap_s")
    picture_limit = None if image is None else image + PICTURE_MARGIN_S
    map_limit = None if bare_chart is None else bare_chart * MAP_RATIO
    return {
        "variant": label,
        "first_picture_s": picture,
        "bare_image_s": image,
        "first_picture_limit_s": picture_limit,
        "first_picture_pass": None if picture is None or picture_limit is None else picture <= picture_limit,
        "interactive_map_s": chart,
        "bare_plotly_s": bare_chart,
        "interactive_map_ratio": None if chart is None or not bare_chart else chart / bare_chart,
        "interactive_map_limit_s": map_limit,
        "interactive_map_pass": None if chart is None or map_limit is None else chart <= map_limit,
    }
