"""Sidebar, model source "Hugging Face": a transformers image model named by its hub id.

Its files (config.json, preprocessor_config.json, safetensors weights) are fetched into huggingface_hub's cache
only when the user presses Download, with the in-app progress bar; a model already in the cache opens at once.
A shared link (``?model=hf:<id>``) fills in the id and never downloads by itself. transformers is imported only
when such a model loads (featviz_core.models.sources.hf), never for the first view.
"""

from __future__ import annotations

import streamlit as st

from featviz_core import ModelLoadError
from featviz_core.models import LoadedModel, ModelSource, ModelSpec
from featviz_core.models.sources import download_hf, hf_cached
from featviz_core.models.sources.hf_files import split_model_id

from . import cache
from .downloads import weights_gate
from .errors import guard

QUICK = {
    "google/vit-base-patch16-224": "about 350 MB",
    "facebook/dinov2-small": "about 90 MB",
    "microsoft/swin-tiny-patch4-window7-224": "about 115 MB",
    "facebook/convnext-tiny-224": "about 115 MB",
}
"""Well-known image models offered as quick choices, with the size of their safetensors weights."""
DEFAULT_ID = next(iter(QUICK))

HELP = (
    "The id as on the model's Hugging Face page (owner/name, optionally @revision): any transformers image "
    "classifier or backbone, such as ViT, DeiT, DINOv2, Swin, BEiT or ConvNeXT. Only the config, the image "
    "processor's settings and safetensors weights are downloaded, into the Hugging Face cache on this server; "
    "weights in PyTorch's pickle format and a model's own Python code (trust_remote_code) are never used."
)


def _short(model_id: str) -> str:
    return model_id.rpartition("/")[2]


def _quick_chosen() -> None:
    """A quick choice copies its id into the text box."""
    chosen = st.session_state.get("hf_quick")
    if chosen:
        st.session_state["hf_id"] = chosen


def section() -> tuple[LoadedModel | None, ModelSpec]:
    """The Hugging Face chooser; returns (the model or None while not ready, its link spec)."""
    state = st.session_state
    if not isinstance(state.get("hf_id"), str) or not state["hf_id"].strip():
        state["hf_id"] = DEFAULT_ID
    state["hf_quick"] = state["hf_id"].strip() if state["hf_id"].strip() in QUICK else None
    st.pills("Quick choices", list(QUICK), key="hf_quick", format_func=_short, on_change=_quick_chosen,
             help="Well-known image models on the Hugging Face hub; or type any other id below.")
    model_id = st.text_input("Hugging Face model id", key="hf_id", help=HELP, placeholder=DEFAULT_ID).strip()
    try:
        split_model_id(model_id)
    except ModelLoadError as exc:
        st.error(str(exc))
        return None, ModelSpec(ModelSource.DEMO)
    spec = ModelSpec(ModelSource.HF, model_id)
    size = QUICK.get(model_id, "size shown as it downloads")
    if not weights_gate(model_id, size, hf_cached(model_id), lambda p: download_hf(model_id, p),
                        "the Hugging Face hub (safetensors only)"):
        return None, spec
    with guard("loading the model", stop=False), cache.model_spinner(f"Loading {model_id}…", spec):
        return cache.prepared(cache.hf_model(model_id)), spec
    return None, spec  # it could not be loaded: the error is on screen, the demo model shown meanwhile


def apply_spec(spec: ModelSpec) -> bool:
    """Restore the id from a link's ``hf:<id>`` spec (nothing is downloaded: the user presses Download);
    False, restoring nothing, when the link's id is not a Hugging Face model id."""
    try:
        split_model_id(spec.name)
    except ModelLoadError:
        return False
    st.session_state["hf_id"] = spec.name.strip()
    return True
