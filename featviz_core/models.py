"""Model sources -> :class:`LoadedModel`.

Three sources: a torchvision classification architecture (optionally with its pretrained weights,
downloaded once into the usual torch hub cache), a user's checkpoint (see :mod:`featviz_core.checkpoints`),
and the bundled offline demo model (see :mod:`featviz_core.demo`).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import socket
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

from .errors import ModelLoadError

__all__ = [
    "LoadedModel",
    "ProgressCallback",
    "classification_models",
    "download_weights",
    "load_torchvision",
    "weights_cache_path",
    "weights_are_cached",
    "view_transform",
]

_log = logging.getLogger("featviz")

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total_or_None)`` while weights download."""

# Architectures whose feature maps are not (N, C, H, W) after their stem: they are listed, but the UI
# groups them apart because only their convolutional stem gives channel maps.
_NON_CNN_PREFIXES = ("vit_", "swin_", "maxvit_")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for featviz: the module in eval mode, how to feed it, and where it came from.

    ``key`` identifies the model for caches (same key, same weights). ``lock`` is held while hooks are
    registered and a forward pass runs, so sessions sharing one cached model never see each other's
    activations.
    """

    module: nn.Module
    name: str
    key: str
    categories: list[str] | None
    input_channels: int
    input_size: tuple[int, int]
    transform: Callable[[Image.Image], torch.Tensor]
    view: Callable[[Image.Image], Image.Image]
    source: str
    provenance: str
    weights: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    supports_gradients: bool = True
    """False when the model runs outside autograd (an ONNX graph read by onnxruntime): methods that need
    gradients (Grad-CAM, feature visualization) refuse it with a sentence saying why."""

    @property
    def device(self) -> torch.device:
        """Where the module's weights live (its first parameter or buffer; CPU for a weightless module)."""
        first = next(itertools.chain(self.module.parameters(), self.module.buffers()), None)
        return first.device if first is not None else torch.device("cpu")

    def prepare_image(self, image: Image.Image) -> Image.Image:
        """The image in the colour mode the model takes (``"L"`` for 1-channel models, else ``"RGB"``)."""
        mode = "L" if self.input_channels == 1 else "RGB"
        return image if image.mode == mode else image.convert(mode)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The exact tensor the model sees: shape (1, C, H, W), float32."""
        tensor = self.transform(self.prepare_image(image))
        if tensor.ndim == 3:
            tensor = tensor.unsqueeze(0)
        return tensor.to(torch.float32)

    def model_view(self, image: Image.Image) -> Image.Image:
        """The image resized and cropped as the model sees it, without normalisation (for overlays)."""
        return self.view(self.prepare_image(image))

    def category(self, index: int) -> str:
        """A readable name for output class ``index``."""
        if self.categories is not None and 0 <= index < len(self.categories):
            return self.categories[index]
        return f"class {index}"


def view_transform(
    resize_size: Sequence[int] | int | None,
    crop_size: Sequence[int] | int,
    interpolation: TF.InterpolationMode = TF.InterpolationMode.BILINEAR,
) -> Callable[[Image.Image], Image.Image]:
    """The geometric part of torchvision's ``ImageClassification`` (resize, centre crop) on a PIL image."""

    def _view(image: Image.Image) -> Image.Image:
        if resize_size is not None:
            size = list(resize_size) if isinstance(resize_size, Sequence) else [resize_size]
            image = TF.resize(image, size, interpolation=interpolation, antialias=True)
        crop = list(crop_size) if isinstance(crop_size, Sequence) else [crop_size]
        return TF.center_crop(image, crop)

    return _view


# ---------------------------------------------------------------------------------------------------
# torchvision architectures


@lru_cache(maxsize=1)
def classification_models() -> tuple[str, ...]:
    """Every torchvision classification architecture, by builder name (``resnet18``, ``vgg16`` ...)."""
    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def is_convolutional(name: str) -> bool:
    """False for the transformer families whose inner outputs are tokens, not (C, H, W) maps."""
    return not name.startswith(_NON_CNN_PREFIXES)


def _check_name(name: str) -> None:
    if name not in classification_models():
        close = [m for m in classification_models() if m.startswith(name[:4])][:5]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelLoadError(
            f"'{name}' is not a torchvision classification model.{hint} "
            "Choose one from featviz_core.classification_models()."
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


def _open_url(url: str, timeout: float) -> Any:
    """Open ``url`` for reading (a seam for tests that simulate a network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "featviz"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - https URLs from torchvision


def _download(url: str, dest: str, progress: ProgressCallback | None, timeout: float = 30.0) -> None:
    """Download ``url`` to ``dest`` atomically, checking torchvision's hash prefix in the file name."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), suffix=".partial")
    sha = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, _open_url(url, timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            if progress is not None:
                progress(0, total)
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        stem = os.path.splitext(os.path.basename(dest))[0]
        expected = stem.rsplit("-", 1)[-1] if "-" in stem else ""
        if expected and all(c in "0123456789abcdef" for c in expected):
            if not sha.hexdigest().startswith(expected):
                raise ModelLoadError(
                    f"The downloaded weights for {os.path.basename(dest)} are damaged (checksum mismatch). "
                    "Try again, or use the offline demo model."
                )
        shutil.move(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download_weights(name: str, weights: str = "DEFAULT", progress: ProgressCallback | None = None) -> str:
    """Make sure the pretrained weights of ``name`` are in torch's hub cache; return the file's path.

    Nothing is downloaded when the file is already there. Otherwise the file is fetched from torchvision's
    address, reporting ``progress(done, total)``, checked against the hash in its name, and moved into place
    only when complete. Any network failure -> :class:`ModelLoadError` saying what to do instead.
    """
    _check_name(name)
    w = _resolve_weights(name, weights)
    path = weights_cache_path(name, w.name)
    if os.path.isfile(path):
        return path
    try:
        _download(w.url, path, progress)
    except ModelLoadError:
        raise
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        _log.warning("download of %s failed: %r", w.url, exc)
        raise ModelLoadError(
            f"Could not download the pretrained weights of {name}: {_why(exc)}. "
            "Check the internet connection, or use the offline demo model, or upload your own "
            f"checkpoint; an administrator can also place the file at {path}."
        ) from None
    return path


def _why(exc: BaseException) -> str:
    """A download failure in plain words (the technical detail goes to the log)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return "this computer could not reach the internet"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "the download took too long"
    if isinstance(reason, ConnectionError):
        return "the connection was refused or interrupted"
    if isinstance(exc, OSError) and not isinstance(exc, urllib.error.URLError):
        return "the file could not be saved in the torch cache"
    return "the network is not available"


def _input_size(transforms: Any) -> tuple[int, int]:
    crop = getattr(transforms, "crop_size", [224])
    crop = list(crop)
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
        key = f"torchvision:{name}:{w.name}"
    else:
        torch.manual_seed(0)
        with warnings.catch_warnings():  # googlenet/inception warn about their init scheme
            warnings.simplefilter("ignore", FutureWarning)
            module = builder(weights=None)
        categories = list(reference.meta.get("categories") or []) or None
        provenance = f"torchvision {name}, random weights (seed 0), not trained"
        key = f"torchvision:{name}:random"
    module.eval()
    transforms = reference.transforms()
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
        source="torchvision",
        provenance=provenance,
        weights=w.name if w is not None else None,
    )


_FAMILIES = (
    ("wide_resnet", "Wide ResNet"), ("resnext", "ResNeXt"), ("resnet", "ResNet"), ("vgg", "VGG"),
    ("densenet", "DenseNet"), ("efficientnet_v2", "EfficientNet V2"), ("efficientnet", "EfficientNet"),
    ("mobilenet", "MobileNet"), ("mnasnet", "MNASNet"), ("regnet", "RegNet"), ("convnext", "ConvNeXt"),
    ("inception", "Inception"), ("googlenet", "GoogLeNet"), ("shufflenet", "ShuffleNet"),
    ("squeezenet", "SqueezeNet"), ("alexnet", "AlexNet"), ("vit", "Vision Transformer"),
    ("swin", "Swin Transformer"), ("maxvit", "MaxViT"),
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
