"""What every model source produces: :class:`LoadedModel`, the one thing pages, jobs and methods take.

The sources live in :mod:`featviz_core.sources` (torchvision, timm, checkpoints and safetensors files,
ONNX files, a user's own code) and :mod:`featviz_core.demo` (the bundled offline model). Each builds the
``nn.Module`` in eval mode, its exact preprocessing, class names, input size and channels, provenance and a
cache key; nothing downstream asks where a model came from.
"""

from __future__ import annotations

import itertools
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from .errors import ModelLoadError

__all__ = [
    "NORMALIZATIONS",
    "LoadedModel",
    "Preprocessing",
    "standard_preprocessing",
    "view_transform",
]

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


NORMALIZATIONS: dict[str, tuple[str, tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ("ImageNet mean and std (most PyTorch and timm models)", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "0-1": ("Pixel values 0 to 1", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "-1-1": ("Pixel values −1 to 1 (Inception, MobileNet in Keras)", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "0-255": ("Raw pixel values 0 to 255 (Keras models with built-in preprocessing)", (0.0, 0.0, 0.0), (1 / 255,) * 3),
}
"""Input scalings a user can choose for a model that does not say (ONNX files, their own code):
name -> (plain description, per-channel mean, per-channel std) applied to pixels in 0–1."""


@dataclass(frozen=True)
class Preprocessing:
    """How to feed a model that does not say it itself (a user's own class, an ONNX file).

    ``input_size`` (H, W); ``normalization`` one of :data:`NORMALIZATIONS` unless ``mean`` and ``std``
    are given; ``channels`` 1 or 3 (None: from the model's first convolution); ``resize`` the shorter side
    before the centre crop (None: the crop's size); ``categories`` the class names in output order.
    A factory given to ``featviz run --model`` may return ``(module, Preprocessing(...))``.
    """

    input_size: tuple[int, int] | int = (224, 224)
    normalization: str = "imagenet"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int | None = None
    resize: int | None = None
    categories: tuple[str, ...] | list[str] | None = None

    @property
    def size(self) -> tuple[int, int]:
        size = self.input_size
        if isinstance(size, int):
            return (size, size)
        height, width = (int(v) for v in size)
        return (height, width)

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.mean is not None and self.std is not None:
            return tuple(self.mean), tuple(self.std)
        if self.normalization not in NORMALIZATIONS:
            choices = ", ".join(NORMALIZATIONS)
            raise ModelLoadError(f"'{self.normalization}' is not a normalisation featviz knows; use one of {choices}.")
        _, mean, std = NORMALIZATIONS[self.normalization]
        return mean, std


def standard_preprocessing(
    input_size: tuple[int, int],
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    resize: int | None = None,
    interpolation: TF.InterpolationMode = TF.InterpolationMode.BILINEAR,
) -> tuple[Callable[[Image.Image], torch.Tensor], Callable[[Image.Image], Image.Image]]:
    """(transform, view) of the usual eval pipeline: resize the shorter side to ``resize`` (default: the
    crop's shorter side), centre-crop to ``input_size`` = (H, W), to tensor, normalise with ``mean``/``std``
    (3 values are averaged to 1 for grey models). ``view`` is the geometric part, for overlays. A non-square
    input (an OCR model's 48×320) is filled instead: the image is scaled to cover it, then centre-cropped."""
    if channels not in (1, 3):
        raise ModelLoadError(
            f"This model takes {channels} input channels; featviz shows models that take grey (1 channel) "
            "or colour (3 channels) images."
        )
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if channels == 1 and len(mean) == 3:
        mean, std = [statistics.fmean(mean)], [statistics.fmean(std)]
    if len(mean) != channels or len(std) != channels or any(s == 0 for s in std):
        raise ModelLoadError(
            f"The normalisation needs {channels} mean and {channels} non-zero std values, one per input channel."
        )
    height, width = (int(v) for v in input_size)
    if resize is None and height != width:
        view = _cover_view(height, width, interpolation)
    else:
        view = view_transform(resize if resize is not None else height, (height, width), interpolation)
    transform = T.Compose([view, T.ToTensor(), T.Normalize(mean, std)])
    return transform, view


def _cover_view(
    height: int, width: int, interpolation: TF.InterpolationMode
) -> Callable[[Image.Image], Image.Image]:
    def _view(image: Image.Image) -> Image.Image:
        scale = max(height / image.height, width / image.width)
        size = [max(height, round(image.height * scale)), max(width, round(image.width * scale))]
        resized = TF.resize(image, size, interpolation=interpolation, antialias=True)
        return TF.center_crop(resized, [height, width])

    return _view
