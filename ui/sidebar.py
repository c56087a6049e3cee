"""The sidebar every page shares: image, model, layer, and the model's top-5 guess."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import streamlit as st

from featviz_core import FeatvizError, LayerInfo, LoadedModel, default_layer, list_layers
from featviz_core.checkpoints import parse_class_names
from featviz_core.images import SUPPORTED_EXTENSIONS, describe_image, image_digest
from featviz_core.models import (
    architecture_info,
    classification_models,
    download_weights,
    is_convolutional,
    weights_are_cached,
)
from featviz_core.samples import default_sample, list_samples, sample_bytes

from . import cache
from .errors import guard, log
from .state import Selection, restore_from_url, url_values, write_url

SOURCES = ("Sample", "Upload", "Camera")
KINDS = ("ImageNet model", "Your checkpoint", "Demo model")
DEFAULT_ARCH = "resnet18"
AUTO_ARCH = "Detect automatically"


def _offline() -> bool:
    """FEATVIZ_OFFLINE=1: never try a download (hospital networks, tests)."""
    return os.environ.get("FEATVIZ_OFFLINE", "") not in ("", "0", "false")


def _auto_download() -> bool:
    """FEATVIZ_AUTO_DOWNLOAD=1: the first view may fetch resnet18's weights without a click (for hosting)."""
    return not _offline() and os.environ.get("FEATVIZ_AUTO_DOWNLOAD", "") not in ("", "0", "false")


def cnn_architectures() -> list[str]:
    """torchvision's convolutional classifiers, grouped by family, the usual ones first."""
    names = [n for n in classification_models() if is_convolutional(n)]
    return sorted(names, key=lambda n: (architecture_info(n).family, n))


def _arch_label(name: str) -> str:
    info = architecture_info(name)
    size = f" · {info.download_mb:.0f} MB" if info.download_mb else ""
    return f"{info.family} · {name}{size}"


# ---------------------------------------------------------------------------------------------------
# First view and shared links


def _first_view_defaults() -> None:
    """Choose what a new visitor sees: resnet18 when its weights are here (or may be fetched), else the demo."""
    state = st.session_state
    if state.get("_defaults_set"):
        return
    state["_defaults_set"] = True
    spec = state.get("model_spec")
    if spec:
        _apply_model_spec(spec)
    elif "model_kind" in state:  # chosen before the first run (tests, or a session restored)
        pass
    elif weights_are_cached(DEFAULT_ARCH) or _auto_download():
        state["model_kind"] = KINDS[0]
        state["arch"] = DEFAULT_ARCH
        state["pretrained"] = True
        state["_notice"] = (
            f"Showing {DEFAULT_ARCH} with its ImageNet weights on a sample photo. "
            "Choose another image or model in the sidebar."
        )
    else:
        state["model_kind"] = KINDS[2]
        state["_notice"] = (
            "Showing the offline demo model, which works without internet: no ImageNet weights are on this "
            "machine yet. Choose “ImageNet model” in the sidebar to download them, or upload your own checkpoint."
        )
    if "sample" not in state:
        state["sample"] = default_sample(for_demo=state.get("model_kind") == KINDS[2])
    state.setdefault("image_source", SOURCES[0])


def _apply_model_spec(spec: str) -> None:
    state = st.session_state
    parts = spec.split(":")
    if parts[0] == "demo":
        state["model_kind"] = KINDS[2]
    elif parts[0] == "tv" and len(parts) >= 2 and parts[1] in classification_models():
        state["model_kind"] = KINDS[0]
        state["arch"] = parts[1]
        state["pretrained"] = not (len(parts) > 2 and parts[2] == "random")
    elif parts[0] == "checkpoint":
        state["model_kind"] = KINDS[1]


# ---------------------------------------------------------------------------------------------------
# Image


def _remember(upload: Any, key: str, *, name: bool = True) -> None:
    """Keep the bytes of an uploaded file in session memory under ``key``, so they survive the widget being
    hidden (another image source or model kind); forget them when the user removes the file."""
    state = st.session_state
    if upload is not None:
        state[key] = (upload.name, upload.getvalue()) if name else upload.getvalue()
        state[key + "_by_widget"] = True
    elif state.get(key + "_by_widget"):
        state[key] = None
        state[key + "_by_widget"] = False


def _image_section() -> tuple[bytes, str, str]:
    """Returns (bytes, display name, source) of the image in use."""
    st.markdown("### 1 · Image")
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
        _remember(upload, "_last_upload")
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
        _remember(photo, "_last_photo", name=False)
        if state.get("_last_photo"):
            return state["_last_photo"], "camera photo", "camera"
        st.caption("No photo yet: the sample below is shown until you take one.")
    samples = list_samples()
    names = [s.name for s in samples]
    if state.get("sample") not in names:
        state["sample"] = default_sample(for_demo=state.get("model_kind") == KINDS[2])
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


# ---------------------------------------------------------------------------------------------------
# Model


def _download_with_progress(arch: str) -> None:
    info = architecture_info(arch)
    size = f"{info.download_mb:.0f} MB" if info.download_mb else "the file"
    bar = st.progress(0.0, text=f"Downloading {arch} weights ({size})…")
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        now = time.monotonic()
        if total and (now - last[0] > 0.1 or done >= total):
            last[0] = now
            bar.progress(min(done / total, 1.0), text=f"Downloading {arch}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

    try:
        download_weights(arch, progress=progress)
    finally:
        bar.empty()


def _torchvision_section() -> LoadedModel | None:
    state = st.session_state
    archs = cnn_architectures()
    if state.get("arch") not in archs:
        state["arch"] = DEFAULT_ARCH
    arch = st.selectbox(
        "Architecture",
        archs,
        key="arch",
        format_func=_arch_label,
        help="Any convolutional network from torchvision. Type to search (e.g. “resnet”, “efficient”).",
    )
    state.setdefault("pretrained", True)
    pretrained = st.toggle(
        "Pretrained ImageNet weights",
        key="pretrained",
        help="On: the network as trained on 1.2 million photos. Off: the same network with random weights, "
        "useful to see what training changed.",
    )
    if not pretrained:
        with guard("building the model"):
            return cache.torchvision_model(arch, False)
    if not weights_are_cached(arch):
        info = architecture_info(arch)
        size = f"{info.download_mb:.0f} MB" if info.download_mb else "a file"
        if _offline():
            st.warning(f"{arch}'s weights are not on this machine and downloads are switched off here.")
            return None
        auto = _auto_download() and arch == DEFAULT_ARCH and not state.get("_auto_tried")
        if auto or st.button(
            f"Download {arch} weights ({size})",
            help="Fetches the official weights once from download.pytorch.org and keeps them in the "
            "torch cache on this server. This is the only thing featviz ever downloads.",
            type="primary",
        ):
            state["_auto_tried"] = True
            try:
                _download_with_progress(arch)
            except FeatvizError as exc:
                st.error(str(exc))
                return None
        else:
            st.caption(f"{arch}'s ImageNet weights are not downloaded yet.")
            return None
    with guard("loading the model"):
        with st.spinner(f"Loading {arch}…"):
            return cache.torchvision_model(arch, True)
    return None  # pragma: no cover - guard stops the script


def _checkpoint_section() -> LoadedModel | None:
    upload = st.file_uploader(
        "Checkpoint (.pt / .pth state dict)",
        type=["pt", "pth", "bin", "ckpt"],
        key="ckpt_file",
        help="Weights you fine-tuned from a torchvision architecture, saved with "
        "torch.save(model.state_dict(), 'model.pt'). Only tensors are read; code in the file never runs.",
    )
    arch_choice = st.selectbox(
        "Architecture",
        [AUTO_ARCH, *classification_models()],
        key="ckpt_arch",
        help="Leave on automatic: featviz matches the checkpoint's layer names and shapes against torchvision.",
    )
    names_file = st.file_uploader(
        "Class names (.txt, optional)",
        type=["txt", "json"],
        key="ckpt_names",
        help="One class name per line, in the order of the model's outputs, so predictions read as words.",
    )
    state = st.session_state
    _remember(upload, "_last_ckpt")  # kept in memory so switching model kinds does not lose it
    _remember(names_file, "_last_names", name=False)
    if not state.get("_last_ckpt"):
        st.caption("Upload a checkpoint to use it; the demo model is shown meanwhile.")
        return None
    filename, data = state["_last_ckpt"]
    names: tuple[str, ...] | None = None
    names_key = ""
    if state.get("_last_names"):
        with guard("reading the class names", stop=False):
            names = tuple(parse_class_names(state["_last_names"]))
            names_key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    arch = None if arch_choice == AUTO_ARCH else arch_choice
    try:
        with st.spinner("Reading the checkpoint…"):
            return cache.checkpoint_model(image_digest(data), arch, names_key, data, names, filename)
    except FeatvizError as exc:
        st.error(str(exc))
    except Exception:
        log.exception("Unexpected error while loading a checkpoint")
        st.error("This checkpoint could not be read. Save a state dict with "
                 "torch.save(model.state_dict(), 'model.pt') and upload that file.")
    return None


def _model_section() -> tuple[LoadedModel, str, str | None]:
    """Returns (model, its label, a fallback notice or None)."""
    st.markdown("### 2 · Model")
    kind = st.radio(
        "Model",
        KINDS,
        key="model_kind",
        horizontal=False,
        help="An ImageNet network from torchvision, your own fine-tuned weights, or the small demo network "
        "that ships with featviz and needs no internet.",
        label_visibility="collapsed",
    )
    model: LoadedModel | None = None
    if kind == KINDS[0]:
        model = _torchvision_section()
        spec = f"tv:{st.session_state['arch']}" + ("" if st.session_state.get("pretrained") else ":random")
    elif kind == KINDS[1]:
        model = _checkpoint_section()
        spec = "checkpoint"
    else:
        spec = "demo"
    notice = None
    if model is None:
        if kind != KINDS[2]:
            notice = "Showing the offline demo model until the model you chose is ready."
        with guard("loading the demo model"):
            model = cache.demo_model()
        spec = "demo" if kind == KINDS[2] else spec
    st.session_state["model_spec"] = spec
    st.caption(model.provenance)
    if model.source == "torchvision" and model.weights is None:
        st.caption("⚠️ Random weights: the predictions mean nothing; the maps show an untrained network.")
    return model, model.provenance, notice


# ---------------------------------------------------------------------------------------------------
# Layer


def _layer_section(model: LoadedModel) -> tuple[tuple[LayerInfo, ...], LayerInfo]:
    st.markdown("### 3 · Layer")
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
    with guard("running the model", stop=False):
        result = selection.extraction()
        top = result.top_k(5)
        if not top:
            st.caption("This model does not output class scores.")
            return
        for name, p in top:
            st.progress(min(max(p, 0.0), 1.0), text=f"{name} — {p * 100:.1f}%")
        if selection.model.source == "checkpoint" and not selection.model.categories:
            st.caption("Add a class-names file to see names instead of class numbers.")


def render() -> Selection:
    """Draw the sidebar and return the Selection the pages work on."""
    restore_from_url()
    _first_view_defaults()
    state = st.session_state
    with st.sidebar:
        data, name, source = _image_section()
        digest = image_digest(data)
        try:
            image = cache.decoded_image(digest, data, name)
        except FeatvizError as exc:
            st.error(str(exc))
            st.caption("Showing the first sample instead.")
            state["_last_upload"] = None
            sample = default_sample(for_demo=state.get("model_kind") == KINDS[2])
            data, name, source = sample_bytes(sample), f"{sample}.png", "sample"
            digest = image_digest(data)
            image = cache.decoded_image(digest, data, name)
        st.image(image, caption=f"{name} · {describe_image(image)}", width="stretch")
        model, label, model_notice = _model_section()
        layers, layer = _layer_section(model)
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
        _prediction_section(selection)
        st.caption("🔒 Your images stay in this session's memory: never saved, never sent anywhere.")
    state["_selection"] = selection
    write_url(url_values(selection))
    return selection


def render_safely() -> Selection:
    """render(), with anything unexpected shown as one short message instead of a traceback."""
    with guard("preparing the sidebar"):
        return render()
    raise AssertionError("unreachable")  # pragma: no cover


def page_header(title: str, how_to_read: str, selection: Selection) -> None:
    """Title, what is on screen, the first-view notice, a short "How to read this" and "Download report"."""
    st.title(title)
    shape = "×".join(str(s) for s in selection.layer.shape or ())
    st.caption(f"{selection.image_name} · {selection.model.name} · layer {selection.layer.name} ({shape})")
    if selection.notice:
        st.info(selection.notice, icon=":material/info:")
    from .report import report_button  # the report reads the caches this module's callers fill

    read, report = st.columns([4, 1.3])
    with read, st.expander("How to read this", icon=":material/help:"):
        st.markdown(how_to_read)
    with report:
        report_button(selection)
