"""What a 3-D model sees in the scan on the Volumes page: one layer's feature maps at the chosen axial slice and
where the model looks (Grad-CAM) in the three planes. Drawn inside the viewer's fragment, so moving a slice only
re-slices the cached maps: the model runs once per scan, model and layer."""

from __future__ import annotations

import numpy as np
import streamlit as st

from featviz_core import default_cam_layer, default_layer, export, figures, list_layers
from featviz_core.cam import CamResult, upsample_plane
from featviz_core.images import PLANES, Volume
from featviz_core.models import LoadedModel
from featviz_core.report.volume import depth_index

from . import cache
from .errors import guard
from .volume_report import report_button

LAYER_KEY = "volume_model_layer"
TITLES = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}


def _model() -> tuple[LoadedModel, str]:
    """The sidebar's model when it takes volumes, else the bundled 3-D demo model; and a sentence saying which."""
    selection = st.session_state.get("_selection")
    chosen = getattr(selection, "model", None)
    if chosen is not None and chosen.is_volumetric:
        return chosen, f"The model chosen in the sidebar, {chosen.name}."
    flat = (f"The sidebar's model, {chosen.name}, looks at single pictures, so here the bundled 3-D demo network "
            if chosen is not None else "The bundled 3-D demo network ")
    return cache.demo_volume_model(), (
        flat + "is used (it tells spheres, cubes, shells and rods apart; offline). For a 3-D model of your own, "
        "choose *ImageNet model → torchvision video* in the sidebar, or start featviz with "
        "`featviz run --model pkg.module:factory`."
    )


def _maps_and_guess(volume_key: str, volume: Volume, at: int, what: str) -> tuple[LoadedModel, str, np.ndarray,
                                                                                 CamResult] | None:
    """The model's choice, the chosen layer's maps at the depth that covers slice (or frame) ``at``, its guess and
    Grad-CAM; None when the model could not run (the sentence is on screen)."""
    model, which = _model()
    st.caption(which)
    with guard("running the 3-D model", stop=False):
        layers = [info for info in list_layers(model) if info.spatial and info.shape and len(info.shape) == 4]
        names = [info.name for info in layers]
        if st.session_state.get(LAYER_KEY) not in names:
            st.session_state[LAYER_KEY] = default_layer(model)
        labels = {info.name: info.label for info in layers}
        layer = st.selectbox("Layer", names, key=LAYER_KEY, format_func=labels.get,
                             help="Each layer's maps are channels × depth × height × width.")
        maps = cache.volume_extraction(volume_key, model.key, layer, model, volume)
        result = cache.volume_cam(volume_key, model.key, default_cam_layer(model), model, volume)
        channels, depth = int(maps.shape[0]), int(maps.shape[1])
        z = depth_index(at, volume.shape3d[0], depth)
        left, right = st.columns([3, 2])
        with left:
            st.markdown(f"**{layer}** at depth {z} of {depth} (covers the {what} {at}); "
                        f"{channels} channels on one colour scale — hover for the exact value")
            st.plotly_chart(figures.mosaic_figure(np.ascontiguousarray(maps[:, z]), scale="shared", height=420,
                                                  depth=z), width="stretch", key="volume_model_maps",
                            config=export.PLOTLY_CONFIG)
        with right:
            top = np.argsort(-result.probabilities)[:3]
            classes = model.categories or [str(i) for i in range(len(result.probabilities))]
            st.markdown("**The model's guess:** "
                        + ", ".join(f"{classes[i]} {result.probabilities[i]:.1%}" for i in top))
            st.caption(f"Grad-CAM of “{result.class_name}” at {result.layer}, laid on the {what.split()[-1]} below "
                       "(0 = no push, 1 = the strongest push towards this class).")
        return model, layer, maps, result
    return None


def model_view(volume_key: str, volume: Volume, indices: dict[str, int],
               window: tuple[float, float] | None = None) -> None:
    """The section under the three planes: the maps at the axial slice, Grad-CAM on the planes, the report."""
    st.subheader("What a 3-D model sees in this scan")
    found = _maps_and_guess(volume_key, volume, indices["axial"], "scan's axial slice")
    if found is None:
        return
    model, layer, maps, result = found
    window = window or volume.window or (float(np.median(volume.array)), float(np.ptp(volume.array)) or 1.0)
    for column, plane in zip(st.columns(3), PLANES, strict=True):
        index = indices[plane]
        fig = figures.plane_figure(volume.slice(plane, index), volume.slice_spacing(plane), plane=plane, index=index,
                                   window=window, units=volume.units, overlay=_cam_slice(result, volume, plane, index),
                                   sides=figures.ORIENTATION[plane], title=f"{TITLES[plane]} · slice {index}",
                                   height=360, showscale=plane == "sagittal")
        fig.data[0].name = f"{plane} scan"
        column.plotly_chart(fig, width="stretch", key=f"volume_cam_{plane}", config=export.PLOTLY_CONFIG)
    report_button(volume_key, volume, model, layer, maps, result, indices, window)


def _cam_slice(result: CamResult, volume: Volume, plane: str, index: int) -> np.ndarray:
    """Grad-CAM stretched over the scan, only at the plane on screen (as ``volume.slice`` shows it)."""
    axis = PLANES.index(plane)
    heat = upsample_plane(result.normalized, volume.shape3d, axis, index)
    one = Volume(array=np.expand_dims(heat, axis), spacing=volume.spacing, kind=volume.kind, modality=None,
                 window=None, description="")
    return one.slice(plane, 0)


def clip_model_view(volume_key: str, volume: Volume, frame: int, window: tuple[float, float] | None) -> None:
    """Under a clip: the maps at the depth that covers the frame, and Grad-CAM laid over the frame (in grey)."""
    st.subheader("What a 3-D model sees in this clip")
    found = _maps_and_guess(volume_key, volume, frame, "clip's frame")
    if found is None:
        return
    picture = np.asarray(volume.slice("axial", frame), dtype=np.float32)
    if picture.ndim == 3:  # a colour frame: its grey under the map
        picture = picture.mean(axis=-1)
    window = window or ((float(picture.max()) + float(picture.min())) / 2, float(np.ptp(picture)) or 1.0)
    fig = figures.plane_figure(picture, plane="frame", index=frame, window=window, units=volume.units,
                               overlay=_cam_slice(found[3], volume, "axial", frame),
                               title=f"Frame {frame}, with Grad-CAM", height=420, showscale=True)
    st.plotly_chart(fig, width="stretch", key="volume_cam_frame", config=export.PLOTLY_CONFIG)
