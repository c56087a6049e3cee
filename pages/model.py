"""Model page: every layer of the network, its output shape, parameters and how often it runs."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from featviz_core import LayerInfo, LoadedModel, list_layers
from ui.errors import guard
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import current, request

ensure_routed()

HOW_TO_READ = """
Every building block of the network, in the order it runs on an image.

- **Output** is what the block hands on: *channels × height × width* for feature maps (the layers you can
  look at on the Feature maps page), or a plain list of numbers near the end of the network.
- **Parameters** are the numbers the network learned inside that block (for a group of blocks: all of them).
- **Runs** counts how often the block is used for one image. Some blocks are used twice (for example a ResNet
  block's `relu`); featviz shows each use separately as `name`, `name#2`.
- Pick a row and press **Show its feature maps** to open that layer.
"""

def _summary(model: LoadedModel, layers: list[LayerInfo]) -> None:
    total_params = sum(p.numel() for p in model.module.parameters())
    spatial = [i for i in layers if i.spatial]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Parameters", f"{total_params / 1e6:.2f} M" if total_params >= 1e5 else f"{total_params:,}")
    c2.metric("Layers (module calls)", f"{len(layers)}")
    c3.metric("With feature maps", f"{len(spatial)}")
    c4.metric("Input", f"{model.input_channels}×{model.input_size[0]}×{model.input_size[1]}")
    st.caption(model.provenance)


def _filters() -> tuple[str, str]:
    """The search text and which layers to show."""
    left, right = st.columns([2, 1])
    query = left.text_input(
        "Search layers", key="model_search", placeholder="e.g. layer3, conv, relu",
        help="Show only layers whose name or kind contains this text.",
    )
    show = right.segmented_control(
        "Show", ["All", "Feature maps only", "Innermost only"], default="All", key="model_show",
        help="Feature maps only: layers you can open on the Feature maps page. Innermost only: leave out blocks "
        "that merely group other layers.",
    ) or "All"
    return query, show


def _rows(layers: list[LayerInfo], query: str, show: str) -> list[dict[str, Any]]:
    rows = []
    for info in layers:
        if show == "Feature maps only" and not info.spatial:
            continue
        if show == "Innermost only" and not info.is_leaf:
            continue
        if query and query.lower() not in info.name.lower() and query.lower() not in info.type.lower():
            continue
        rows.append({
            "Layer": info.name,
            "Kind": info.type,
            "Output": "×".join(map(str, info.shape)) if info.shape else "—",
            "Parameters": info.params,
            "Runs": info.calls,
            "Feature maps": info.spatial,
            "Depth": info.depth,
        })
    return rows


def _table(rows: list[dict[str, Any]], total: int) -> None:
    """The layers, one a row; a picked row with feature maps opens them on the Feature maps page."""
    st.caption(f"{len(rows)} of {total} layers shown.")
    event = st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        height=520,
        on_select="rerun",
        selection_mode="single-row",
        key="model_table",
        column_config={
            "Parameters": st.column_config.NumberColumn(format="localized", help="Learned numbers in this block"),
            "Runs": st.column_config.NumberColumn(help="How often this block runs for one image"),
            "Feature maps": st.column_config.CheckboxColumn(help="Can be opened on the Feature maps page"),
            "Depth": st.column_config.NumberColumn(help="How deeply this block is nested"),
        },
    )
    picked = event.selection.rows if event and event.selection else []
    if not picked:
        return
    info = rows[picked[0]]
    if not info["Feature maps"]:
        st.caption(f"{info['Layer']} does not output feature maps, so it cannot be drawn as a grid.")
    elif st.button(f"Show its feature maps: {info['Layer']}", type="primary", icon=":material/grid_view:"):
        request(layer=info["Layer"], channel=None)
        st.switch_page("pages/feature_maps.py")


def main() -> None:
    selection = current()
    page_header("Model", HOW_TO_READ, selection, pictures_only=False)
    with guard("listing the model's layers"):
        layers = list_layers(selection.model)
    _summary(selection.model, layers)
    query, show = _filters()
    _table(_rows(layers, query, show), len(layers))


main()
