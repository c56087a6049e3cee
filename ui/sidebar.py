"""The sidebar every page shares: image, model, layer, and the model's top-5 guess."""

from __future__ import annotations

import streamlit as st
from PIL import Image

from featviz_core import FeatvizError, LayerInfo, LoadedModel, default_layer, list_layers
from featviz_core.images import (
    SUPPORTED_EXTENSIONS,
    default_sample,
    describe_image,
    image_digest,
    list_samples,
    sample_bytes,
)

from . import cache, model_picker
from .errors import guard
from .state import Selection, remember, restore_from_url, url_values, write_url

SOURCES = ("Sample", "Upload", "Camera")


# ---------------------------------------------------------------------------------------------------
# First view and shared links


def _first_view_defaults() -> None:
    """Choose what a new visitor sees (once per session): the model (see model_picker) and a sample."""
    state = st.session_state
    if state.get("_defaults_set"):
        return
    state["_defaults_set"] = True
    notice = model_picker.first_view_defaults()
    if notice:
        state["_notice"] = notice
    if "sample" not in state:
        state["sample"] = default_sample(for_demo=state.get("model_kind") == model_picker.DEMO)
    state.setdefault("image_source", SOURCES[0])


# ---------------------------------------------------------------------------------------------------
# Image


def _image_section() -> tuple[bytes, str, str]:
    """Returns (bytes, display name, source) of the image in use."""
    source = st.segmented_control(
        "Where the image comes from",
        SOURCES,
        key="image_source",
        help="A bundled sample, a file from your computer (it stays in memory, never saved), or your camera.",
        label_visibility="collapsed",
    ) or SOURCES[0]
    state = st.session_state
    if source == "Upload":
        upload = st.file_uploader(
            "Upload an image",
            type=list(SUPPORTED_EXTENSIONS),
            key="upload",
            help="PNG, JPEG, WebP, BMP, GIF, TIFF or a DICOM (.dcm) scan. The file is kept in memory only "
            "for this session and is never written to disk or sent anywhere.",
        )
        remember(upload, "_last_upload")
        if state.get("_last_upload"):
            name, data = state["_last_upload"]
            return data, name, "upload"
        st.caption("No file yet: the sample below is shown until you upload one.")
    elif source == "Camera":
        photo = st.camera_input(
            "Take a photo",
            key="camera",
            help="Takes one still picture with your camera. It stays in memory only.",
        )
        remember(photo, "_last_photo", name=False)
        if state.get("_last_photo"):
            return state["_last_photo"], "camera photo", "camera"
        st.caption("No photo yet: the sample below is shown until you take one.")
    samples = list_samples()
    names = [s.name for s in samples]
    if state.get("sample") not in names:
        state["sample"] = default_sample(for_demo=state.get("model_kind") == model_picker.DEMO)
    titles = {s.name: s.title for s in samples}
    chosen = st.selectbox(
        "Sample image",
        names,
        key="sample",
        format_func=lambda n: titles.get(n, n),
        help="Images that ship with featviz: free photos (a cat, a retina scan, a camera man, bricks) and "
        "shapes drawn for the demo model.",
    )
    sample = next(s for s in samples if s.name == chosen)
    return sample_bytes(sample.name), sample.filename, "sample"


def _picture() -> tuple[bytes, str, str, str, Image.Image]:
    """The image section and the decoded picture: (bytes, display name, source, digest, picture)."""
    state = st.session_state
    data, name, source = _image_section()
    digest = image_digest(data)
    try:
        image = cache.decoded_image(digest, data, name)
    except FeatvizError as exc:
        st.error(str(exc))
        st.caption("Showing the first sample instead.")
        state["_last_upload"] = None
        sample = default_sample(for_demo=state.get("model_kind") == model_picker.DEMO)
        data, name, source = sample_bytes(sample), f"{sample}.png", "sample"
        digest = image_digest(data)
        image = cache.decoded_image(digest, data, name)
    st.image(image, caption=f"{name} · {describe_image(image)}", width="stretch")
    return data, name, source, digest, image


# ---------------------------------------------------------------------------------------------------
# Layer


def _layer_section(model: LoadedModel, for_scans: bool = False) -> tuple[tuple[LayerInfo, ...], LayerInfo]:
    st.markdown("### 3 · Layer")
    if for_scans:  # Volumes and clips chooses the 3-D network's layer on the page
        st.caption("Chosen on this page, in the 3-D network. The layer below is for the other pages.")
        with st.expander("Layer for the other pages", icon=":material/layers:"):
            return _layer_select(model)
    return _layer_select(model)


def _layer_select(model: LoadedModel) -> tuple[tuple[LayerInfo, ...], LayerInfo]:
    with guard("looking at the model's layers"):
        layers = tuple(info for info in list_layers(model) if info.spatial)
        fallback = default_layer(model)
    by_name = {info.name: info for info in layers}
    state = st.session_state
    if state.get("_layer_model") != model.key:
        # A new model: keep the layer when it exists there (e.g. from a shared link), else its default.
        state["_layer_model"] = model.key
        if state.get("layer") not in by_name:
            state["layer"] = fallback
    elif state.get("layer") not in by_name:
        state["layer"] = fallback
    name = st.selectbox(
        "Layer",
        list(by_name),
        key="layer",
        format_func=lambda n: by_name[n].label,
        help="Where to look inside the network. Early layers see edges and colours, deeper layers see "
        "parts and objects. Type to search. Shown as name · kind · channels×height×width.",
        label_visibility="collapsed",
    )
    return layers, by_name[name]


def _prediction_section(selection: Selection) -> None:
    st.markdown("### What the model sees")
    if selection.model.is_volumetric:
        st.caption("A 3-D model: its guess for a scan or a clip is on the Volumes and clips page.")
        return
    with guard("running the model", stop=False):
        result = selection.extraction()
        top = result.top_k(5)
        if not top:
            st.caption("This model does not output class scores.")
            return
        for name, p in top:
            st.progress(min(max(p, 0.0), 1.0), text=f"{name} — {p * 100:.1f}%")
        if selection.model.takes_class_names and not selection.model.categories:
            st.caption("Add a class-names file to see names instead of class numbers.")


def render(for_scans: bool = False) -> Selection:
    """Draw the sidebar and return the Selection the pages work on. ``for_scans``: the page works on a scan or
    clip of its own (Volumes and clips), so the picture is folded away under a line that says so."""
    restore_from_url()
    _first_view_defaults()
    state = st.session_state
    with st.sidebar:
        if for_scans:
            st.markdown("### 1 · Scan or clip")
            st.caption("Chosen on this page. The picture below is for the other pages.")
            with st.expander("Picture for the other pages", icon=":material/image:"):
                data, name, source, digest, image = _picture()
        else:
            st.markdown("### 1 · Image")
            data, name, source, digest, image = _picture()
        model, label, model_notice = model_picker.section()
        layers, layer = _layer_section(model, for_scans)
        first_view = state.get("_notice_for")
        if first_view is None:
            state["_notice_for"] = first_view = (state.get("model_spec"), source, state.get("sample"))
        same_view = first_view == (state.get("model_spec"), source, state.get("sample"))
        notice = model_notice or (state.get("_notice") if same_view else None)
        selection = Selection(
            image=image,
            image_bytes=data,
            image_digest=digest,
            image_name=name,
            image_source=source,
            model=model,
            model_label=label,
            layers=layers,
            layer=layer,
            notice=notice,
        )
        if for_scans:
            st.markdown("### What the model sees")
            st.caption("Its guess for the scan or clip is on this page, beside the maps." if model.is_volumetric else
                       "This page shows a 3-D network's guess for the scan or clip; the guess for the picture is on "
                       "the other pages.")
        else:
            _prediction_section(selection)
        st.caption("🔒 Your images stay in this session's memory: never saved, never sent anywhere.")
    state["_selection"] = selection
    write_url(url_values(selection))
    return selection


def render_safely(for_scans: bool = False) -> Selection:
    """render(), with anything unexpected shown as one short message instead of a traceback."""
    with guard("preparing the sidebar"):
        return render(for_scans)
    raise AssertionError("unreachable")  # pragma: no cover


def three_d_model_sentence(model: LoadedModel) -> str:
    """What a page for pictures says to a 3-D model (it looks at scans and clips)."""
    return (f"{model.name} is a 3-D model: it looks at scans and clips, not at single pictures. Open "
            "**Volumes and clips** to see it on a scan or a video, or pick a 2-D model in the sidebar.")


def page_header(title: str, how_to_read: str, selection: Selection, pictures_only: bool = True) -> None:
    """Title, what is on screen, the first-view notice, a short "How to read this" and "Download report".

    ``pictures_only``: the page runs the model on the sidebar's picture, so a 3-D model gets one sentence saying
    where to see it (and the page stops there); where a 3-D model is shown (the Model page), its report is left to
    the Volumes page, which has the scan."""
    st.title(title)
    if pictures_only and selection.model.is_volumetric:
        st.info(three_d_model_sentence(selection.model), icon=":material/view_in_ar:")
        st.page_link("pages/volume.py", label="Volumes and clips", icon=":material/view_in_ar:")
        st.stop()
    shape = "×".join(str(s) for s in selection.layer.shape or ())
    st.caption(f"{selection.image_name} · {selection.model.name} · layer {selection.layer.name} ({shape})")
    if selection.notice:
        st.info(selection.notice, icon=":material/info:")
    from .report import report_button  # the report reads the caches this module's callers fill

    read, report = st.columns([4, 1.3])
    with read, st.expander("How to read this", icon=":material/help:"):
        st.markdown(how_to_read)
    with report:
        if selection.model.is_volumetric:  # its report is on the Volumes page, with the scan
            st.caption("A 3-D model's report: on the Volumes and clips page.")
        else:
            report_button(selection)
