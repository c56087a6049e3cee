"""Stretching a map over what the model saw: a 2-D map over the picture, a 3-D map over the volume, or one plane of
that volume without the rest (the Volumes page's slider)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FeatvizError

__all__ = ["upsample", "upsample_plane"]


def upsample(map2d: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """``map2d`` (h, w) resized to ``size`` = (H, W) bilinearly, or a 3-D map (d, h, w) to (D, H, W)
    trilinearly (``align_corners=False``), as float32.

    For overlays and exports: the map is stretched over the image the model saw (``model.model_view``), or
    over the volume (``volume.shape3d``).
    """
    array = np.asarray(map2d, dtype=np.float32)
    if array.ndim not in (2, 3):
        raise FeatvizError(
            f"upsample takes one 2-D map (height × width) or 3-D map (depth × height × width), not an array of "
            f"shape {array.shape}."
        )
    target = tuple(int(s) for s in size)
    if len(target) != array.ndim:
        raise FeatvizError(
            f"A 2-D map needs a size of two numbers to upsample to (height, width), a 3-D map three numbers "
            f"(depth, height, width); this {array.ndim}-D map was given {target}."
        )
    if min(target) < 1:
        raise FeatvizError(f"The size to upsample to must be positive, not {target}.")
    tensor = torch.tensor(array)[None, None]  # a copy: CamResult arrays are read-only
    mode = "bilinear" if array.ndim == 2 else "trilinear"
    with torch.inference_mode():
        resized = F.interpolate(tensor, size=target, mode=mode, align_corners=False)
    return resized[0, 0].numpy().copy()


def _linear_weights(size_in: int, size_out: int, index: int) -> tuple[int, int, float]:
    """The two source indices and the second one's weight that linear interpolation with
    ``align_corners=False`` (PyTorch's rule) gives output ``index`` of ``size_out`` from ``size_in`` samples."""
    source = max((index + 0.5) * size_in / size_out - 0.5, 0.0)
    low = min(int(np.floor(source)), size_in - 1)
    return low, min(low + 1, size_in - 1), source - low


def upsample_plane(map3d: np.ndarray, size: tuple[int, int, int], axis: int, index: int) -> np.ndarray:
    """One plane of :func:`upsample` (``map3d`` stretched to ``size`` trilinearly) without the whole volume: the
    plane ``index`` across ``axis`` (0, 1 or 2), (rows, columns) in the order of the two other axes, float32.

    Trilinear interpolation is linear along each axis in turn, so the plane is the two source planes around it
    mixed by their weight, then stretched bilinearly: the same values (to float32 rounding), for a slider that
    moves across a 512×512×300 scan without stretching 79 million voxels each time.
    """
    array = np.asarray(map3d, dtype=np.float32)
    target = tuple(int(s) for s in size)
    if array.ndim != 3 or len(target) != 3 or axis not in (0, 1, 2):
        raise FeatvizError(f"upsample_plane takes a 3-D map, a size of three numbers and an axis 0–2; got a map "
                           f"of shape {array.shape}, size {target} and axis {axis}.")
    if not 0 <= index < target[axis]:
        raise FeatvizError(f"Plane {index} is outside 0..{target[axis] - 1} along axis {axis}.")
    low, high, weight = _linear_weights(array.shape[axis], target[axis], index)
    plane = (1.0 - weight) * np.take(array, low, axis=axis) + weight * np.take(array, high, axis=axis)
    rest = tuple(target[a] for a in range(3) if a != axis)
    return upsample(plane.astype(np.float32), rest)
