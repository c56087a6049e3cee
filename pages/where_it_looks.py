"""Where it looks: the prediction, Grad-CAM for a chosen class, and what fires at the same layer."""

from __future__ import annotations

import streamlit as st

from featviz_core import export, figures
from featviz_core.cam import default_cam_layer
from ui import cache
from ui.errors import guard
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import current

ensure_routed()

HOW_TO_READ = """
**Left — what drives this class (Grad-CAM).** Warm areas are the parts of the image that, at the chosen layer,
push the model towards the chosen class: making them stronger would raise that class's score. Areas with no
colour did not help that class (they may help another one).

**Right — what fires.** The average of all channels at the same layer: where the layer responds at all,
whatever the class. Comparing both tells apart “the network notices this area” and “this area is why it says
*cat*”.

**What these maps do not prove.** They are coarse (one cell per position of the layer, here drawn smoothly
over the image), they show correlation inside this one network and not a cause in the world, and a map that
sits on the right spot does not mean the prediction is right. For medical images in particular, these
pictures explain the *model's* behaviour; they are not a diagnosis.
"""

selection = current()
page_header("Where it looks", HOW_TO_READ, selection)
model = selection.model
state = st.session_state

if not model.supports_gradients:
    st.info("Grad-CAM needs the model's gradients, and this model runs in onnxruntime, which computes none "
            "(the model line in the sidebar says why); the Feature maps page shows what each layer sees.",
            icon=":material/info:")
    st.stop()

with guard("running the model"):
    result = selection.extraction()
top = result.top_k(5)
if not top:
    st.warning("This model does not output class scores, so there is nothing to explain here. "
               "Try the Feature maps page.")
    st.stop()

layer_names = [info.name for info in selection.layers]
labels = {info.name: info.label for info in selection.layers}
with guard("choosing a layer for Grad-CAM"):
    default = default_cam_layer(model)
if state.get("_cam_model") != model.key or state.get("cam_layer") not in layer_names:
    state["_cam_model"] = model.key
    state["cam_layer"] = default if default in layer_names else layer_names[-1]
top_indices = result.top_k_indices(5)
if state.get("_cam_for") != (model.key, selection.image_digest) or state.get("cam_class") not in top_indices:
    state["_cam_for"] = (model.key, selection.image_digest)
    state["cam_class"] = top_indices[0]

left, right = st.columns([1, 1.4])
with left:
    st.plotly_chart(figures.probability_figure(top, title="The model's top 5 guesses"), width="stretch",
                    key="cam_probs")
with right:
    class_index = st.radio(
        "Explain which guess?",
        top_indices,
        key="cam_class",
        format_func=lambda i: f"{result.category(i)} ({result.probabilities[i] * 100:.1f}%)",
        help="Grad-CAM shows the image regions that push the model towards this one class.",
    )
    cam_layer = st.selectbox(
        "At which layer?",
        layer_names,
        key="cam_layer",
        format_func=labels.get,
        help="Deeper layers give the most meaningful Grad-CAM (default: the last block before the "
        "classifier). Earlier layers are sharper but less about the class.",
    )
    opacity = st.slider("Overlay strength", 0.0, 1.0, 0.8, 0.05, key="cam_opacity",
                        help="0 shows only your image, 1 only the map.")

with guard("computing where the model looks"), st.spinner("Tracing the decision back through the network…"):
    cam = cache.cam(selection.image_digest, model.key, cam_layer, int(class_index), model, selection.image)

view = model.model_view(selection.image)
base = export.export_filename(model.name, cam_layer, selection.image_stem, "png").rsplit(".", 1)[0]
c1, c2 = st.columns(2)
with c1:
    st.plotly_chart(
        figures.overlay_figure(
            view, cam.normalized, opacity=opacity, colorscale="Turbo", zrange=(0.0, 1.0),
            title=f"What drives “{cam.class_name}”", colorbar_title="share of the strongest push (0–1)",
        ),
        width="stretch", key="cam_overlay", config=export.plotly_config(f"{base}_gradcam_class{cam.class_index}"),
    )
    peak = float(cam.cam.max())
    st.caption(f"Grad-CAM at {cam_layer} ({cam.shape[1]}×{cam.shape[0]} cells), class score {cam.score:.3g}. "
               + ("No area pushes towards this class at this layer." if peak == 0 else
                  "1 = the area that pushes hardest; hover for each cell's value."))
with c2:
    st.plotly_chart(
        figures.overlay_figure(
            view, cam.activations_mean, opacity=opacity, colorscale="Viridis",
            title="What fires at this layer (all channels averaged)", colorbar_title="mean activation",
        ),
        width="stretch", key="cam_mean", config=export.plotly_config(f"{base}_mean_activation"),
    )
    st.caption("The average over the layer's channels, whatever the class: where the layer responds at all.")
