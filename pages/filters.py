"""Filters: the learned weights of a convolution, linked to the feature-map channel they produce."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from featviz_core import export, figures, stats
from featviz_core.layers.filters import FilterWeights, conv_for_layer, conv_layers, filter_weights
from featviz_core.models import LoadedModel
from ui.errors import guard
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import Selection, current, request
from ui.widgets import page_picker, page_slice

ensure_routed()

HOW_TO_READ = """
A convolution slides small **filters** over its input; each filter makes one channel of the layer's output.
This page shows the filters' learned numbers (weights).

- **First layer**: each filter looks at red, green and blue, so it is drawn in colour. **Grey means 0**; a
  strong colour means the filter looks for that colour (or its opposite, for the complementary colour). One
  scale is used for all filters, and the caption says how large a full colour is.
- **Deeper layers** look at the previous layer's channels, not colours: each tile is the filter averaged over
  those input channels (or one input channel you pick). **Red is positive, blue negative, white 0.**
- Filter *k* makes channel *k* of the convolution's output: pick a channel to see its filter next to its map.
"""

def _choose_conv(selection: Selection, names: list[str], labels: dict[str, str], linked: str | None) -> tuple[str, Any]:
    """The convolution to show (by default the one that makes the sidebar layer's channels), and the column
    beside its menu."""
    state = st.session_state
    here = (selection.model.key, selection.layer.name)
    if state.get("_filters_for") != here or state.get("filter_layer") not in names:
        state["_filters_for"] = here
        state["filter_layer"] = linked if linked in names else names[0]
    c1, c2 = st.columns([2, 1])
    conv_name = c1.selectbox(
        "Convolution", names, key="filter_layer", format_func=labels.get,
        help="Which convolution's filters to show. By default the one that makes the channels of the layer "
        "chosen in the sidebar.",
    )
    return conv_name, c2


def _input_channel(fw: FilterWeights) -> Any:
    """"mean" or the input channel whose weights the grid shows (deeper layers only)."""
    if fw.is_rgb_input or fw.weights.shape[1] <= 1:
        return "mean"
    return st.selectbox(
        "Input channel", ["mean", *range(fw.weights.shape[1])], key="filter_input",
        format_func=lambda v: "Average over all input channels" if v == "mean" else f"Input channel {v}",
        help="Each filter has one small grid per input channel. Show their average, or one of them.",
    )


def _clicked(event: Any, same_as_maps: bool) -> int | None:
    """The filter clicked (kept until another click), else the Feature maps page's channel for its layer."""
    state = st.session_state
    clicked = figures.channel_from_selection(event)
    if clicked is not None and clicked != state.get("_last_filter_click"):
        state["_filter_channel"] = clicked
    state["_last_filter_click"] = clicked
    channel = state.get("_filter_channel")
    if channel is None and same_as_maps and isinstance(state.get("channel"), int):
        channel = state["channel"]
    return channel


def _order(selection: Selection, out_channels: int, same_as_maps: bool) -> tuple[np.ndarray, str]:
    """The filters in the Feature maps page's order when they make the sidebar layer's channels."""
    order = st.session_state.get("order")
    if same_as_maps and order in ("mean", "max", "std"):
        note = {"mean": "strongest on average", "max": "highest peak", "std": "most varied"}[order]
        return stats.order_channels(stats.channel_stats(selection.maps()), order), note
    return np.arange(out_channels), "channel number"


def _grid(model: LoadedModel, conv_name: str, fw: FilterWeights, shown: np.ndarray, how: Any) -> Any:
    base = export.export_filename(model.name, conv_name, None, "png").rsplit(".", 1)[0]
    with guard("drawing the filters"):
        if fw.is_rgb_input:
            fig = figures.rgb_filters_figure(fw.weights, shown)
        else:
            fig = figures.filter_mosaic_figure(fw.weights, shown, input_channel=None if how == "mean" else int(how),
                                               title="Filters (red > 0 > blue, one scale for all)")
        return st.plotly_chart(fig, width="stretch", key="filters_chart", on_select="rerun",
                               selection_mode="points", config=export.plotly_config(f"{base}_filters"))


def _detail(selection: Selection, conv_name: str, fw: FilterWeights, channel: int, same_as_maps: bool) -> None:
    """One filter large, beside the map it produces (when it makes the sidebar layer's channels)."""
    weights, in_per_group = fw.weights, fw.weights.shape[1]
    st.subheader(f"Filter {channel}")
    left, right = st.columns(2)
    with left:
        kernel = weights[channel]
        st.plotly_chart(
            figures.filter_mosaic_figure(kernel[:, None, :, :], None, title=f"Filter {channel}, one tile per input "
                                         "channel", labels=in_per_group <= 64),
            width="stretch", key="filter_detail", config=export.PLOTLY_CONFIG,
        )
        st.caption(f"Weights from {float(kernel.min()):.3g} to {float(kernel.max()):.3g}; "
                   f"bias {float(fw.bias[channel]):.3g}." if fw.bias is not None else
                   f"Weights from {float(kernel.min()):.3g} to {float(kernel.max()):.3g}; no bias.")
    with right:
        if same_as_maps:
            maps = selection.maps()
            st.plotly_chart(
                figures.channel_figure(maps[channel], title=f"Channel {channel} of {selection.layer.name}"),
                width="stretch", key="filter_map", config=export.PLOTLY_CONFIG,
            )
        if st.button(f"Open channel {channel}'s feature map", icon=":material/grid_view:",
                     help="Shows what this filter's channel found in your image, on the Feature maps page."):
            request(layer=conv_name if not same_as_maps else selection.layer.name, channel=channel)
            st.switch_page("pages/feature_maps.py")


def main() -> None:
    selection = current()
    page_header("Filters", HOW_TO_READ, selection)
    model = selection.model
    with guard("reading the model's convolutions"):
        convs = conv_layers(model)
    if not convs:
        st.warning("This model has no convolution layers, so it has no filters to show.")
        return
    linked = conv_for_layer(model, selection.layer.name)
    conv_name, beside = _choose_conv(selection, [c.name for c in convs], {c.name: c.label for c in convs}, linked)
    with guard("reading the filters"):
        fw = filter_weights(model, conv_name)
    out_channels = fw.weights.shape[0]
    same_as_maps = conv_name == linked
    if same_as_maps:
        beside.caption(f"These filters make the channels of **{selection.layer.name}**, the layer in the sidebar: "
                       "the grid below uses the same order as the Feature maps page.")
    else:
        beside.caption(f"The sidebar layer is {selection.layer.name}; these filters belong to another layer.")
    how = _input_channel(fw)
    order, order_note = _order(selection, out_channels, same_as_maps)
    page = page_picker(out_channels, key="filter_page", label="Filters shown", show_count=False)
    shown = page_slice(order, page)
    st.caption(f"{out_channels} filters of {fw.weights.shape[2]}×{fw.weights.shape[3]} weights, ordered by "
               f"{order_note}.")
    channel = _clicked(_grid(model, conv_name, fw, shown, how), same_as_maps)
    if channel is not None and 0 <= channel < out_channels:
        _detail(selection, conv_name, fw, channel, same_as_maps)
    else:
        st.caption("Click a filter to see it large, next to the map it produces.")


main()
