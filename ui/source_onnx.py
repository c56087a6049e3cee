"""Sidebar "2 · Model" -> "ONNX file": the upload, the input size (only when the graph leaves it open),
the pixel scaling, optional class names. The file stays in this session's memory, never on disk."""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from featviz_core import FeatvizError, LoadedModel
from featviz_core.checkpoints import parse_class_names
from featviz_core.images import image_digest
from featviz_core.sources.onnx import MAX_SIDE, MIN_SIDE, NORMALIZATION_LABELS, NORMALIZATIONS

from . import cache
from .errors import guard, log

__all__ = ["onnx_section"]

NO_GRADIENTS = (
    "Grad-CAM is not available for this file: featviz could not turn it into a PyTorch model it has checked, so "
    "onnxruntime runs it, and onnxruntime computes no gradients. Every feature-map page works."
)


def _remember(upload: Any, key: str, *, name: bool = True) -> None:
    """Keep an upload's bytes in session memory under ``key`` (they survive the widget being hidden);
    forget them when the user removes the file."""
    state = st.session_state
    if upload is not None:
        state[key] = (upload.name, upload.getvalue()) if name else upload.getvalue()
        state[key + "_by_widget"] = True
    elif state.get(key + "_by_widget"):
        state[key] = None
        state[key + "_by_widget"] = False


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


def onnx_section() -> LoadedModel | None:
    """Draw the ONNX controls; the loaded model, or None (with a message) until there is one."""
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
    names_file = st.file_uploader(
        "Class names (.txt, optional)",
        type=["txt", "json"],
        key="onnx_names",
        help="One class name per line, in the order of the model's outputs, so predictions read as words.",
    )
    _remember(upload, "_last_onnx")
    _remember(names_file, "_last_onnx_names", name=False)
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
        names: tuple[str, ...] | None = None
        names_key = ""
        if state.get("_last_onnx_names"):
            with guard("reading the class names", stop=False):
                names = tuple(parse_class_names(state["_last_onnx_names"]))
                names_key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
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
    if not model.supports_gradients:
        st.caption("⚠️ " + NO_GRADIENTS)
    return model
