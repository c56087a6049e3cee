"""An ONNX graph with a 5-D input (batch, channels, depth, height, width): a 3-D model for volumes and clips.

:func:`~featviz_core.models.sources.onnx.load_onnx` converts and checks it as any ONNX file (the PyTorch conversion
handles Conv3d and 3-D pooling; onnxruntime runs it otherwise); this module gives it what a 3-D model needs: its
:class:`~featviz_core.models.volume_input.VolumePreprocessing` (the volume windowed to 0..1, resampled
trilinearly to the graph's depth × height × width, then scaled as chosen) and the sentence that says so.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...errors import ModelLoadError
from ..loaded import NORMALIZATIONS
from ..volume_input import VolumePreprocessing
from .onnx_file import OnnxInfo

__all__ = ["VOLUME_SCALES", "volume_normalizer", "volume_preprocessing", "volume_provenance"]

VOLUME_SCALES: dict[str, tuple[float, float]] = {
    "imagenet": (0.0, 1.0), "0-1": (0.0, 1.0), "-1-1": (0.5, 0.5), "0-255": (0.0, 1 / 255),
}  # fmt: skip
"""(mean, std) applied to the 0..1 windowed volume for each normalisation. ImageNet's colour statistics mean
nothing for a scan, so "imagenet" (the default for every ONNX file) gives 0..1, as for a 3-D model from code."""

_LABELS = {"imagenet": "0 to 1", "0-1": "0 to 1", "-1-1": "-1 to 1", "0-255": "0 to 255"}


def volume_preprocessing(info: OnnxInfo, size: tuple[int, int], normalization: str) -> VolumePreprocessing:
    """A Volume -> the (1, C, D, H, W) tensor the graph takes at ``size`` = (height, width)."""
    if normalization not in NORMALIZATIONS:
        raise ModelLoadError(f"Unknown normalization '{normalization}'; use one of: {', '.join(NORMALIZATIONS)}.")
    mean, std = VOLUME_SCALES[normalization]
    depth = info.feed_shape(size)[2]
    return VolumePreprocessing((depth, *size), info.channels, mean, std)


def volume_normalizer(pre: VolumePreprocessing) -> Callable[[torch.Tensor], torch.Tensor]:
    """0..1 values (1, C, D, H, W) -> the model's scale, as ``pre`` scales a volume (for the check run)."""
    mean, std = pre.mean, pre.std

    def normalize(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) / std

    return normalize


def volume_provenance(info: OnnxInfo, pre: VolumePreprocessing, normalization: str) -> str:
    """``"3-D input 1×8×16×16 (NCDHW), the volume windowed and scaled 0 to 1"``."""
    shape = "×".join(str(s) for s in (info.channels, *pre.size))
    return f"3-D input {shape} ({info.layout}), the volume windowed and scaled {_LABELS[normalization]}"
