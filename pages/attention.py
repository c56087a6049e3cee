"""Attention: for a vision transformer, where the class token reads from in a chosen block (per head), and the
attention flow through the blocks (rollout). Models without global token attention get one sentence."""

from __future__ import annotations

import numpy as np
import streamlit as st

from featviz_core import export, figures
from featviz_core.attention import AttentionResult, AttentionSetup, attention_blocks
from ui import cache
from ui.errors import guard
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import Selection, current

ensure_routed()

HOW_TO_READ = """
A vision transformer cuts the image into square **patches** and adds a **class token** that collects what the
model needs for its decision. In every block each token *reads* from the others through attention.

- **Class token, per head**: how strongly the class token reads from each patch in the chosen block, one small
  map per attention head, and their average over the image. Values are shares: the class token's attention sums
  to 1 over all tokens.
- **Rollout**: the attention of every block up to the chosen one multiplied together (with the skip connection
  counted as attention to itself), an estimate of how much each patch reaches the class token.
- **Registers** (DINOv2 with registers, and others): extra tokens that collect global information; their own
  attention is shown too, and how much the class token reads from them.

Attention shows where a token *reads from*, not what the decision *depends on*: a diffuse map does not mean the
model is unsure, and a sharp one does not prove the model uses that place. Check with *Where it looks*.
"""

METHODS = {"cls": "Class token, per head", "rollout": "Rollout through the blocks"}


def _no_attention(selection: Selection) -> None:
    st.info(
        f"featviz finds no attention from a class token to image patches that it can read in {selection.model.name}, "
        "so there is nothing to show here. Attention maps are drawn for vision transformers with a class token: in "
        "the sidebar choose **ImageNet model → timm** and a ViT, DeiT, EVA or DINOv2 model, a **Hugging Face** ViT, "
        "DeiT or DINOv2 model, or upload such a checkpoint. *Where it looks* explains any model.",
        icon=":material/info:",
    )


def _choose(setup: AttentionSetup) -> tuple[str, str, float]:
    state = st.session_state
    blocks = list(setup.blocks)
    if state.get("attn_block") not in blocks:
        state["attn_block"] = blocks[-1]
    left, middle, right = st.columns([2, 2, 1.4])
    with left:
        block = st.select_slider(
            "Block", blocks, key="attn_block", format_func=lambda b: f"{blocks.index(b) + 1} of {len(blocks)}",
            help="Which attention block to read: early blocks look at neighbours, late blocks gather for the decision.",
        )
    with middle:
        method = st.segmented_control(
            "Show", list(METHODS), format_func=METHODS.get, key="attn_method", default="cls",
            help="Per head: the class token's attention in this block. Rollout: through every block up to this one.",
        ) or "cls"
    with right:
        state.setdefault("attn_opacity", 0.6)
        opacity = st.slider("Overlay strength", 0.0, 1.0, step=0.05, key="attn_opacity")
    return block, method, opacity


def _spread(mean: np.ndarray) -> str:
    """How the overlay's colours relate to the values: they span the map's own range, which can be narrow."""
    low, high, even = float(mean.min()), float(mean.max()), float(mean.sum()) / mean.size
    text = (f"Colours span this map's own range, {low:.4g} to {high:.4g} (the same total spread evenly would give "
            f"{even:.4g} to every patch).")
    if high - low < 0.5 * even:
        text += " The map is nearly uniform: the class token reads about equally from every patch, so its colours " \
                "show small differences, not a place the model singles out."
    return text


def _draw(selection: Selection, result: AttentionResult, opacity: float) -> None:
    base = export.png_filename(selection.model.name, result.block, selection.image_name, what=result.method)
    view = selection.model.model_view(selection.image)
    mean = result.mean
    title = ("Rollout: how much each patch reaches the class token" if result.method == "rollout"
             else "The class token's attention, averaged over heads")
    low, high = float(mean.min()), float(mean.max())
    st.plotly_chart(
        figures.overlay_figure(view, mean, opacity=opacity, colorscale="Turbo", zrange=(low, high),
                               title=title, colorbar_title="attention (share)", height=460),
        width="stretch", key="attn_overlay", config=export.plotly_config(f"{base}_overlay"),
    )
    h, w = result.grid
    st.caption(f"{len(result.prefix)} token(s) before the patches ({', '.join(result.prefix)}) · {h}×{w} patches · "
               f"block {result.blocks.index(result.block) + 1} of {len(result.blocks)}")
    st.caption(_spread(mean))
    if result.method == "cls":
        st.markdown("**Each head** (one colour scale for all heads; hover for the exact share)")
        st.plotly_chart(
            figures.mosaic_figure(result.maps, scale="shared", colorscale="Turbo", item_label="head",
                                  value_label="attention", colorbar_title="attention (share)", labels=True),
            width="stretch", key="attn_heads", config=export.plotly_config(f"{base}_heads"),
        )
        share = {"head": list(result.heads), "to patches": np.round(1.0 - result.prefix_share, 4).tolist(),
                 "to the prefix tokens": np.round(result.prefix_share, 4).tolist()}
        with st.expander("How much of each head's attention goes to the patches", icon=":material/table:"):
            st.dataframe(share, hide_index=True)
    if result.registers is not None:
        st.markdown("**The register tokens' own attention** (averaged over heads)")
        st.plotly_chart(
            figures.mosaic_figure(result.registers, scale="shared", colorscale="Turbo", item_label="register",
                                  value_label="attention", colorbar_title="attention (share)"),
            width="stretch", key="attn_registers", config=export.plotly_config(f"{base}_registers"),
        )


def main() -> None:
    selection = current()
    page_header("Attention", HOW_TO_READ, selection)
    setup = attention_blocks(selection.model)
    if setup is None:
        _no_attention(selection)
        return
    block, method, opacity = _choose(setup)
    with guard("computing the attention maps"):
        result = cache.attention(selection.image_digest, selection.model.key, block, method,
                                 selection.model, selection.image)
    _draw(selection, result, opacity)


main()
