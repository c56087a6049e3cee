"""Sidebar "2 · Model" -> "ONNX file": the upload, the input size (only when the graph leaves it open),
the pixel scaling, optional class names. The file stays in this session's memory, never on disk."""

from __future__ import annotations

import streamlit as st

from featviz_core import FeatvizError, LoadedModel
from featviz_core.images import image_digest
from featviz_core.models import NORMALIZATION_LABELS, NORMALIZATIONS, ModelSource, ModelSpec
from featviz_core.models.sources.onnx import MAX_SIDE, MIN_SIDE

from . import cache
from .errors import log
from .source_checkpoint import class_names_upload
from .state import remember

__all__ = ["section"]

SPEC = ModelSpec(ModelSource.ONNX)  # a link never holds the file: "onnx"
NO_GRADIENTS = (
    "Grad-CAM is not available for this file: featviz could not turn it into a PyTorch model it has checked, so "
    "onnxruntime runs it, and onnxruntime computes no gradients. Every feature-map page works."
)


def _size_inputs(digest: str, suggested: tuple[int, int]) -> tuple[int, int]:
    state = st.session_state
    if state.get("_onnx_size_for") != digest:  # a new file: start from its suggested size
        state["_onnx_size_for"] = digest
        state["onnx_height"], state["onnx_width"] = suggested
    st.caption("This model takes pictures of any size: choose the size to feed it.")
    left, right = st.columns(2)
    height = left.number_input(
        "Input height", MIN_SIDE, MAX_SIDE, step=8, key="onnx_height",
        help="Pixels. Most ImageNet models were trained at 224.",
    )  # fmt: skip
    width = right.number_input("Input width", MIN_SIDE, MAX_SIDE, step=8, key="onnx_width", help="Pixels.")
    return int(height), int(width)


def section() -> tuple[LoadedModel | None, ModelSpec]:
    """Draw the ONNX controls; (the loaded model, or None with a message until there is one; its spec)."""
    return _section(), SPEC


def _section() -> LoadedModel | None:
    state = st.session_state
    upload = st.file_uploader(
        "ONNX model (.onnx)",
        type=["onnx"],
        key="onnx_file",
        help="A model exported to ONNX by PyTorch, Keras (tf2onnx), Paddle (paddle2onnx) or another tool, saved "
        "as one file. It is read in memory only and never written to disk.",
    )
    state.setdefault("onnx_scaling", "imagenet")
    scaling = st.radio(
        "Pixel scaling",
        list(NORMALIZATIONS),
        key="onnx_scaling",
        format_func=NORMALIZATION_LABELS.get,
        captions=list(NORMALIZATIONS.values()),
        help="How pixel values are scaled before they enter the model: use what it was trained with.",
    )
    remember(upload, "_last_onnx")
    names, names_key = class_names_upload("onnx_names", "_last_onnx_names")
    if not state.get("_last_onnx"):
        st.caption("Upload an .onnx file to use it; the demo model is shown meanwhile.")
        return None
    filename, data = state["_last_onnx"]
    known = state.get("_onnx_digest")
    if known is None or known[0] is not data:  # hash a large file once, not on every rerun
        state["_onnx_digest"] = known = (data, image_digest(data))
    digest = known[1]
    try:
        info = cache.onnx_info(digest, data, filename)
        size = _size_inputs(digest, info.suggested_size) if info.dynamic_size else None
        with st.spinner("Reading the ONNX model and checking it against onnxruntime…"):
            model = cache.onnx_model(digest, size, scaling, names_key, data, names, filename)
    except FeatvizError as exc:
        st.error(str(exc))
        return None
    except Exception:
        log.exception("Unexpected error while loading an ONNX file")
        st.error(
            "This ONNX file could not be opened. Export the model again as one .onnx file and upload it."
        )
        return None
    if model.is_volumetric:
        st.caption(
            "A 3-D model (5-D input): scans and clips go in windowed to 0..1, then the scaling above — "
            "“ImageNet mean/std” leaves them at 0..1, as colour statistics mean nothing for a scan."
        )
    if not model.supports_gradients:
        st.caption("⚠️ " + NO_GRADIENTS)
    return model
