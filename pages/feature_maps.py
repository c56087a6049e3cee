"""Feature maps page: every channel of the chosen layer, one channel in detail, statistics, exports."""

from __future__ import annotations

import numpy as np
import streamlit as st

from featviz_core import export, figures, stats
from featviz_core.attention import attention_blocks
from ui.errors import guard
from ui.light_chart import light_chart
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import Selection, current, request, url_values, write_url
from ui.still import still_until_drawn
from ui.widgets import page_picker, page_slice

ensure_routed()

ORDERS = {"index": "Channel number", "mean": "Strongest on average", "max": "Highest peak", "std": "Most varied"}
SCALES = {"shared": "One scale for the layer", "channel": "Each channel its own scale"}

HOW_TO_READ = """
The network turns the image into many **channels**: each small picture below is one channel, a map of where
in the image one learned pattern was found. **Bright** means the pattern is strongly present there;
**dark** means absent. Hover over a picture to read the exact number at that spot.

- **Order** puts the channels that respond most to *this* image first (or keeps them by number).
- **Scale**: with *one scale for the layer*, equal colours mean equal numbers everywhere, so you can compare
  channels. With *each channel its own scale*, faint channels become visible, but colours can no longer be
  compared between pictures. The colour bar always says which one is on.
- **Click a picture** (or type its number) to see that channel large, laid over the image, with its numbers.
- Early layers find edges and colours; deeper layers find textures, parts and whole objects. A map shows
  *where* a pattern is, not *why* the network decided something.
"""


def _controls(n_channels: int) -> tuple[str, str, str, int]:
    state = st.session_state
    if state.get("order") not in ORDERS:
        state["order"] = "index"
    if state.get("scale") not in SCALES:
        state["scale"] = "shared"
    if state.get("cmap") not in figures.COLORSCALES:
        state["cmap"] = next(iter(figures.COLORSCALES))
    c1, c2, c3, c4 = st.columns([1.2, 1.3, 1, 1.2])
    order = c1.selectbox(
        "Order", list(ORDERS), key="order", format_func=ORDERS.get,
        help="Which channels come first. “Strongest on average” shows what this image excites most.",
    )
    scale = c2.radio(
        "Colour scale", list(SCALES), key="scale", format_func=SCALES.get, horizontal=False,
        help="One scale: colours mean the same number in every picture. Own scale: each picture uses its "
        "full colour range, so weak channels are visible but colours are not comparable.",
    )
    cmap = c3.selectbox(
        "Colours", list(figures.COLORSCALES), key="cmap",
        help="The colour map. Viridis and Cividis read well for colour-blind viewers and in print.",
    )
    page = page_picker(n_channels, key="grid_page", container=c4)
    return order, scale, cmap, page


def _prefix_tokens(selection: Selection, channel: int) -> None:
    """A transformer's tokens before the patches (class, distillation, register tokens): not on the image, so
    their values for this channel are given in words, exactly."""
    prefix = selection.extraction().prefix.get(selection.layer.name)
    if prefix is None or not len(prefix):
        return
    setup = attention_blocks(selection.model)
    names = list(setup.prefix) if setup is not None and len(setup.prefix) == len(prefix) else [
        f"token {i + 1}" for i in range(len(prefix))]
    values = " · ".join(f"{name} **{float(prefix[i, channel]):.6g}**" for i, name in enumerate(names))
    st.markdown(f"Tokens before the patches, not on the image: {values}",
                help="A vision transformer adds these tokens in front of the image's patches; the class token "
                "gathers what the decision needs. Their values in this channel, exactly.")


def _detail(
    selection: Selection, maps: np.ndarray, channel: int, cmap: str, zrange: tuple[float, float] | None
) -> None:
    layer = selection.layer.name
    one = maps[channel]
    summary = stats.summary(one)
    st.subheader(f"Channel {channel}")
    m = st.columns(5)
    m[0].metric("Lowest", f"{summary['min']:.4g}")
    m[1].metric("Highest", f"{summary['max']:.4g}")
    m[2].metric("Average", f"{summary['mean']:.4g}")
    m[3].metric("Spread (std)", f"{summary['spread (std)']:.4g}")
    m[4].metric("Exactly zero", f"{summary['% zero']:.1f}%")
    _prefix_tokens(selection, channel)
    left, right = st.columns(2)
    with left:
        st.session_state.setdefault("opacity", 0.8)  # the value lives in session state (kept across pages)
        opacity = st.slider(
            "Overlay strength", 0.0, 1.0, step=0.05, key="opacity",
            help="0 shows only your image, 1 only the channel's map.",
        )
        view = selection.model.model_view(selection.image)
        light_chart(
            figures.overlay_figure(view, one, opacity=opacity, colorscale=cmap,
                                   title="Over the image (as the model sees it, in grey)",
                                   colorbar_title="activation (this channel's range)"),
            config=export.plotly_config(
                export.export_filename(selection.model.name, layer, selection.image_stem, "png").rsplit(".", 1)[0]
                + f"_channel{channel}_overlay"),
            key="detail_overlay",
        )
        if st.button(f"What does channel {channel} respond to?", icon=":material/palette:", key="detail_responds_to",
                     help="Makes a picture that this channel responds to most (a few seconds), on the page "
                     "“What it responds to”."):
            request(viz_channel=channel, _viz_autostart=True)
            st.switch_page("pages/responds_to.py")
    with right:
        light_chart(
            figures.channel_figure(one, colorscale=cmap, zrange=zrange,
                                   title=f"Channel {channel} at full resolution ({one.shape[1]}×{one.shape[0]})",
                                   colorbar_title="activation (layer scale)" if zrange else "activation"),
            config=export.plotly_config(
                export.export_filename(selection.model.name, layer, selection.image_stem, "png").rsplit(".", 1)[0]
                + f"_channel{channel}"),
            key="detail_map",
        )
        light_chart(figures.histogram_figure(one, title="How the values are spread"), key="detail_hist")


@st.fragment
def grid_and_detail(selection: Selection) -> None:
    """Everything display-only: reruns alone, reading the cached extraction (no new forward pass)."""
    with guard("drawing the feature maps"):
        maps = selection.maps()
        channel_stats = stats.channel_stats(maps)
        n = maps.shape[0]
        order, scale, cmap, page = _controls(n)
        ordered = stats.order_channels(channel_stats, order)  # type: ignore[arg-type]
        shown = page_slice(ordered, page)
        zrange = figures.layer_range(maps)
        fig = figures.mosaic_figure(maps, shown, scale=scale, colorscale=cmap, zrange=zrange)
        base = export.export_filename(selection.model.name, selection.layer.name, selection.image_stem, "png")
        with st.container(key="grid_box"):
            still_until_drawn(fig, box="grid_box")
            event = light_chart(fig, key="grid_chart", config=export.plotly_config(base.rsplit(".", 1)[0]), clicks=True)
        clicked = figures.channel_from_selection(event)  # only in the run that follows a click
        state = st.session_state
        if clicked is not None:
            state["channel"] = clicked
        if isinstance(state.get("channel"), int) and not 0 <= state["channel"] < n:
            state["channel"] = None
        dead = int(channel_stats.dead.sum())
        note = f" · {dead} channel{'s are' if dead != 1 else ' is'} zero everywhere for this image" if dead else ""
        st.caption(f"Click a picture to open it, or type a channel number below.{note}")
        channel = st.columns([1, 3])[0].number_input(
            "Channel", min_value=0, max_value=n - 1, value=None, step=1, key="channel",
            placeholder=f"0 to {n - 1}",
            help="The channel to look at closely. Clicking a picture above fills this in.",
        )
        if channel is not None:
            _detail(selection, maps, int(channel), cmap, zrange if scale == "shared" else None)
        write_url(url_values(selection))


def stats_and_exports(selection: Selection) -> None:
    with guard("computing statistics"):
        maps = selection.maps()
        channel_stats = stats.channel_stats(maps)
        # The table is built only while its expander is open: the first view does not wait for it.
        with st.expander(f"Numbers for every channel ({maps.shape[0]})", icon=":material/table:",
                         key="stats_table_open", on_change="rerun") as table_box:
            if table_box.open:
                import pandas as pd  # here, not at the top: the maps are on screen before pandas has loaded

                st.caption("Sort by clicking a column header. Channels that are zero everywhere never fired for "
                           "this image.")
                st.dataframe(pd.DataFrame(stats.stats_rows(channel_stats)), hide_index=True, width="stretch",
                             height=360)
        layer = selection.layer.name
        npz_name = export.export_filename(selection.model.name, layer, selection.image_stem, "npz")
        csv_name = export.export_filename(selection.model.name, layer, selection.image_stem, "csv")
        c1, c2, c3 = st.columns([1, 1, 2])
        c1.download_button(
            "Download maps (.npz)", data=lambda: export.npz_bytes({layer: maps}), file_name=npz_name,
            mime="application/octet-stream", icon=":material/download:", on_click="ignore",
            help="The exact activation values (float32, channels × height × width), for NumPy: "
            f"np.load('{npz_name}')['{layer}'].",
        )
        c2.download_button(
            "Download statistics (.csv)", data=lambda: export.stats_csv(channel_stats, layer), file_name=csv_name,
            mime="text/csv", icon=":material/download:", on_click="ignore",
            help="One row per channel: mean, highest, lowest, spread and share of zeros.",
        )
        c3.caption("Pictures: use the camera icon above each chart to save it as PNG.")


def main() -> None:
    selection = current()
    page_header("Feature maps", HOW_TO_READ, selection)
    grid_and_detail(selection)
    stats_and_exports(selection)


main()
