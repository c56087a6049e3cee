"""A transformers image processor's eval pipeline as featviz's own ``transform`` and ``view``.

The processor (``preprocessor_config.json`` read by the library itself, so the class defaults a file leaves
out count too) is consulted once, when the model loads; what it would do is kept as plain numbers
(:class:`HfPipeline`) and replayed here with the same torchvision operations it uses: the picture as
uint8 (C, H, W), resized (``size`` as height × width, or the shortest edge; ConvNeXT's ``crop_pct``),
centre-cropped (``crop_size``, the top-left rounded down as transformers does), then rescaled and
normalised. So no processor runs per image, the steps are picklable, and ``view`` (the picture as the
model sees it, for overlays) is exactly the pixels the tensor is made of.

A processor whose class changes the pipeline itself (its own ``resize`` or ``_preprocess``, other than
ConvNeXT's) is run as it is for each image, and its view is the tensor un-normalised.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["HfPipeline", "hf_preprocessing", "pipeline_of"]


@dataclass(frozen=True)
class HfPipeline:
    """What a transformers image processor does to one image, in plain numbers.

    ``size``: (height, width) to resize to, or None; ``shortest_edge``: resize keeping the aspect ratio so
    the shorter side has this many pixels (``crop_pct``: ConvNeXT's rule, below 384 resize to
    ``int(edge / crop_pct)`` and crop ``edge`` × ``edge``, from 384 on warp to a square); ``crop``:
    (height, width) of the centre crop; ``interpolation``: a torchvision ``InterpolationMode`` value;
    ``rescale``: the factor applied to 0–255 values (None: not rescaled); ``mean``/``std`` per channel
    (None: not normalised).
    """

    size: tuple[int, int] | None = None
    shortest_edge: int | None = None
    crop_pct: float | None = None
    crop: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    rescale: float | None = 1 / 255
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(H, W) of every tensor, when the pipeline fixes it (a shortest edge without crop does not)."""
        if self.crop is not None:
            return self.crop
        if self.crop_pct is not None and self.shortest_edge is not None:
            return (self.shortest_edge, self.shortest_edge)
        return self.size


class _Geometry:
    """Resize and centre crop of a PIL image as transformers' torchvision backend does them: uint8 (C, H, W)."""

    def __init__(self, pipeline: HfPipeline) -> None:
        self.pipeline = pipeline

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F2

        p = self.pipeline
        pixels = torch.from_numpy(np.array(image))
        pixels = pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
        batch = pixels.contiguous().unsqueeze(0)  # transformers resizes a stack of same-sized images
        mode = InterpolationMode(p.interpolation)
        crop = p.crop
        if p.size is not None:
            batch = F2.resize(batch, list(p.size), interpolation=mode, antialias=True)
        elif p.shortest_edge is not None:
            edge = p.shortest_edge
            if p.crop_pct is not None and edge >= 384:
                batch = F2.resize(batch, [edge, edge], interpolation=mode, antialias=True)
            else:
                target = int(edge / p.crop_pct) if p.crop_pct is not None else edge
                batch = F2.resize(batch, list(_shortest_edge_size(batch.shape[-2:], target)), interpolation=mode,
                                  antialias=True)
                if p.crop_pct is not None:
                    batch = _center_crop(batch, (edge, edge))
        if crop is not None:
            batch = _center_crop(batch, crop)
        return batch[0]


def _shortest_edge_size(shape: Sequence[int], edge: int) -> tuple[int, int]:
    """transformers' ``get_resize_output_image_size(default_to_square=False)``: the long side rounded down."""
    height, width = int(shape[0]), int(shape[1])
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(edge * long / short)
    return (new_long, edge) if width <= height else (edge, new_long)


def _center_crop(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """transformers' centre crop: zero padding when the crop is larger, the top-left offset rounded down."""
    from torchvision.transforms.v2 import functional as F2

    crop_h, crop_w = size
    height, width = batch.shape[-2:]
    if crop_w > width or crop_h > height:
        pad_w, pad_h = max(crop_w - width, 0), max(crop_h - height, 0)
        batch = F2.pad(batch, [pad_w // 2, pad_h // 2, (pad_w + 1) // 2, (pad_h + 1) // 2], fill=0)
        height, width = batch.shape[-2:]
    top, left = int((height - crop_h) / 2.0), int((width - crop_w) / 2.0)
    return batch[..., top : top + crop_h, left : left + crop_w]


class _View:
    def __init__(self, geometry: _Geometry) -> None:
        self.geometry = geometry

    def __call__(self, image: Image.Image) -> Image.Image:
        pixels = self.geometry(image).permute(1, 2, 0).numpy()
        return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


class _Transform:
    """uint8 pixels -> the model's input, with transformers' arithmetic (rescale fused into mean and std)."""

    def __init__(self, geometry: _Geometry, channels: int) -> None:
        self.geometry = geometry
        p = geometry.pipeline
        self.rescale = p.rescale
        self.mean = self.std = None
        if p.mean is not None and p.std is not None:
            mean, std = _per_channel(p.mean, channels), _per_channel(p.std, channels)
            scale = 1.0 / p.rescale if p.rescale is not None else 1.0
            self.mean = (torch.tensor(mean) * scale).reshape(-1, 1, 1)
            self.std = (torch.tensor(std) * scale).reshape(-1, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = self.geometry(image)
        if self.mean is not None and self.std is not None:
            return (pixels.to(torch.float32) - self.mean) / self.std
        if self.rescale is not None:
            return pixels * self.rescale
        return pixels.to(torch.float32)


def _per_channel(values: Sequence[float], channels: int) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == channels:
        return values
    if channels == 1:
        return [statistics.fmean(values)]  # a grey model: the means averaged, as featviz does for timm
    return values[:1] * channels if len(values) == 1 else values


# ------------------------------------------------------------------------------------------------------
# Reading a processor


_PIPELINE_METHODS = ("preprocess", "_preprocess", "_preprocess_image_like_inputs", "_prepare_image_like_inputs",
                     "process_image", "resize", "center_crop", "rescale_and_normalize", "normalize", "rescale",
                     "_fuse_mean_std_and_rescale_factor")


def pipeline_of(processor: Any) -> HfPipeline | None:
    """The numbers of ``processor``'s pipeline, or None when its class does more than featviz replays."""
    from transformers import ConvNextImageProcessor
    from transformers.image_processing_backends import TorchvisionBackend
    from transformers.image_utils import pil_torch_interpolation_mapping

    if not isinstance(processor, TorchvisionBackend) or getattr(processor, "do_pad", False):
        return None
    cls = type(processor)
    own = {name for name in _PIPELINE_METHODS if getattr(cls, name) is not getattr(TorchvisionBackend, name)}
    convnext = own == {"resize", "_preprocess"} and all(
        getattr(cls, name) is getattr(ConvNextImageProcessor, name) for name in own)
    if own and not convnext:
        return None
    size = getattr(processor, "size", None)
    crop_size = getattr(processor, "crop_size", None)
    resized = exact = edge = None
    if getattr(processor, "do_resize", False) and size is not None:
        keys = {key for key in ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")
                if getattr(size, key, None)}
        if keys == {"height", "width"} and not convnext:
            exact = (int(size.height), int(size.width))
        elif keys == {"shortest_edge"}:
            edge = int(size.shortest_edge)
        else:
            return None
        resized = True
    resample = getattr(processor, "resample", None)
    if resample is None:
        interpolation = "bilinear"
    elif hasattr(resample, "value") and isinstance(resample.value, str):  # already a torchvision mode
        interpolation = resample.value
    else:
        interpolation = pil_torch_interpolation_mapping[resample].value
    crop = None
    if getattr(processor, "do_center_crop", False) and crop_size is not None:
        crop = (int(crop_size.height), int(crop_size.width))
    do_rescale, do_normalize = bool(getattr(processor, "do_rescale", False)), bool(
        getattr(processor, "do_normalize", False))
    return HfPipeline(
        size=exact, shortest_edge=edge,
        crop_pct=float(getattr(processor, "crop_pct", 224 / 256) or 224 / 256) if convnext and resized else None,
        crop=crop, interpolation=interpolation,
        rescale=float(processor.rescale_factor) if do_rescale else None,
        mean=_floats(processor.image_mean) if do_normalize else None,
        std=_floats(processor.image_std) if do_normalize else None,
    )


def _floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value) if isinstance(value, Sequence) else (float(value),)


class _ProcessorTransform:
    """A processor featviz does not replay, run on each image as it is."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        values = self.processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
        return values[0].to(torch.float32)


class _ProcessorView:
    """The processor's tensor un-normalised back to a picture (its mean and std, its rescale factor)."""

    def __init__(self, transform: _ProcessorTransform) -> None:
        self.transform = transform

    def __call__(self, image: Image.Image) -> Image.Image:
        processor = self.transform.processor
        x = self.transform(image)
        if getattr(processor, "do_normalize", False):
            channels = x.shape[0]
            std = torch.tensor(_per_channel(_floats(processor.image_std), channels)).reshape(-1, 1, 1)
            mean = torch.tensor(_per_channel(_floats(processor.image_mean), channels)).reshape(-1, 1, 1)
            x = x * std + mean
        if getattr(processor, "do_rescale", False):
            x = x / float(processor.rescale_factor)
        pixels = x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def hf_preprocessing(processor: Any, channels: int) -> tuple[Any, Any, HfPipeline | None]:
    """(transform, view, pipeline) for ``processor``; pipeline is None when the processor itself runs."""
    pipeline = pipeline_of(processor)
    if pipeline is None:
        transform = _ProcessorTransform(processor)
        return transform, _ProcessorView(transform), None
    geometry = _Geometry(pipeline)
    return _Transform(geometry, channels), _View(geometry), pipeline
