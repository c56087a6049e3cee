"""Sidebar "2 · Model": which source, that source's own widgets (ui/source_*.py), and the first view.

Every source returns (a LoadedModel or None while it is not ready, the model's spec for shareable links);
until a chosen model is ready, the offline demo model is shown with a one-line notice.
"""

from __future__ import annotations

import streamlit as st

from featviz_core import LoadedModel
from featviz_core.models import describe_device

from . import cache, source_checkpoint, source_code, source_imagenet, source_onnx
from .errors import guard

IMAGENET, CHECKPOINT, ONNX, CODE, DEMO = "ImageNet model", "Your checkpoint", "ONNX file", "Your code", "Demo model"


def kinds() -> tuple[str, ...]:
    """The sources on offer; "Your code" only when the server was started with --model or by featviz.show."""
    base = (IMAGENET, CHECKPOINT, ONNX, DEMO)
    return (CODE, *base) if source_code.offered() else base


def first_view_defaults() -> str | None:
    """Choose the model a new visitor sees; returns the notice that says which (or None)."""
    state = st.session_state
    spec = state.get("model_spec")
    if spec:
        apply_model_spec(spec)
        return None
    if "model_kind" in state:  # chosen before the first run (tests, or a session restored)
        return None
    code = source_code.label()
    if code is not None:
        state["model_kind"] = CODE
        return f"Showing your model {code}."
    cached = source_imagenet.weights_are_cached(source_imagenet.DEFAULT_ARCH)
    if cached or source_imagenet.auto_download():
        state["model_kind"] = IMAGENET
        state["library"], state["arch"], state["pretrained"] = "torchvision", source_imagenet.DEFAULT_ARCH, True
        return (f"Showing {source_imagenet.DEFAULT_ARCH} with its ImageNet weights on a sample photo. "
                "Choose another image or model in the sidebar.")
    state["model_kind"] = DEMO
    return ("Showing the offline demo model, which works without internet: no ImageNet weights are on this "
            "machine yet. Choose “ImageNet model” in the sidebar to download them, or upload your own checkpoint.")


def apply_model_spec(spec: str) -> None:
    """Restore the model widgets from a shared link's ``model`` parameter."""
    state = st.session_state
    parts = spec.split(":")
    if parts[0] == "demo":
        state["model_kind"] = DEMO
    elif source_imagenet.apply_spec(parts):
        state["model_kind"] = IMAGENET
    elif parts[0] == "checkpoint":
        state["model_kind"] = CHECKPOINT
    elif parts[0] == "onnx":
        state["model_kind"] = ONNX
    elif parts[0] == "code" and source_code.offered():
        state["model_kind"] = CODE


def section() -> tuple[LoadedModel, str, str | None]:
    """Returns (model, its label, a fallback notice or None)."""
    st.markdown("### 2 · Model")
    offered = kinds()
    state = st.session_state
    if state.get("model_kind") not in offered:
        state["model_kind"] = DEMO
    kind = st.radio(
        "Model", offered, key="model_kind", horizontal=False,
        help="An ImageNet network from torchvision or timm, your own fine-tuned weights, an ONNX file from any "
        "framework, or the small demo network that ships with featviz and needs no internet.",
        label_visibility="collapsed",
    )
    model: LoadedModel | None = None
    spec = "demo"
    if kind == IMAGENET:
        model, spec = source_imagenet.section()
    elif kind == CHECKPOINT:
        model, spec = source_checkpoint.section()
    elif kind == ONNX:
        model, spec = source_onnx.section()
    elif kind == CODE:
        model, spec = source_code.section()
    notice = None
    if model is None:
        if kind != DEMO:
            notice = "Showing the offline demo model until the model you chose is ready."
        with guard("loading the demo model"):
            model = cache.demo_model()
    state["model_spec"] = spec
    st.caption(f"{model.provenance} · runs on {describe_device(model.device)}")
    if model.source in ("torchvision", "timm") and model.weights is None:
        st.caption("⚠️ Random weights: the predictions mean nothing; the maps show an untrained network.")
    return model, model.provenance, notice
