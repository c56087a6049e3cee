"""Every cache of the app lives here, bounded, and keyed by strings (never by arrays or tensors).

Models: ``st.cache_resource`` (shared by all sessions; each LoadedModel carries its own lock).
Extractions: ``st.cache_data`` keyed by the image bytes' digest + the model key + the layer names.
Images: decoded once per digest. Maps (CAM) and sanity checks: keyed by the same digest and model key + the layer,
the class or target, the method (the slow methods' results live in ui/jobs.py under :func:`ui.keys.cam_key`).
Every key is built in :mod:`ui.keys`.
All of it stays in memory: nothing a user uploads is written to disk.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import streamlit as st
from PIL import Image

from featviz_core import (
    Extraction,
    FeatvizError,
    LoadedModel,
    extract,
    list_layers,
    load_from_code,
    load_timm,
    load_torchvision,
)
from featviz_core.attention import AttentionResult
from featviz_core.attention import attention as compute_attention
from featviz_core.cam import CamResult, CamTarget, SanityResult, sanity_check
from featviz_core.cam import cam as compute_cam
from featviz_core.demo import load_demo, load_demo_volume
from featviz_core.images import SeriesInfo, Volume, auto_window, list_series, load_image, load_volume
from featviz_core.models import choose_device, place
from featviz_core.models.sources import OnnxInfo, inspect_onnx, load_checkpoint, load_hf, load_onnx

from .frame import busy
from .keys import cam_key as cam_key  # where the pages found it first

log = logging.getLogger("featviz")

# Bounds, shared by every session of the process. A layer's maps are at most a few MB (VGG's first layers:
# 64×224×224 float32 = 12.8 MB); the byte limit keeps a small Community Cloud machine safe whatever the layers.
MODEL_ENTRIES = 3
EXTRACTION_ENTRIES = int(os.environ.get("FEATVIZ_EXTRACTION_CACHE", "32"))
EXTRACTION_BYTES = os.environ.get("FEATVIZ_EXTRACTION_CACHE_SIZE", "256MiB")
IMAGE_ENTRIES = 16
IMAGE_BYTES = "128MiB"

_forward_passes = itertools.count(1)
_forward_lock = threading.Lock()


def _count_forward(kind: str, model_key: str, digest: str, layers: tuple[str, ...]) -> None:
    with _forward_lock:
        n = next(_forward_passes)
    # The browser tests read this line to prove that display-only changes never rerun the model.
    log.info("featviz forward pass #%d: %s %s image=%s layers=%s", n, kind, model_key, digest[:12], ",".join(layers))


def placed(model: LoadedModel) -> LoadedModel:
    """``model`` on the device this server uses (GPU when there is one); a model that cannot run there stays
    on the CPU and its provenance says why. A wrong FEATVIZ_DEVICE is logged and the CPU used."""
    try:
        target = choose_device()
    except FeatvizError as exc:
        log.warning("%s; using the CPU", exc)
        return model
    placement = place(model, target)
    if placement.fallback:
        return dataclasses.replace(placement.model, provenance=f"{model.provenance} — {placement.fallback}")
    return placement.model


_prepared: set[tuple[object, ...]] = set()


@contextmanager
def model_spinner(text: str, *key: object) -> Iterator[None]:
    """A spinner naming the model around its loading: shown at once for a model this process has not
    prepared yet; for one it has (nearly always a cache hit) Streamlit's own, which appears only after half
    a second, so switching back and forth never flashes a spinner."""
    if key in _prepared:
        with st.spinner(text):
            yield
        return
    with busy(text):
        yield
    _prepared.add(key)


def mark_prepared(*key: object) -> None:
    """Say that the model of ``key`` (as given to :func:`model_spinner`) is loaded (ui/warm.py)."""
    _prepared.add(key)


def prepared(model: LoadedModel) -> LoadedModel:
    """``model`` with its dry run done (``list_layers`` remembers it per model), so the spinner around the
    loading covers the whole wait. A dry run that fails is left to the layer section to report."""
    try:
        list_layers(model)
    except Exception:  # noqa: BLE001 - reported by the sidebar's layer section, which runs it again
        log.debug("dry run of %s failed; the layer section reports it", model.name, exc_info=True)
    return model


@st.cache_resource(max_entries=MODEL_ENTRIES, show_spinner=False)
def torchvision_model(name: str, pretrained: bool) -> LoadedModel:
    """A torchvision model; with ``pretrained`` the weights must already be in the cache (see downloads)."""
    return placed(load_torchvision(name, weights="DEFAULT" if pretrained else None))


@st.cache_resource(max_entries=MODEL_ENTRIES, show_spinner=False)
def timm_model(name: str, pretrained: bool) -> LoadedModel:
    """A timm model; with ``pretrained`` the weights must already be in the Hugging Face cache."""
    return placed(load_timm(name, pretrained=pretrained))


@st.cache_resource(max_entries=2, show_spinner=False)
def code_model(
    spec: str, weights: str | None, classes: str | None, input_size: tuple[int, int] | None,
    normalization: str | None,
) -> LoadedModel:
    """The model class named on the command line (``--model pkg.module:factory``)."""
    return placed(load_from_code(spec, weights, classes, input_size=input_size, normalization=normalization))


@st.cache_resource(max_entries=1, show_spinner=False)
def demo_model() -> LoadedModel:
    return placed(load_demo())


@st.cache_resource(max_entries=2, show_spinner=False)
def checkpoint_model(
    digest: str, arch: str | None, names_digest: str, _data: bytes, _names: tuple[str, ...] | None, _filename: str
) -> LoadedModel:
    """A user's checkpoint, keyed by the digest of its bytes (the bytes themselves are not hashed again)."""
    return placed(load_checkpoint(_data, arch=arch, categories=list(_names) if _names else None, filename=_filename))


@st.cache_resource(max_entries=MODEL_ENTRIES, show_spinner=False)
def hf_model(model_id: str) -> LoadedModel:
    """A Hugging Face transformers model by its hub id; its files must already be in the huggingface_hub cache
    (see ui/source_hf.py: they are fetched only when the user presses Download)."""
    return placed(load_hf(model_id))


@st.cache_resource(max_entries=2, show_spinner=False)
def hf_zip_model(
    digest: str, names_digest: str, _data: bytes, _names: tuple[str, ...] | None, _filename: str
) -> LoadedModel:
    """A user's zip of a transformers ``save_pretrained`` folder, keyed by the digest of its bytes (no network).
    Class names uploaded beside it replace the config's ``id2label`` (and so change the model key)."""
    model = load_hf(_data, filename=_filename)
    if _names:
        model = dataclasses.replace(model, categories=list(_names), key=f"{model.key}:{names_digest}",
                                    provenance=f"{model.provenance}, class names from your file")
    return placed(model)


@st.cache_data(max_entries=8, show_spinner=False)
def onnx_info(digest: str, _data: bytes, _filename: str) -> OnnxInfo:
    """What an uploaded ONNX file says about its input (keyed by the digest of its bytes)."""
    return inspect_onnx(_data, _filename)


@st.cache_resource(max_entries=2, show_spinner=False)
def onnx_model(
    digest: str,
    input_size: tuple[int, int] | None,
    normalization: str,
    names_digest: str,
    _data: bytes,
    _names: tuple[str, ...] | None,
    _filename: str,
) -> LoadedModel:
    """An uploaded ONNX model, keyed by the digest of its bytes and the settings (never by the bytes)."""
    return placed(load_onnx(
        _data, _filename, input_size=input_size, normalization=normalization,
        categories=list(_names) if _names else None,
    ))  # fmt: skip


@st.cache_data(max_entries=IMAGE_ENTRIES, max_size=IMAGE_BYTES, show_spinner=False)
def decoded_image(digest: str, _data: bytes, filename: str | None) -> Image.Image:
    """The decoded, validated image for these bytes (raises ImageLoadError for bad files)."""
    return load_image(_data, filename)


@st.cache_data(max_entries=EXTRACTION_ENTRIES, max_size=EXTRACTION_BYTES, show_spinner=False)
def extraction(
    digest: str, model_key: str, layers: tuple[str, ...], _model: LoadedModel, _image: Image.Image
) -> Extraction:
    """One forward pass per (image, model, layers); every later display change reads it from here."""
    _count_forward("extract", model_key, digest, layers)
    return extract(_model, _image, list(layers))


@st.cache_data(max_entries=EXTRACTION_ENTRIES, max_size=EXTRACTION_BYTES, show_spinner=False)
def cam(
    digest: str,
    model_key: str,
    layer: str,
    class_index: int | None,
    _model: LoadedModel,
    _image: Image.Image,
    method: str = "gradcam",
    target_key: str = "",
    _target: CamTarget | None = None,
) -> CamResult:
    """One class activation map (a forward and, for gradient methods, a backward pass), cached like extractions.
    ``target_key`` is ``_target.key`` (the target itself is not hashed)."""
    _count_forward(method, model_key, digest, (layer,))
    return compute_cam(_model, _image, layer, class_index, method, target=_target)


SANITY_ENTRIES = 16


@st.cache_data(max_entries=SANITY_ENTRIES, max_size=EXTRACTION_BYTES, show_spinner=False)
def sanity(
    digest: str,
    model_key: str,
    layer: str,
    class_index: int | None,
    method: str,
    target_key: str,
    seed: int,
    _model: LoadedModel,
    _image: Image.Image,
    _target: CamTarget | None,
    _original: CamResult,
) -> SanityResult:
    """The sanity check of a map already computed (``_original``): only the randomised copy's map is new."""
    _count_forward(f"sanity-{method}", model_key, digest, (layer,))
    return sanity_check(_model, _image, layer, class_index, method, seed=seed, target=_target, original=_original)


@st.cache_data(max_entries=EXTRACTION_ENTRIES, max_size=EXTRACTION_BYTES, show_spinner=False)
def attention(
    digest: str, model_key: str, block: str, method: str, _model: LoadedModel, _image: Image.Image
) -> AttentionResult:
    """A transformer's attention maps at ``block`` (``method`` "cls" or "rollout"), cached like extractions."""
    _count_forward(f"attention-{method}", model_key, digest, (block,))
    return compute_attention(_model, _image, block, method=method)  # type: ignore[arg-type]


# Volumes and clips (pages/volume.py). A Volume is read-only and up to 128 MiB: cache_resource shares the one
# object with every session and never copies it (cache_data would unpickle a copy on every slider move).
VOLUME_ENTRIES = 3


@st.cache_resource(max_entries=VOLUME_ENTRIES, show_spinner=False)
def volume(digest: str, filename: str, series: str | None, _data: bytes) -> Volume:
    """The volume or clip in these bytes (one ``series`` of a DICOM zip), keyed by their digest: moving a slider
    never reads the file again. Raises ImageLoadError (SeriesChoiceError for a zip of several series)."""
    return load_volume(_data, filename, series=series)


@st.cache_data(max_entries=8, show_spinner=False)
def volume_series(digest: str, _data: bytes) -> list[SeriesInfo]:
    """The DICOM series in a zip (for the series picker), keyed by the digest of its bytes."""
    return list_series(_data)


@st.cache_data(max_entries=16, show_spinner=False)
def volume_auto_window(volume_key: str, _volume: Volume) -> tuple[float, float]:
    """The 1st..99th percentile window of a loaded volume (``volume_key``: digest and series)."""
    return auto_window(_volume.array)


@st.cache_resource(max_entries=1, show_spinner=False)
def demo_volume_model() -> LoadedModel:
    """The bundled 3-D demo model (offline), shared by every session."""
    return placed(load_demo_volume())


@st.cache_data(max_entries=8, max_size=EXTRACTION_BYTES, show_spinner=False)
def volume_extraction(volume_key: str, model_key: str, layer: str, _model: LoadedModel, _volume: Volume) -> np.ndarray:
    """A 3-D model's maps (C, D, H, W) at ``layer`` for a loaded volume (``volume_key``: digest and series)."""
    _count_forward("extract-3d", model_key, volume_key, (layer,))
    return extract(_model, _volume, [layer]).activations[layer]


@st.cache_data(max_entries=8, max_size=EXTRACTION_BYTES, show_spinner=False)
def volume_cam(volume_key: str, model_key: str, layer: str, _model: LoadedModel, _volume: Volume) -> CamResult:
    """Grad-CAM (D, H, W) of a 3-D model's most probable class at ``layer`` for a loaded volume."""
    _count_forward("gradcam-3d", model_key, volume_key, (layer,))
    return compute_cam(_model, _volume, layer, None, "gradcam")
