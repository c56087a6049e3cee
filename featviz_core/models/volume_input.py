"""How a 3-D model is fed: a :class:`~featviz_core.images.volume.Volume` -> the tensor (1, C, D, H, W) it takes.

Two preprocessings, each a small picklable callable that :class:`~featviz_core.models.loaded.LoadedModel` keeps
as its ``volume_transform``:

* :class:`VolumePreprocessing` for medical-style 3-D networks (the 3-D demo model, a MONAI network from code):
  the intensities mapped to 0..1 (:func:`unit_intensities`: a CT through its ``window``, a colour clip divided
  by 255, anything else through :func:`~featviz_core.images.volume.auto_window`), the volume resampled
  trilinearly to the model's (depth, height, width), its channels matched, then ``(x - mean) / std``;
* :class:`VideoPreprocessing` for torchvision's video classifiers: ``depth`` frames taken evenly from the clip,
  then exactly the weights' own ``transforms()`` (which take (T, C, H, W) and give (C, T, H, W)).

The volume itself is never changed (its array is read-only): the display keeps its real spacing, and only the
model's input is resampled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputKindError
from ..images.volume import Volume, auto_window

__all__ = [
    "VideoPreprocessing",
    "VolumePreprocessing",
    "evenly_spaced",
    "match_channels",
    "no_picture",
    "no_view",
    "resample",
    "unit_intensities",
]


def no_picture(image: Image.Image) -> torch.Tensor:
    """A 3-D model's ``transform`` for pictures: it takes none (``LoadedModel`` says so before it gets here)."""
    raise InputKindError("This model looks at 3-D scans and clips, not at single pictures: open a scan or a video.")


def no_view(image: Image.Image) -> Image.Image:
    """A 3-D model's ``view`` for pictures: as :func:`no_picture`."""
    no_picture(image)
    return image


def unit_intensities(volume: Volume) -> np.ndarray:
    """The volume's values mapped onto 0..1 (float32, same shape): through its ``window`` (level, width) when it
    has one (CT), divided by 255 for a clip (frames hold 0..255), else through the 1st..99th percentiles."""
    array = np.asarray(volume.array, dtype=np.float32)
    if volume.window is not None:
        level, width = volume.window
    elif volume.kind == "clip":
        level, width = 127.5, 255.0
    else:
        level, width = auto_window(array)
    unit = (array - np.float32(level - width / 2)) / np.float32(max(width, 1e-12))
    return np.clip(np.nan_to_num(unit, nan=0.0), 0.0, 1.0).astype(np.float32, copy=False)


def resample(tensor: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``tensor`` (C, D, H, W) resized trilinearly to ``size`` = (D, H, W) (``align_corners=False``)."""
    target = tuple(int(s) for s in size)
    if tuple(tensor.shape[1:]) == target:
        return tensor
    return F.interpolate(tensor[None], size=target, mode="trilinear", align_corners=False)[0]


def match_channels(tensor: torch.Tensor, channels: int) -> torch.Tensor:
    """(C, ...) -> (channels, ...): grey repeated for a colour model, colour averaged for a grey one."""
    have = int(tensor.shape[0])
    if have == channels:
        return tensor
    if have == 1:
        return tensor.expand(channels, *tensor.shape[1:]).contiguous()
    grey = tensor.mean(dim=0, keepdim=True)
    return grey if channels == 1 else grey.expand(channels, *tensor.shape[1:]).contiguous()


def evenly_spaced(count: int, wanted: int) -> np.ndarray:
    """``wanted`` indices into ``count`` items, evenly spread (repeating items when there are fewer)."""
    if count < 1:
        raise ValueError("a clip needs at least one frame")
    return np.floor((np.arange(wanted) + 0.5) * count / wanted).astype(np.int64).clip(0, count - 1)


class VolumePreprocessing:
    """0..1 intensities -> trilinear resampling to ``size`` (D, H, W) -> ``channels`` -> ``(x - mean) / std``."""

    def __init__(
        self,
        size: Sequence[int],
        channels: int = 1,
        mean: Sequence[float] | float = 0.0,
        std: Sequence[float] | float = 1.0,
    ) -> None:
        self.size = tuple(int(s) for s in size)
        self.channels = int(channels)
        means = [float(mean)] if isinstance(mean, int | float) else [float(m) for m in mean]
        stds = [float(std)] if isinstance(std, int | float) else [float(s) for s in std]
        if len(means) == 1:
            means, stds = means * self.channels, stds * self.channels
        if len(means) != self.channels or len(stds) != self.channels or any(s == 0 for s in stds):
            raise ValueError(f"mean and std need one value per channel ({self.channels}), std non-zero")
        self.mean = torch.tensor(means).reshape(-1, 1, 1, 1)
        self.std = torch.tensor(stds).reshape(-1, 1, 1, 1)

    def __call__(self, volume: Volume) -> torch.Tensor:
        unit = torch.from_numpy(unit_intensities(volume))
        tensor = unit if unit.ndim == 4 else unit[None]
        with torch.inference_mode(False), torch.no_grad():
            tensor = match_channels(resample(tensor, self.size), self.channels)
            return ((tensor - self.mean) / self.std)[None].to(torch.float32)


class VideoPreprocessing:
    """``depth`` frames taken evenly from the clip (a scan's slices count as frames), as uint8 (T, 3, H, W), then
    ``transforms`` (torchvision's ``VideoClassification``: resize, centre crop, 0..1, mean/std -> (C, T, H, W))."""

    def __init__(self, transforms: Callable[[torch.Tensor], torch.Tensor], depth: int, channels: int = 3) -> None:
        self.transforms, self.depth, self.channels = transforms, int(depth), int(channels)

    def __call__(self, volume: Volume) -> torch.Tensor:
        unit = torch.from_numpy(unit_intensities(volume))
        tensor = unit if unit.ndim == 4 else unit[None]  # (C, T, H, W)
        tensor = match_channels(tensor, self.channels)
        frames = torch.from_numpy(evenly_spaced(int(tensor.shape[1]), self.depth))
        clip = (tensor.index_select(1, frames) * 255.0).round().to(torch.uint8).permute(1, 0, 2, 3)
        with torch.inference_mode(False), torch.no_grad():
            out = self.transforms(clip.contiguous())
        return out[None].to(torch.float32)
