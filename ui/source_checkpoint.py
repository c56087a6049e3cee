"""Sidebar, model source "Your checkpoint": a state dict, training checkpoint or safetensors file of a
torchvision or timm architecture (detected automatically), or a zip of a Hugging Face transformers
``save_pretrained`` folder (opened from its bytes by the library's own class, no network), with an optional
class-names file."""

from __future__ import annotations

from functools import lru_cache

import streamlit as st

from featviz_core import FeatvizError, LoadedModel
from featviz_core.images import image_digest
from featviz_core.models import ModelSource, ModelSpec, parse_class_names
from featviz_core.models.sources.detect import checkpoint_architectures
from featviz_core.models.sources.timm_catalog import architectures as timm_architectures

from . import cache, keys
from .errors import guard, log
from .state import remember

AUTO_ARCH = "Detect automatically"
SPEC = ModelSpec(ModelSource.CHECKPOINT)  # a link never holds the file: "checkpoint"


@lru_cache(maxsize=1)
def arch_choices() -> tuple[str, ...]:
    """The architecture menu: automatic, torchvision's names, then timm's (as their spec, ``timm:name``)."""
    timm_names = sorted(str(ModelSpec(ModelSource.TIMM, arch.name)) for arch in timm_architectures(maps_only=True))
    return (AUTO_ARCH, *checkpoint_architectures(), *timm_names)


def _arch_label(choice: str) -> str:
    if choice == AUTO_ARCH:
        return choice
    spec = ModelSpec.parse(choice)
    return f"{spec.name} (timm)" if spec.source is ModelSource.TIMM else choice


def class_names_upload(key: str, remember_key: str) -> tuple[tuple[str, ...] | None, str]:
    """An optional class-names file: (names or None, a digest of them for cache keys)."""
    names_file = st.file_uploader(
        "Class names (.txt, optional)", type=["txt", "json"], key=key,
        help="One class name per line, in the order of the model's outputs, so predictions read as words.",
    )
    remember(names_file, remember_key, name=False)
    state = st.session_state
    if not state.get(remember_key):
        return None, ""
    with guard("reading the class names", stop=False):
        names = tuple(parse_class_names(state[remember_key]))
        return names, keys.names_key(names)
    return None, ""


def _is_zip(filename: str) -> bool:
    return filename.lower().endswith(".zip")


def _open(data: bytes, filename: str, arch: str | None, names: tuple[str, ...] | None, names_key: str) -> LoadedModel:
    """The uploaded model: a zip goes to the Hugging Face loader, anything else to the checkpoint reader."""
    if _is_zip(filename):
        with st.spinner("Reading the Hugging Face model folder…"):
            return cache.hf_zip_model(image_digest(data), names_key, data, names, filename)
    with st.spinner("Reading the weights and finding their architecture…"):
        return cache.checkpoint_model(image_digest(data), arch, names_key, data, names, filename)


def section() -> tuple[LoadedModel | None, ModelSpec]:
    upload = st.file_uploader(
        "Weights file (.pt, .pth, .bin, .safetensors or .zip)",
        type=["pt", "pth", "bin", "ckpt", "safetensors", "zip"],
        key="ckpt_file",
        help="Weights you fine-tuned from a torchvision or timm architecture: a state dict saved with "
        "torch.save(model.state_dict(), 'model.pt'), a training checkpoint, or a .safetensors file. Or a "
        "Hugging Face transformers model: zip the folder that model.save_pretrained(folder) wrote (config.json, "
        "model.safetensors, and preprocessor_config.json if there is one); its class names come from the config. "
        "Only tensors are read; code in the file never runs (no pickles, no trust_remote_code). The file stays in "
        "memory, never on disk, and nothing is downloaded.",
    )
    choices = arch_choices()
    arch_choice = st.selectbox(
        "Architecture", choices, key="ckpt_arch", format_func=_arch_label,
        help="Leave on automatic: featviz matches the file's layer names and shapes against every torchvision "
        "and timm architecture. A zipped Hugging Face folder names its own architecture in config.json.",
    )
    remember(upload, "_last_ckpt")  # kept in memory so switching model kinds does not lose it
    names, names_key = class_names_upload("ckpt_names", "_last_names")
    state = st.session_state
    if not state.get("_last_ckpt"):
        st.caption("Upload a weights file to use it; the demo model is shown meanwhile.")
        return None, SPEC
    filename, data = state["_last_ckpt"]
    arch = None if arch_choice == AUTO_ARCH else arch_choice
    try:
        return _open(data, filename, arch, names, names_key), SPEC
    except FeatvizError as exc:
        st.error(str(exc))
    except Exception:
        log.exception("Unexpected error while loading a checkpoint")
        st.error("This file could not be read. Save a state dict with torch.save(model.state_dict(), 'model.pt'), "
                 "or zip a Hugging Face save_pretrained folder, and upload that file.")
    return None, SPEC
