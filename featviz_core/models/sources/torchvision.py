"""torchvision's classification architectures, with their pretrained weights (downloaded once into torch's
hub cache) or seeded random weights. Preprocessing is exactly the weights' ``transforms()``."""

from __future__ import annotations

import os
import urllib.parse
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torchvision
from torchvision.transforms import functional as TF

from ...errors import ModelLoadError
from ..keys import model_key
from ..loaded import LoadedModel, ModelSource, view_transform
from ..volume_input import VideoPreprocessing, no_picture, no_view
from .download import ProgressCallback, fetch

__all__ = [
    "ArchitectureInfo",
    "architecture_info",
    "classification_models",
    "download_weights",
    "is_convolutional",
    "load_torchvision",
    "model_family",
    "video_models",
    "weights_are_cached",
    "weights_cache_path",
]

# Architectures whose inner outputs are tokens (N, L, D), not maps: listed apart, since only their
# convolutional stem gives channel maps. (Swin and MaxViT work in channels-last maps, which featviz reads.)
_NON_CNN_PREFIXES = ("vit_",)


@lru_cache(maxsize=1)
def classification_models() -> tuple[str, ...]:
    """Every torchvision classification architecture, by builder name (``resnet18``, ``vgg16`` ...)."""
    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


VIDEO_FRAMES = 16
"""Frames a torchvision video classifier is fed: the clip length its weights were trained and evaluated on."""


@lru_cache(maxsize=1)
def video_models() -> tuple[str, ...]:
    """torchvision's convolutional video classifiers (Kinetics-400), which take clips (1, 3, T, H, W):
    ``mc3_18``, ``r2plus1d_18``, ``r3d_18``, ``s3d``. They are 3-D models: they take a
    :class:`~featviz_core.images.volume.Volume` (a clip, or a scan's slices as frames)."""
    names = torchvision.models.list_models(module=torchvision.models.video)
    return tuple(sorted(n for n in names if n.startswith(("r3d", "mc3", "r2plus1d", "s3d"))))


def is_convolutional(name: str) -> bool:
    """False for the transformer families whose inner outputs are tokens, not (C, H, W) maps."""
    return not name.startswith(_NON_CNN_PREFIXES)


def _check_name(name: str) -> None:
    if name not in classification_models() and name not in video_models():
        close = [m for m in (*classification_models(), *video_models()) if m.startswith(name[:4])][:5]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelLoadError(
            f"'{name}' is not a torchvision classification model.{hint} "
            "Choose one from featviz_core.classification_models() (video_models() for clips)."
        )


def _weights_enum(name: str) -> Any:
    return torchvision.models.get_model_weights(name)


def _resolve_weights(name: str, weights: str | None) -> Any | None:
    if weights is None:
        return None
    enum = _weights_enum(name)
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        choices = ", ".join(w.name for w in enum)
        raise ModelLoadError(
            f"'{weights}' is not a weight set of {name}. Use one of: DEFAULT, {choices}."
        ) from None


def weights_cache_path(name: str, weights: str = "DEFAULT") -> str:
    """Where torchvision keeps (or would keep) the weight file of ``name`` (honours ``TORCH_HOME``)."""
    _check_name(name)
    w = _resolve_weights(name, weights)
    filename = os.path.basename(urllib.parse.urlparse(w.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def weights_are_cached(name: str, weights: str = "DEFAULT") -> bool:
    """True when the pretrained weights are already on disk, so loading needs no network."""
    try:
        return os.path.isfile(weights_cache_path(name, weights))
    except ModelLoadError:
        return False


def download_weights(name: str, weights: str = "DEFAULT", progress: ProgressCallback | None = None) -> str:
    """Make sure the pretrained weights of ``name`` are in torch's hub cache; return the file's path.

    Nothing is downloaded when the file is already there. Otherwise the file is fetched from torchvision's
    address, reporting ``progress(done, total)``, checked against the hash in its name, and moved into place
    only when complete. Any network failure -> :class:`ModelLoadError` saying what to do instead.
    """
    _check_name(name)
    w = _resolve_weights(name, weights)
    return fetch(w.url, weights_cache_path(name, w.name), progress, f"the pretrained weights of {name}")


def _input_size(transforms: Any) -> tuple[int, int]:
    crop = list(getattr(transforms, "crop_size", [224]))
    return (crop[0], crop[-1])


def load_torchvision(
    name: str,
    weights: str | None = "DEFAULT",
    progress: ProgressCallback | None = None,
) -> LoadedModel:
    """A torchvision classification model, with pretrained weights unless ``weights`` is None.

    Pretrained weights are read from torch's hub cache (``$TORCH_HOME/hub/checkpoints``) and downloaded
    there first when missing, reporting ``progress(done, total)``. No network -> :class:`ModelLoadError`.
    Preprocessing is exactly ``weights.transforms()`` (for random weights: the default weights' transforms).
    A video classifier (:func:`video_models`) is a 3-D model: it takes a Volume, :data:`VIDEO_FRAMES` frames
    taken evenly from it, then its weights' video ``transforms()`` -> (1, 3, T, H, W).
    """
    _check_name(name)
    enum = _weights_enum(name)
    w = _resolve_weights(name, weights)
    reference = w if w is not None else enum.DEFAULT
    builder = torchvision.models.get_model_builder(name)
    if w is not None:
        path = download_weights(name, w.name, progress)
        try:
            module = builder(weights=w, progress=False)
        except Exception as exc:  # a damaged cache file
            raise ModelLoadError(
                f"The cached weights of {name} at {path} could not be read ({type(exc).__name__}). "
                "Delete that file so it downloads again, or use the offline demo model."
            ) from None
        categories = list(w.meta.get("categories") or []) or None
        provenance = f"torchvision {name}, pretrained weights {w.name}"
        key = model_key(ModelSource.TORCHVISION, name, w.name)
    else:
        torch.manual_seed(0)
        with warnings.catch_warnings():  # googlenet/inception warn about their init scheme
            warnings.simplefilter("ignore", FutureWarning)
            module = builder(weights=None)
        categories = list(reference.meta.get("categories") or []) or None
        provenance = f"torchvision {name}, random weights (seed 0), not trained"
        key = model_key(ModelSource.TORCHVISION, name, "random")
    module.eval()
    transforms = reference.transforms()
    if name in video_models():
        return LoadedModel(
            module=module, name=name, key=key, categories=categories, input_channels=3,
            input_size=_input_size(transforms), transform=no_picture, view=no_view, source="torchvision",
            provenance=provenance, weights=w.name if w is not None else None, input_depth=VIDEO_FRAMES,
            volume_transform=VideoPreprocessing(transforms, VIDEO_FRAMES),
        )  # fmt: skip
    view = view_transform(
        getattr(transforms, "resize_size", None),
        getattr(transforms, "crop_size", [224]),
        getattr(transforms, "interpolation", TF.InterpolationMode.BILINEAR),
    )
    return LoadedModel(
        module=module,
        name=name,
        key=key,
        categories=categories,
        input_channels=3,
        input_size=_input_size(transforms),
        transform=transforms,
        view=view,
        source=ModelSource.TORCHVISION,
        provenance=provenance,
        weights=w.name if w is not None else None,
    )
_FAMILIES = (
    ("wide_resnet", "Wide ResNet"), ("resnext", "ResNeXt"), ("resnet", "ResNet"), ("vgg", "VGG"),
    ("densenet", "DenseNet"), ("efficientnet_v2", "EfficientNet V2"), ("efficientnet", "EfficientNet"),
    ("mobilenet", "MobileNet"), ("mnasnet", "MNASNet"), ("regnet", "RegNet"), ("convnext", "ConvNeXt"),
    ("inception", "Inception"), ("googlenet", "GoogLeNet"), ("shufflenet", "ShuffleNet"),
    ("squeezenet", "SqueezeNet"), ("alexnet", "AlexNet"), ("vit", "Vision Transformer"),
    ("swin", "Swin Transformer"), ("maxvit", "MaxViT"), ("r3d", "Video ResNet"), ("mc3", "Video ResNet"),
    ("r2plus1d", "Video ResNet"), ("s3d", "S3D (video)"),
)


def model_family(name: str) -> str:
    """The family a torchvision architecture belongs to, for grouping in menus (``resnet18`` -> ``ResNet``)."""
    for prefix, family in _FAMILIES:
        if name.startswith(prefix):
            return family
    return "Other"


@dataclass(frozen=True)
class ArchitectureInfo:
    """What a menu shows about a torchvision architecture before anything is loaded."""

    name: str
    family: str
    params: int | None
    download_mb: float | None
    top1: float | None
    convolutional: bool

    @property
    def label(self) -> str:
        bits = [self.name, self.family]
        if self.params:
            bits.append(f"{self.params / 1e6:.1f} M parameters")
        return " · ".join(bits)


def architecture_info(name: str) -> ArchitectureInfo:
    """Parameters, download size and ImageNet accuracy of ``name``'s default weights (no loading)."""
    _check_name(name)
    meta = _weights_enum(name).DEFAULT.meta
    metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
    size = meta.get("_file_size")
    return ArchitectureInfo(
        name=name,
        family=model_family(name),
        params=meta.get("num_params"),
        download_mb=float(size) if size is not None else None,
        top1=metrics.get("acc@1"),
        convolutional=is_convolutional(name),
    )
