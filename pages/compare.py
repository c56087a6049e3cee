"""Compare: a second image against the sidebar image, same model and layer, on one colour scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from featviz_core import FeatvizError, export, figures, stats
from featviz_core.images import SUPPORTED_EXTENSIONS, describe_image, image_digest, list_samples, sample_bytes
from ui import cache
from ui.errors import guard
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import Selection, current
from ui.widgets import page_picker, page_slice

ensure_routed()

HOW_TO_READ = """
Image **A** is the one chosen in the sidebar; pick image **B** here (for example a healthy and an abnormal
scan, or a photo before and after a change). Both go through the same model, and the same layer is shown.

- **A** and **B** use **one colour scale**, so the same colour means the same number in both.
- **B − A** shows what changed: **red** where B is stronger, **blue** where A is stronger, white where they
  are equal.
- The table lists the channels whose average changed most. Hover anywhere for exact values.

A difference shows that the network *responds* differently to the two images at this layer; it does not say
which image is “right”.
"""

def _choose_b(selection: Selection) -> tuple[bytes | None, str]:
    """Image B: a bundled sample (another one than A by default) or an upload; (its bytes or None, its name)."""
    state = st.session_state
    samples = list_samples()
    titles = {s.name: s.title for s in samples}
    source = st.segmented_control(
        "Image B comes from", ["Sample", "Upload"], key="compare_source", default="Sample",
        help="The second image: a bundled sample or a file of yours (kept in memory only).",
    ) or "Sample"
    if source == "Upload":
        upload = st.file_uploader(
            "Upload image B", type=list(SUPPORTED_EXTENSIONS), key="compare_upload",
            help="PNG, JPEG, WebP, BMP, GIF, TIFF or DICOM. Kept in memory for this session only.",
        )
        return (upload.getvalue(), upload.name) if upload is not None else (None, "")
    names = [s.name for s in samples]
    if state.get("compare_sample") not in names:
        others = [n for n in names if sample_bytes(n) != selection.image_bytes]
        state["compare_sample"] = others[0] if others else names[0]
    chosen = st.selectbox("Sample for image B", names, key="compare_sample", format_func=titles.get,
                          help="A bundled image to compare with.")
    return sample_bytes(chosen), next(s.filename for s in samples if s.name == chosen)


@st.fragment
def compare_grids(selection: Selection, maps_a: np.ndarray, maps_b: np.ndarray, order_by_change: np.ndarray) -> None:
    """The three grids (A, B, B − A) on one page of channels: display-only, reruns alone."""
    layer = selection.layer.name
    n = maps_a.shape[0]
    o1, o2, o3 = st.columns(3)
    order = o1.selectbox(
        "Order", ["change", "index"], key="compare_order",
        format_func={"change": "Biggest change first", "index": "Channel number"}.get,
        help="Which channels come first in all three grids.",
    )
    cmap = o2.selectbox("Colours for A and B", list(figures.COLORSCALES), key="compare_cmap",
                        help="The colour map of the two images' grids (the difference is always blue-white-red).")
    page = page_picker(n, key="compare_page", container=o3)
    ordered = order_by_change if order == "change" else np.arange(n)
    shown = page_slice(ordered, page)
    lo_a, hi_a = figures.layer_range(maps_a)
    lo_b, hi_b = figures.layer_range(maps_b)
    shared = (min(lo_a, lo_b), max(hi_a, hi_b))
    base = export.export_filename(selection.model.name, layer, selection.image_stem, "png").rsplit(".", 1)[0]
    g1, g2 = st.columns(2)
    g1.plotly_chart(
        figures.mosaic_figure(maps_a, shown, colorscale=cmap, zrange=shared, title="A",
                              colorbar_title="activation (one scale for A and B)", height=480),
        width="stretch", key="compare_a", config=export.plotly_config(f"{base}_A"),
    )
    g2.plotly_chart(
        figures.mosaic_figure(maps_b, shown, colorscale=cmap, zrange=shared, title="B",
                              colorbar_title="activation (one scale for A and B)", height=480),
        width="stretch", key="compare_b", config=export.plotly_config(f"{base}_B"),
    )
    diff = (maps_b - maps_a).astype(np.float32)
    st.plotly_chart(
        figures.mosaic_figure(diff, shown, diverging=True, title="B − A (red: B stronger, blue: A stronger)",
                              colorbar_title="difference B − A", value_label="B − A"),
        width="stretch", key="compare_diff", config=export.plotly_config(f"{base}_B-minus-A"),
    )


def main() -> None:
    selection = current()
    page_header("Compare two images", HOW_TO_READ, selection)
    c1, c2 = st.columns([1, 2])
    with c1:
        data, name = _choose_b(selection)
    if data is None:
        st.info("Upload image B to compare it with image A.", icon=":material/upload:")
        return
    digest_b = image_digest(data)
    try:
        image_b = cache.decoded_image(digest_b, data, name)
    except FeatvizError as exc:
        st.error(str(exc))
        return
    with c2:
        a_col, b_col = st.columns(2)
        a_col.image(selection.model.model_view(selection.image), caption=f"A · {selection.image_name}", width=220)
        b_col.image(selection.model.model_view(image_b), caption=f"B · {name} · {describe_image(image_b)}",
                    width=220)
    layer = selection.layer.name
    with guard("running the model on both images"):
        maps_a = selection.maps()
        maps_b = cache.extraction(digest_b, selection.model.key, (layer,), selection.model, image_b).activations[layer]
        comparison = stats.compare_channels(maps_a, maps_b)
    if digest_b == selection.image_digest:
        st.info("Image B is the same as image A, so every difference is zero.", icon=":material/info:")
    compare_grids(selection, maps_a, maps_b, comparison.channels)
    st.subheader("Channels that changed most")
    st.dataframe(pd.DataFrame(comparison.rows(top=20)), hide_index=True, width="stretch")
    st.download_button(
        "Download both images' maps (.npz)",
        data=lambda: export.npz_bytes({f"A/{layer}": maps_a, f"B/{layer}": maps_b}),
        file_name=export.export_filename(selection.model.name, layer, f"{selection.image_stem}_vs_{name}", "npz"),
        mime="application/octet-stream", icon=":material/download:", on_click="ignore",
        help="Exact float32 values of both images at this layer, keyed 'A/<layer>' and 'B/<layer>'.",
    )


main()
