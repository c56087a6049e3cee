"""What a 3-D model sees in the scan on the Volumes page: one layer's feature maps at the chosen axial slice and
where the model looks (Grad-CAM) in the three planes. Drawn inside the viewer's fragment, so moving a slice only
re-slices the cached maps: the model runs once per scan, model and layer."""

from __future__ import annotations

import numpy as np
import streamlit as st

from featviz_core import default_cam_layer, default_layer, figures, list_layers
from featviz_core.cam import upsample
from featviz_core.images import PLANES, Volume
from featviz_core.models import LoadedModel

from . import cache
from .errors import guard

LAYER_KEY = "volume_model_layer"
TITLES = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}


def _model() -> tuple[LoadedModel, str]:
    """The sidebar's model when it takes volumes, else the bundled 3-D demo model; and a sentence saying which."""
    selection = st.session_state.get("_selection")
    chosen = getattr(selection, "model", None)
    if chosen is not None and chosen.is_volumetric:
        return chosen, f"The model chosen in the sidebar, {chosen.name}."
    return cache.demo_volume_model(), (
        "The bundled 3-D demo network (it tells spheres, cubes, shells and rods apart; offline). A 3-D model of "
        "your own opens with `featviz run --model pkg.module:factory` and is then used here."
    )


def depth_index(scan_slice: int, scan_depth: int, layer_depth: int) -> int:
    """The layer's depth index that covers the scan's axial slice ``scan_slice`` (the model sees the whole scan
    resampled to its input, and each layer's depth divides it evenly)."""
    return min(layer_depth - 1, scan_slice * layer_depth // max(scan_depth, 1))


def model_view(volume_key: str, volume: Volume, indices: dict[str, int]) -> None:
    """The section under the three planes (grey volumes only: the 3-D demo model reads one channel)."""
    st.subheader("What a 3-D model sees in this scan")
    model, which = _model()
    st.caption(which)
    with guard("running the 3-D model"):
        layers = [info for info in list_layers(model) if info.spatial and info.shape and len(info.shape) == 4]
        names = [info.name for info in layers]
        if st.session_state.get(LAYER_KEY) not in names:
            st.session_state[LAYER_KEY] = default_layer(model)
        labels = {info.name: info.label for info in layers}
        layer = st.selectbox("Layer", names, key=LAYER_KEY, format_func=labels.get,
                             help="Each layer's maps are channels × depth × height × width.")
        maps = cache.volume_extraction(volume_key, model.key, layer, model, volume)
        cam_layer = default_cam_layer(model)
        result = cache.volume_cam(volume_key, model.key, cam_layer, model, volume)
    channels, depth = int(maps.shape[0]), int(maps.shape[1])
    z = depth_index(indices["axial"], volume.shape3d[0], depth)
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**{layer}** at depth {z} of {depth} (covers the scan's axial slice {indices['axial']}); "
                    f"{channels} channels on one colour scale — hover for the exact value")
        st.plotly_chart(figures.mosaic_figure(np.ascontiguousarray(maps[:, z]), scale="shared", height=420,
                                                              depth=z),
                        width="stretch", key="volume_model_maps")
    with right:
        top = np.argsort(-result.probabilities)[:3]
        names_ = model.categories or [str(i) for i in range(len(result.probabilities))]
        st.markdown("**The model's guess:** " + ", ".join(f"{names_[i]} {result.probabilities[i]:.0%}" for i in top))
        st.caption(f"Grad-CAM of “{result.class_name}” at {cam_layer}, laid on the scan below (0 = no push, "
                   "1 = the strongest push towards this class).")
    heat = upsample(result.normalized, volume.shape3d)
    cams = Volume(array=heat, spacing=volume.spacing, kind="volume", modality=None, window=None, description="")
    window = volume.window or (float(np.median(volume.array)), float(np.ptp(volume.array)) or 1.0)
    for column, plane in zip(st.columns(3), PLANES, strict=True):
        index = indices[plane]
        fig = figures.plane_figure(volume.slice(plane, index), volume.slice_spacing(plane), plane=plane, index=index,
                                   window=window, units=volume.units, overlay=cams.slice(plane, index),
                                   sides=figures.ORIENTATION[plane], title=f"{TITLES[plane]} · slice {index}",
                                   height=360, showscale=plane == "sagittal")
        fig.data[0].name = f"{plane} scan"
        column.plotly_chart(fig, width="stretch", key=f"volume_cam_{plane}", config={"displaylogo": False})
