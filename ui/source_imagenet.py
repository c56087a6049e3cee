"""Sidebar, model source "ImageNet model": torchvision's and timm's architectures, pretrained or random, and
torchvision's video classifiers (Kinetics-400), which are 3-D models for clips and scans (Volumes and clips page).

Pretrained weights are fetched only when the user presses Download (or, for resnet18 on a hosted app,
with FEATVIZ_AUTO_DOWNLOAD=1), with a progress bar, into the usual caches (torch hub, Hugging Face hub).
"""

from __future__ import annotations

import os
from functools import lru_cache

import streamlit as st

from featviz_core import LoadedModel
from featviz_core.models import ModelSource, ModelSpec
from featviz_core.models.sources import (
    architecture_info,
    classification_models,
    download_timm_weights,
    download_weights,
    is_convolutional,
    timm_weights_cached,
    video_models,
    weights_are_cached,
)
from featviz_core.models.sources.download import offline
from featviz_core.models.sources.timm_catalog import architectures as timm_architectures

from . import cache
from .downloads import weights_gate
from .errors import guard

VIDEO = "video"
LIBRARIES = ("torchvision", "timm", VIDEO)
LIBRARY_LABELS = {"torchvision": "torchvision", "timm": "timm", VIDEO: "torchvision video"}
DEFAULT_ARCH = "resnet18"
DEFAULT_TIMM = "resnet50.a1_in1k"
DEFAULT_VIDEO = "r3d_18"
VIDEO_TITLES = {
    "r3d_18": "3-D ResNet-18",
    "mc3_18": "ResNet-18, 3-D convolutions in the first layers only",
    "r2plus1d_18": "ResNet-18 (2+1)-D: space, then time",
    "s3d": "S3D: separable 3-D Inception",
}


def auto_download() -> bool:
    """FEATVIZ_AUTO_DOWNLOAD=1: the first view may fetch resnet18's weights without a click (for hosting)."""
    return not offline() and os.environ.get("FEATVIZ_AUTO_DOWNLOAD", "") not in ("", "0", "false")


def cnn_architectures() -> list[str]:
    """torchvision's convolutional classifiers, grouped by family, the usual ones first."""
    names = [n for n in classification_models() if is_convolutional(n)]
    return sorted(names, key=lambda n: (architecture_info(n).family, n))


def _arch_label(name: str) -> str:
    info = architecture_info(name)
    size = f" · {info.download_mb:.0f} MB" if info.download_mb else ""
    return f"{info.family} · {name}{size}"


@lru_cache(maxsize=1)
def timm_choices() -> tuple[tuple[str, ...], dict[str, str], dict[str, int | None]]:
    """timm's pretrained weight tags of every family that gives feature maps, grouped by family:
    (names, labels, parameter counts)."""
    import timm

    by_arch = {arch.name: arch for arch in timm_architectures(maps_only=True)}
    tags = [t for t in timm.list_pretrained() if t.split(".")[0] in by_arch]
    tags.sort(key=lambda t: (by_arch[t.split(".")[0]].title, t))
    labels, params = {}, {}
    for tag in tags:
        arch = by_arch[tag.split(".")[0]]
        count = f" · {arch.params / 1e6:.1f} M parameters" if arch.params else ""
        labels[tag] = f"{arch.title} · {tag}{count}"
        params[tag] = arch.params
    return tuple(tags), labels, params


def _video_label(name: str) -> str:
    info = architecture_info(name)
    size = f" · {info.download_mb:.0f} MB" if info.download_mb else ""
    return f"{VIDEO_TITLES.get(name, name)} · {name}{size}"


def _video() -> tuple[LoadedModel | None, ModelSpec]:
    """torchvision's video classifiers: 3-D models, shown on the Volumes and clips page."""
    state = st.session_state
    archs = list(video_models())
    if state.get("video_arch") not in archs:
        state["video_arch"] = DEFAULT_VIDEO
    arch = st.selectbox(
        "Video model", archs, key="video_arch", format_func=_video_label,
        help="torchvision's video classifiers, trained on Kinetics-400 (400 human actions, 16-frame clips). "
        "They are 3-D networks: open a clip or a scan on the Volumes and clips page to see what they see.",
    )
    pretrained = _pretrained_toggle("Pretrained Kinetics-400 weights")
    st.caption("A 3-D model: see it on **Volumes and clips** with a video or a scan.")
    return _open_torchvision(arch, pretrained)


def _open_torchvision(arch: str, pretrained: bool, auto: bool = False) -> tuple[LoadedModel | None, ModelSpec]:
    """Build ``arch`` (random weights) or load its weights, downloading them behind the button (or at once when
    ``auto``); (None, spec) while they are not on this machine."""
    spec = ModelSpec(ModelSource.TORCHVISION, arch, pretrained)
    if not pretrained:
        with guard("building the model"), cache.model_spinner(f"Building {arch}…", spec):
            return cache.prepared(cache.torchvision_model(arch, False)), spec
    info = architecture_info(arch)
    size = f"{info.download_mb:.0f} MB" if info.download_mb else "a file"
    if not weights_gate(arch, size, weights_are_cached(arch), lambda p: download_weights(arch, progress=p),
                        "download.pytorch.org", auto=auto):
        return None, spec
    with guard("loading the model"), cache.model_spinner(f"Loading {arch}…", spec):
        return cache.prepared(cache.torchvision_model(arch, True)), spec
    return None, spec  # pragma: no cover - guard stops the script


def _default_timm(tags: tuple[str, ...], labels: dict[str, str]) -> str:
    return DEFAULT_TIMM if DEFAULT_TIMM in labels else tags[0]


def _torchvision() -> tuple[LoadedModel | None, ModelSpec]:
    state = st.session_state
    archs = cnn_architectures()
    if state.get("arch") not in archs:
        state["arch"] = DEFAULT_ARCH
    arch = st.selectbox(
        "Architecture", archs, key="arch", format_func=_arch_label,
        help="Any convolutional network from torchvision. Type to search (e.g. “resnet”, “efficient”).",
    )
    pretrained = _pretrained_toggle()
    auto = pretrained and auto_download() and arch == DEFAULT_ARCH and not state.get("_auto_tried")
    if auto:
        state["_auto_tried"] = True
    return _open_torchvision(arch, pretrained, auto)


def _timm() -> tuple[LoadedModel | None, ModelSpec]:
    state = st.session_state
    tags, labels, params = timm_choices()
    if state.get("timm_name") not in labels:
        state["timm_name"] = _default_timm(tags, labels)
    name = st.selectbox(
        "timm model", tags, key="timm_name", format_func=labels.get,
        help="Every timm (PyTorch Image Models) network whose layers give feature maps, by family, with its "
        "pretrained versions (after the dot: how it was trained). Type to search (e.g. “convnext”).",
    )
    pretrained = _pretrained_toggle()
    spec = ModelSpec(ModelSource.TIMM, name, pretrained)
    if not pretrained:
        with guard("building the model"), cache.model_spinner(f"Building {name}…", spec):
            return cache.prepared(cache.timm_model(name, False)), spec
    count = params.get(name)
    size = f"about {count * 4 / 1e6:.0f} MB" if count else "a file"
    if not weights_gate(name, size, timm_weights_cached(name), lambda p: download_timm_weights(name, p),
                         "the Hugging Face hub"):
        return None, spec
    with guard("loading the model"), cache.model_spinner(f"Loading {name}…", spec):
        return cache.prepared(cache.timm_model(name, True)), spec
    return None, spec  # pragma: no cover - guard stops the script


def _pretrained_toggle(label: str = "Pretrained ImageNet weights") -> bool:
    st.session_state.setdefault("pretrained", True)
    data = "Kinetics-400's clips" if "Kinetics" in label else "ImageNet's photos"
    return bool(st.toggle(
        label, key="pretrained",
        help=f"On: the network as trained on {data}. Off: the same network with random weights, "
        "useful to see what training changed.",
    ))


def section() -> tuple[LoadedModel | None, ModelSpec]:
    """The ImageNet-model chooser; returns (the model or None while not ready, its link spec)."""
    state = st.session_state
    if state.get("library") not in LIBRARIES:
        state["library"] = LIBRARIES[0]
    library = st.segmented_control(
        "Library", LIBRARIES, key="library", format_func=LIBRARY_LABELS.get,
        help="torchvision: PyTorch's own 80 classifiers. timm: PyTorch Image Models, over a thousand "
        "pretrained networks (ConvNeXt, EfficientNet, RegNet, NFNet ...). torchvision video: four video "
        "classifiers trained on Kinetics-400, 3-D models for clips and scans.",
    ) or LIBRARIES[0]
    if library == VIDEO:
        return _video()
    return _timm() if library == "timm" else _torchvision()


def apply_spec(spec: ModelSpec) -> str | None:
    """Restore this source's widgets from a link's torchvision or timm spec (``tv:resnet18``, ``timm:x.y:random``).

    Returns the architecture the menus now show: the spec's own, or the default of its library when the menu
    does not offer it; None (nothing restored) for a name that is not torchvision's at all.
    """
    state = st.session_state
    if spec.source is ModelSource.TIMM:
        tags, labels, _ = timm_choices()
        shown = spec.name if spec.name in labels else _default_timm(tags, labels)
        state["library"], state["timm_name"] = "timm", shown
    elif spec.name in video_models():
        state["library"], state["video_arch"] = VIDEO, spec.name
        shown = spec.name
    elif spec.name in classification_models():
        shown = spec.name if spec.name in cnn_architectures() else DEFAULT_ARCH
        state["library"], state["arch"] = "torchvision", shown
    else:
        return None
    state["pretrained"] = spec.pretrained
    return shown
