"""What the user chose, shared by every page, kept across page switches and mirrored in the URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st
from PIL import Image

from featviz_core import CamTarget, Extraction, LayerInfo, LoadedModel

from . import cache, keys

# Session-state keys of choices made on pages (not in the sidebar). Streamlit forgets a widget's value
# when a page that does not draw it runs; re-assigning them at the start of every run keeps them.
PAGE_KEYS = (
    "channel", "order", "scale", "cmap", "grid_page", "opacity", "cam_layer", "cam_class", "cam_opacity",
    "compare_source", "compare_sample", "filter_layer", "filter_input", "detail_channel_input",
    "cam_method", "cam_output", "cam_channel", "report_include_image",
    "viz_channel", "viz_objective", "viz_size", "viz_steps", "viz_seed", "attn_block", "attn_method", "attn_opacity",
    "volume_source", "volume_series", "volume_axial", "volume_coronal", "volume_sagittal", "volume_frame",
    "volume_window", "volume_level", "volume_width", "volume_crosshair", "volume_model_layer",
)

# Query parameters of a shareable link, and the session keys they restore.
URL_KEYS = {
    "sample": "sample",
    "model": "model_spec",
    "layer": "layer",
    "channel": "channel",
    "order": "order",
    "scale": "scale",
    "cmap": "cmap",
    "vchannel": "viz_channel",
    "vobjective": "viz_objective",
    "vsize": "viz_size",
    "vsteps": "viz_steps",
    "vseed": "viz_seed",
}
INT_KEYS = frozenset({"channel", "viz_channel", "viz_size", "viz_steps", "viz_seed"})
"""Session keys whose link value is a whole number."""


@dataclass(frozen=True)
class Selection:
    """The image, model and layer chosen in the sidebar, ready for the pages."""

    image: Image.Image
    image_bytes: bytes
    image_digest: str
    image_name: str
    image_source: str
    model: LoadedModel
    model_label: str
    layers: tuple[LayerInfo, ...]
    layer: LayerInfo
    notice: str | None = None

    def extraction(self, layers: tuple[str, ...] | None = None) -> Extraction:
        """The cached forward pass for this image and model (default: the chosen layer)."""
        names = layers if layers is not None else (self.layer.name,)
        return cache.extraction(self.image_digest, self.model.key, names, self.model, self.image)

    def maps(self) -> Any:
        """The chosen layer's feature maps, float32 (C, H, W)."""
        return self.extraction().activations[self.layer.name]

    @property
    def image_stem(self) -> str:
        return self.image_name.rsplit(".", 1)[0] if "." in self.image_name else self.image_name


@dataclass(frozen=True)
class CamChoice:
    """What "Where it looks" explains: the map's inputs, as the page chose them (a class of a classifier, or a
    ``target`` of a model that is not one). The page keeps its latest choice (:func:`choose_cam`); the report
    reads it (:func:`latest_cam_choice`), and both find the same cached map and job by :attr:`key`."""

    image_digest: str
    model_key: str
    layer: str
    class_index: int | None
    method: str
    target: CamTarget | None = None

    @property
    def key(self) -> str:
        """The map's cache and job key."""
        return keys.cam_key(self.image_digest, self.model_key, self.layer, self.class_index, self.method,
                            self.target)

    @property
    def sanity_key(self) -> str:
        """The job key of the map's sanity check."""
        return keys.sanity_key(self.key)


@dataclass
class LatestCamChoice:
    """This session's latest :class:`CamChoice`. The report button holds this box and reads it when clicked,
    after the page has chosen in the same run (the button is drawn before the page's widgets)."""

    choice: CamChoice | None = None


def latest_cam_choice() -> LatestCamChoice:
    """This session's box of the latest CamChoice (empty until "Where it looks" has chosen)."""
    return st.session_state.setdefault("_cam_choice", LatestCamChoice())


def choose_cam(choice: CamChoice) -> CamChoice:
    """Keep ``choice`` as this session's latest (the report's) and return it."""
    latest_cam_choice().choice = choice
    return choice


def remember(upload: Any, key: str, *, name: bool = True) -> None:
    """Keep the bytes of an uploaded file in session memory under ``key``, so they survive the widget being
    hidden (another image source or model kind); forget them when the user removes the file. When a page put
    something else under ``key`` (``_by_widget`` False, e.g. an exemplar opened in the sidebar), the widget's
    file takes over again only once the user uploads a new one."""
    state = st.session_state
    if upload is not None:
        file_id = getattr(upload, "file_id", None)
        if state.get(key + "_by_widget") or state.get(key + "_widget_file") != file_id:
            state[key] = (upload.name, upload.getvalue()) if name else upload.getvalue()
            state[key + "_by_widget"] = True
            state[key + "_widget_file"] = file_id
    elif state.get(key + "_by_widget"):
        state[key] = None
        state[key + "_by_widget"] = False


def keep_page_state() -> None:
    """Stop Streamlit from forgetting page widgets' values when another page runs."""
    for key in PAGE_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def restore_from_url() -> None:
    """Once per session: take the choices from a shared link's query parameters."""
    if st.session_state.get("_url_restored"):
        return
    st.session_state["_url_restored"] = True
    params = st.query_params
    for param, key in URL_KEYS.items():
        value = params.get(param)
        if value is None or value == "":
            continue
        if key in INT_KEYS:
            if value.isdigit():
                st.session_state[key] = int(value)
            continue
        st.session_state[key] = value
    if params.get("sample"):
        st.session_state["image_source"] = "Sample"
    st.session_state["_from_url"] = any(params.get(p) for p in URL_KEYS)


def write_url(values: Mapping[str, Any]) -> None:
    """Mirror the current view in the address bar (only what changed, so nothing reruns)."""
    wanted = {k: str(v) for k, v in values.items() if v is not None and v != ""}
    current = {k: st.query_params.get(k) for k in URL_KEYS}
    for key in URL_KEYS:
        if key in wanted and current.get(key) != wanted[key]:
            st.query_params[key] = wanted[key]
        elif key not in wanted and current.get(key) is not None:
            del st.query_params[key]


def url_values(selection: Selection) -> dict[str, Any]:
    """What a shareable link holds for this view (an uploaded image is never in a link)."""
    state = st.session_state
    return {
        "sample": state.get("sample") if selection.image_source == "sample" else None,
        "model": state.get("model_spec"),
        "layer": selection.layer.name,
        "channel": state.get("channel"),
        "order": state.get("order"),
        "scale": state.get("scale"),
        "cmap": state.get("cmap"),
        # "What it responds to": the settings that reproduce a picture (once that page has been used)
        "vchannel": state.get("viz_channel"),
        "vobjective": state.get("viz_objective"),
        "vsize": state.get("viz_size"),
        "vsteps": state.get("viz_steps"),
        "vseed": state.get("viz_seed"),
    }


def current() -> Selection:
    """The selection made by the sidebar in this run (app.py stores it before the page runs)."""
    selection = st.session_state.get("_selection")
    if selection is None:  # a page run on its own, e.g. by a test
        st.error("Open featviz from its main page (app.py) so the sidebar can choose an image and a model.")
        st.stop()
    return selection


def request(**values: Any) -> None:
    """Ask for widget values to change on the next run (a widget's value cannot change after it is drawn).

    Follow with ``st.rerun()`` or ``st.switch_page(...)``.
    """
    st.session_state.setdefault("_requests", {}).update(values)


def apply_requests() -> None:
    """At the start of a run, before any widget is drawn: apply what :func:`request` asked for."""
    pending = st.session_state.pop("_requests", None)
    if pending:
        for key, value in pending.items():
            st.session_state[key] = value
