"""What every model source produces: :class:`LoadedModel`, the one thing pages, jobs and methods take.

The sources live in :mod:`featviz_core.models.sources` (torchvision, timm, checkpoints and safetensors files,
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
from enum import StrEnum

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

from ..errors import InputKindError, ModelLoadError
from ..images.volume import Volume

__all__ = [
    "NORMALIZATIONS",
    "NORMALIZATION_LABELS",
    "LoadedModel",
    "ModelSource",
    "Normalizer",
    "Preprocessing",
    "cover_view",
    "standard_preprocessing",
    "view_transform",
]

class ModelSource(StrEnum):
    """Where a :class:`LoadedModel` came from: said on screen, and the source of the capabilities below.
    Pages ask for a capability (:attr:`LoadedModel.has_random_weights` ...), never for a source by name."""

    TORCHVISION = "torchvision"
    TIMM = "timm"
    CHECKPOINT = "checkpoint"
    ONNX = "onnx"
    HF = "hf"
    CODE = "code"
    DEMO = "demo"
    TEST = "test"
    """A model assembled by hand around a module (tests, benchmarks)."""

    @property
    def library_weights(self) -> bool:
        """A library's architecture whose weights are the library's pretrained ones or seeded random ones."""
        return self in (ModelSource.TORCHVISION, ModelSource.TIMM)

    @property
    def takes_class_names(self) -> bool:
        """A user's own model, whose class names come from a file the user may add."""
        return self in (ModelSource.CHECKPOINT, ModelSource.CODE, ModelSource.ONNX)


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
    source: ModelSource
    provenance: str
    weights: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    supports_gradients: bool = True
    """False when the model runs outside autograd (an ONNX graph read by onnxruntime): methods that need
    gradients (Grad-CAM, feature visualization) refuse it with a sentence saying why."""
    input_depth: int | None = None
    """Slices (or frames) of the volume a 3-D model takes, with ``input_size`` its (height, width); None for a
    2-D model."""
    volume_transform: Callable[[Volume], torch.Tensor] | None = None
    """A 3-D model's preprocessing: a Volume -> (1, C, D, H, W) (see :mod:`featviz_core.models.volume_input`)."""

    @property
    def is_volumetric(self) -> bool:
        """True for a 3-D model: it takes volumes or clips (:meth:`preprocess_volume`), not pictures."""
        return self.input_depth is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input without the batch dimension: (C, H, W), or (C, D, H, W) for a 3-D model."""
        depth = () if self.input_depth is None else (int(self.input_depth),)
        return (int(self.input_channels), *depth, *(int(s) for s in self.input_size))

    def __post_init__(self) -> None:
        if not isinstance(self.source, ModelSource):  # the plain word ("timm") is accepted and typed here
            try:
                object.__setattr__(self, "source", ModelSource(self.source))
            except ValueError:
                raise ModelLoadError(
                    f"'{self.source}' is not a model source; use one of: {', '.join(ModelSource)}."
                ) from None

    @property
    def has_random_weights(self) -> bool:
        """A library's architecture with seeded random weights: its predictions mean nothing."""
        return self.source.library_weights and self.weights is None

    @property
    def takes_class_names(self) -> bool:
        """The user's own model (checkpoint, ONNX file, code): a class-names file gives its outputs names."""
        return self.source.takes_class_names

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
        self._check_kind(image)
        tensor = self.transform(self.prepare_image(image))
        if tensor.ndim == 3:
            tensor = tensor.unsqueeze(0)
        return tensor.to(torch.float32)

    def preprocess_volume(self, volume: Volume) -> torch.Tensor:
        """The exact tensor a 3-D model sees for ``volume``: (1, C, D, H, W), float32 (resampled to the
        model's input; the volume itself keeps its spacing)."""
        self._check_kind(volume)
        assert self.volume_transform is not None
        return self.volume_transform(volume).to(torch.float32)

    def model_input(self, data: Image.Image | Volume) -> torch.Tensor:
        """:meth:`preprocess` for a picture, :meth:`preprocess_volume` for a volume or clip (what
        ``extract``, ``cam`` and ``sanity_check`` take); :class:`InputKindError` when it does not fit."""
        return self.preprocess_volume(data) if isinstance(data, Volume) else self.preprocess(data)

    def _check_kind(self, data: object) -> None:
        if isinstance(data, Volume) and not self.is_volumetric:
            raise InputKindError(
                f"{self.name} looks at single pictures, not at a 3-D scan or a clip: pick a 3-D model (the 3-D "
                "demo model, or a video model such as r3d_18), or show one slice of the scan as a picture."
            )
        if not isinstance(data, Volume) and (self.is_volumetric or self.volume_transform is not None):
            raise InputKindError(
                f"{self.name} looks at 3-D scans and clips, not at single pictures: open a scan (NIfTI, a DICOM "
                "series) or a video, or pick a 2-D model for this picture."
            )

    def model_view(self, image: Image.Image) -> Image.Image:
        """The image resized and cropped as the model sees it, without normalisation (for overlays)."""
        self._check_kind(image)
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


NORMALIZATIONS: dict[str, str] = {
    "imagenet": "What most PyTorch and timm models were trained with.",
    "0-1": "Pixel values divided by 255.",
    "-1-1": "Many TensorFlow/Keras and MobileNet-style models.",
    "0-255": "Raw pixels: Keras models that scale inside the graph.",
}
"""Input scalings a user can choose for a model that does not say (ONNX files, their own code), with one
line of help each; ImageNet is the default."""

NORMALIZATION_LABELS: dict[str, str] = {
    "imagenet": "ImageNet mean/std", "0-1": "0 to 1", "-1-1": "-1 to 1", "0-255": "0 to 255 (raw pixels)",
}  # fmt: skip

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How to feed a model that does not say it itself (a user's own class, an ONNX file).

    ``input_size`` (H, W), or (D, H, W) for a 3-D model (one number: a square, or a cube); ``normalization`` one of :data:`NORMALIZATIONS` unless ``mean`` and ``std``
    are given; ``channels`` 1 or 3 (None: from the model's first convolution); ``resize`` the shorter side
    before the centre crop (None: the crop's size); ``categories`` the class names in output order.
    A factory given to ``featviz run --model`` may return ``(module, Preprocessing(...))``.
    """

    input_size: tuple[int, int] | tuple[int, int, int] | int = (224, 224)
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
        height, width = (int(v) for v in tuple(size)[-2:])
        return (height, width)

    @property
    def depth(self) -> int | None:
        """D of a (D, H, W) ``input_size``, the side of a cube for one number; None for (H, W)."""
        size = self.input_size
        if isinstance(size, int):
            return int(size)
        return int(size[0]) if len(size) == 3 else None


class Normalizer:
    """Pixels in 0–1, (C, H, W) -> the model's input scale; exact arithmetic for the fixed scalings
    (``x * 255`` gives whole numbers, where dividing by 1/255 would not). Picklable, for worker processes."""

    def __init__(self, normalization: str = "imagenet", channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        if mean is None or std is None:
            if normalization not in NORMALIZATIONS:
                raise ModelLoadError(
                    f"Unknown normalization '{normalization}'; use one of: {', '.join(NORMALIZATIONS)}."
                )
            if normalization == "imagenet":
                mean, std = IMAGENET_MEAN, IMAGENET_STD
        self.kind = "affine" if mean is not None and std is not None else normalization
        if self.kind == "affine":
            assert mean is not None and std is not None
            mean_list, std_list = [float(m) for m in mean], [float(v) for v in std]
            if channels == 1 and len(mean_list) == 3:
                mean_list, std_list = [statistics.fmean(mean_list)], [statistics.fmean(std_list)]
            if len(mean_list) != channels or len(std_list) != channels or any(v == 0 for v in std_list):
                raise ModelLoadError(
                    f"The normalisation needs {channels} mean and {channels} non-zero std values, one per input "
                    "channel."
                )
            self.mean = torch.tensor(mean_list).reshape(-1, 1, 1)
            self.std = torch.tensor(std_list).reshape(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "affine":
            return (x - self.mean) / self.std
        if self.kind == "-1-1":
            return x * 2.0 - 1.0
        if self.kind == "0-255":
            return x * 255.0
        return x


def cover_view(
    size: tuple[int, int], interpolation: TF.InterpolationMode = TF.InterpolationMode.BILINEAR
) -> Callable[[Image.Image], Image.Image]:
    """Resize so the picture covers ``size`` = (height, width) keeping its aspect ratio, then centre-crop
    (for a square input: the shorter side to the input's side, as torchvision's eval transforms do)."""
    return _CoverView(int(size[0]), int(size[1]), interpolation)


class _CoverView:
    def __init__(self, height: int, width: int, interpolation: TF.InterpolationMode) -> None:
        self.height, self.width, self.interpolation = height, width, interpolation

    def __call__(self, image: Image.Image) -> Image.Image:
        height, width = self.height, self.width
        scale = max(height / image.height, width / image.width)
        resized = (max(height, round(image.height * scale)), max(width, round(image.width * scale)))
        if resized != (image.height, image.width):
            image = TF.resize(image, list(resized), interpolation=self.interpolation, antialias=True)
        return TF.center_crop(image, [height, width])


class _Standard:
    def __init__(self, view: Callable[[Image.Image], Image.Image], normalize: Normalizer) -> None:
        self.view, self.normalize = view, normalize

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(TF.to_tensor(self.view(image)))


def standard_preprocessing(
    input_size: tuple[int, int],
    channels: int,
    *,
    normalization: str = "imagenet",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: int | None = None,
    interpolation: TF.InterpolationMode = TF.InterpolationMode.BILINEAR,
) -> tuple[Callable[[Image.Image], torch.Tensor], Callable[[Image.Image], Image.Image]]:
    """(transform, view) of the usual eval pipeline for a model that brings no transform of its own: the
    picture scaled to cover ``input_size`` = (H, W) and centre-cropped (``resize``: the shorter side to that
    many pixels first, then the crop), to a 0–1 tensor, then ``normalization`` (or ``mean``/``std``).
    ``view`` is the geometric part, for overlays."""
    if channels not in (1, 3):
        raise ModelLoadError(
            f"This model takes {channels} input channels; featviz shows models that take grey (1 channel) "
            "or colour (3 channels) images."
        )
    height, width = (int(v) for v in input_size)
    if resize is not None:
        view = view_transform(resize, (height, width), interpolation)
    else:
        view = cover_view((height, width), interpolation)
    return _Standard(view, Normalizer(normalization, channels, mean, std)), view
