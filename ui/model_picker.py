"""Sidebar "2 · Model": which source, that source's own widgets (ui/source_*.py), and the first view.

Every source returns (a LoadedModel or None while it is not ready, the model's :class:`ModelSpec` for shareable
links); until a chosen model is ready, the offline demo model is shown with a one-line notice. A link naming a
model the sidebar cannot offer says so in the page's notice, with the model shown instead.
"""

from __future__ import annotations

import streamlit as st

from featviz_core import LoadedModel, ModelLoadError
from featviz_core.models import ModelSource, ModelSpec, describe_device

from . import cache, source_checkpoint, source_code, source_hf, source_imagenet, source_onnx
from .errors import guard

IMAGENET, HF, CHECKPOINT, ONNX = "ImageNet model", "Hugging Face", "Your checkpoint", "ONNX file"
CODE, DEMO = "Your code", "Demo model"


def kinds() -> tuple[str, ...]:
    """The sources on offer; "Your code" only when the server was started with --model or by featviz.show."""
    base = (IMAGENET, HF, CHECKPOINT, ONNX, DEMO)
    return (CODE, *base) if source_code.offered() else base


def first_view_defaults() -> str | None:
    """Choose the model a new visitor sees; returns the notice that says which (or None)."""
    state = st.session_state
    spec = state.get("model_spec")
    if spec:
        return apply_model_spec(spec)
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


def cannot_open(named: str, instead: str) -> str:
    """The notice for a link whose model is not on offer here."""
    return f"The link names {named}, which this featviz cannot open; showing {instead} instead."


def apply_model_spec(text: str) -> str | None:
    """Restore the model widgets from a shared link's ``model`` parameter; returns the notice saying so when
    the link names a model this featviz cannot offer (and which model is shown instead), else None."""
    state = st.session_state
    state["model_kind"] = DEMO
    try:
        spec = ModelSpec.parse(text)
    except ModelLoadError:
        return cannot_open(f"the model '{text}'", "the demo model")
    if spec.library:
        shown = source_imagenet.apply_spec(spec)
        if shown is None:
            return cannot_open(spec.describe(), "the demo model")
        state["model_kind"] = IMAGENET
        return None if shown == spec.name else cannot_open(spec.describe(), shown)
    if spec.source is ModelSource.HF and not spec.is_file:  # a link fills in the id; it never downloads
        if not source_hf.apply_spec(spec):
            return cannot_open(spec.describe(), "the demo model")
        state["model_kind"] = HF
        return None
    code = source_code.available()
    ours = source_code.offered() and (not spec.name or (code is not None and spec.name == code.model))
    kinds = {ModelSource.DEMO: DEMO, ModelSource.CHECKPOINT: CHECKPOINT, ModelSource.ONNX: ONNX,
             ModelSource.CODE: CODE if ours else None}
    if kinds.get(spec.source) is None or spec.is_file:  # a file is never opened from a link
        return cannot_open(spec.describe(), "the demo model")
    state["model_kind"] = kinds[spec.source]
    return None


def section() -> tuple[LoadedModel, str, str | None]:
    """Returns (model, its label, a fallback notice or None)."""
    st.markdown("### 2 · Model")
    offered = kinds()
    state = st.session_state
    if state.get("model_kind") not in offered:
        state["model_kind"] = DEMO
    kind = st.radio(
        "Model", offered, key="model_kind", horizontal=False,
        help="An ImageNet network from torchvision or timm, a Hugging Face transformers image model by its id, "
        "your own fine-tuned weights (or a zipped save_pretrained folder), an ONNX file from any framework, or "
        "the small demo network that ships with featviz and needs no internet.",
        label_visibility="collapsed",
    )
    model: LoadedModel | None = None
    spec = ModelSpec(ModelSource.DEMO)
    if kind == IMAGENET:
        model, spec = source_imagenet.section()
    elif kind == HF:
        model, spec = source_hf.section()
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
    state["model_spec"] = str(spec)
    st.caption(f"{model.provenance} · runs on {describe_device(model.device)}")
    if model.has_random_weights:
        st.caption("⚠️ Random weights: the predictions mean nothing; the maps show an untrained network.")
    return model, model.provenance, notice
