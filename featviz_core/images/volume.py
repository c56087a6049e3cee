"""Bytes -> a :class:`Volume`: a 3-D scan (CT, MR ...) or a clip (frames over time), ready to slice and window.

:func:`load_volume` is the door for files that hold more than one picture. It reads NIfTI (``.nii``,
``.nii.gz``), a zip of DICOM slices (one series, or one chosen with ``series=``; :func:`list_series` lists
them), a multi-frame DICOM file, and video clips (mp4, mov, webm, mkv, avi). Whatever the bytes are, the
only exception it raises is :class:`~featviz_core.errors.ImageLoadError`, whose message says in plain words
what happened and what to do next. Nothing is written to disk.

Orientation, the same for every format so a page never asks where a volume came from:

- ``kind == "volume"``: ``array`` is float32 ``(D, H, W)`` = ``(z, y, x)`` in RAS+: an index grows towards
  the patient's Superior (z), Anterior (y) and Right (x). NIfTI goes through ``nibabel.as_closest_canonical``;
  DICOM through the same closest-axis rule from its direction cosines. :meth:`Volume.slice` turns this into
  the radiological display (axial: anterior at the top, the patient's right on the left of the picture).
- ``kind == "clip"``: ``array`` is ``(D, H, W)`` grey or ``(C, D, H, W)`` colour, one frame per ``D``, each
  frame as it is shown on screen (row 0 at the top). Colour clips hold values 0..255.

Memory is bounded: a volume whose float32 array would exceed :data:`MAX_VOXELS` is reduced (block means,
in-plane first, towards isotropic voxels) while it is read, and a clip keeps at most :data:`MAX_CLIP_FRAMES`
evenly spaced frames; ``description`` says so. The readers are
:mod:`.volume_load` (the door), :mod:`.nifti`, :mod:`.dicom_series` and :mod:`.dicom_frames` (DICOM),
:mod:`.video`; the helpers they share are public names here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np

__all__ = [
    "MAX_CLIP_FRAMES",
    "MAX_FRAME_PIXELS",
    "MAX_UNCOMPRESSED_BYTES",
    "MAX_VOXELS",
    "MAX_ZIP_MEMBERS",
    "PLANES",
    "VOLUME_EXTENSIONS",
    "WINDOW_PRESETS",
    "SeriesInfo",
    "Volume",
    "apply_window",
    "auto_window",
    "ACCEPTED",
    "block_mean",
    "describe_volume",
    "display_name",
    "reduction_factors",
    "reduction_note",
    "too_large_message",
]

MAX_VOXELS: int = 32 * 1024 * 1024
"""Largest array kept, in values (voxels × channels): 128 MiB of float32. Larger scans are reduced."""

MAX_UNCOMPRESSED_BYTES: int = 1 << 30
"""Largest size a ``.nii.gz`` or a zip may unpack to, in bytes (1 GiB): the zip-bomb guard."""

MAX_ZIP_MEMBERS: int = 10_000
"""Most files a zip may hold."""

MAX_FRAME_PIXELS: int = 4096 * 4096
"""Largest slice or video frame, in pixels (rows × columns), checked before anything is decoded."""

MAX_CLIP_FRAMES: int = 64
"""Most frames a clip keeps; longer clips are sampled evenly."""

VOLUME_EXTENSIONS: tuple[str, ...] = ("nii", "gz", "zip", "dcm", "mp4", "m4v", "mov", "webm", "mkv", "avi")
"""File name extensions :func:`load_volume` reads, without the dot (for ``st.file_uploader(type=...)``)."""

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
"""The planes :meth:`Volume.slice` cuts: across ``D``, ``H`` and ``W`` respectively."""

WINDOW_PRESETS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {"lung": (-600.0, 1500.0), "mediastinum": (50.0, 350.0), "bone": (400.0, 1800.0), "brain": (40.0, 80.0)}
)
"""Usual CT display windows as (level, width) in Hounsfield units."""

Plane = Literal["axial", "coronal", "sagittal"]
_MAX_NAME_CHARS = 80
ACCEPTED = "NIfTI (.nii, .nii.gz), a zip of DICOM slices, a multi-frame DICOM file, or a video (.mp4, .mov, .webm, .avi)"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Volume:
    """A loaded scan or clip. ``array`` is read-only, so one cached Volume can serve every session."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    kind: Literal["volume", "clip"]
    modality: str | None
    window: tuple[float, float] | None
    description: str
    fps: float | None = None
    units: str | None = None

    def __post_init__(self) -> None:
        if self.array.dtype != np.float32 or self.array.ndim not in (3, 4):
            raise ValueError(
                f"Volume.array must be float32 (D, H, W) or (C, D, H, W), not {self.array.shape}"
            )
        if self.array.ndim == 4 and self.kind != "clip":
            raise ValueError("only a clip may have channels")
        self.array.setflags(write=False)

    @property
    def shape3d(self) -> tuple[int, int, int]:
        """``(D, H, W)``: slices (or frames), rows and columns, whatever the channels."""
        depth, height, width = self.array.shape[-3:]
        return int(depth), int(height), int(width)

    @property
    def channels(self) -> int:
        """1 for grey, 3 for a colour clip."""
        return 1 if self.array.ndim == 3 else int(self.array.shape[0])

    def slice(self, plane: Plane = "axial", index: int | None = None) -> np.ndarray:
        """Return one plane as shown on screen: ``(rows, columns)``, or ``(rows, columns, C)`` for colour.

        For a volume, axial cuts across ``D`` (anterior at the top, the patient's right on the left),
        coronal across ``H`` and sagittal across ``W`` (superior at the top). For a clip, axial is frame
        ``index``. ``index`` defaults to the middle. The result is a read-only view.
        """
        axis = _plane_axis(plane)
        size = self.shape3d[axis]
        index = size // 2 if index is None else int(index)
        if not -size <= index < size:
            raise IndexError(f"{plane} index {index} is outside 0..{size - 1}")
        cut: list[slice | int] = [slice(None)] * 3
        cut[axis] = index
        if self.kind == "volume":  # RAS+ storage -> radiological display: flip the two remaining axes
            for other in range(3):
                if other != axis:
                    cut[other] = slice(None, None, -1)
        picture = self.array[(Ellipsis, *cut)]
        return picture if picture.ndim == 2 else np.moveaxis(picture, 0, -1)

    def slice_spacing(self, plane: Plane = "axial") -> tuple[float, float]:
        """Return (row, column) spacing of :meth:`slice`'s picture, for its aspect ratio."""
        axis = _plane_axis(plane)
        row, column = (self.spacing[other] for other in range(3) if other != axis)
        return row, column


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a zip, for a picker: ``label`` is what to show, ``uid`` what to pass back."""

    uid: str
    description: str
    modality: str | None
    slices: int

    @property
    def label(self) -> str:
        words = [self.modality or "DICOM", self.description or "series without a description"]
        return " · ".join([*words, f"{self.slices} slice{'s' if self.slices != 1 else ''}"])


# --------------------------------------------------------------------------------------------------
# Display helpers
# --------------------------------------------------------------------------------------------------


def apply_window(array: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map ``level ± width / 2`` linearly onto 0..255 (uint8); values outside are clipped, NaN becomes 0."""
    if not (math.isfinite(level) and math.isfinite(width) and width > 0):
        raise ValueError(f"a window needs a finite level and a positive width, not ({level}, {width})")
    scaled = np.asarray(array, dtype=np.float32) - np.float32(level - width / 2)
    scaled *= np.float32(255.0 / width)
    np.clip(scaled, 0, 255, out=scaled)
    return np.rint(np.nan_to_num(scaled, nan=0.0)).astype(np.uint8)


def auto_window(array: np.ndarray) -> tuple[float, float]:
    """A (level, width) that spans the 1st..99th percentile of the finite values: a first view of any scan."""
    flat = np.asarray(array).reshape(-1)
    sample = flat[:: max(1, flat.size // 1_000_000)]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(sample, [1.0, 99.0]))
    if high <= low:
        low, high = float(sample.min()), float(sample.max())
    return (low + high) / 2, max(high - low, 1e-6)


# --------------------------------------------------------------------------------------------------
# Shared by the loaders: memory budget, reduction, names and messages
# --------------------------------------------------------------------------------------------------


def reduction_factors(
    shape: Sequence[int], spacing: Sequence[float], budget: int | None = None, channels: int = 1
) -> tuple[int, int, int]:
    """Integer block sizes along (z, y, x) that bring ``shape`` within ``budget`` values (:data:`MAX_VOXELS`).

    Each step enlarges the block along the axis whose (reduced) voxels are finest, in-plane first on a
    tie, so a thin-slice CT loses in-plane detail before slices and voxels move towards cubes.
    """
    budget = MAX_VOXELS if budget is None else budget
    factors = [1, 1, 1]
    spacing = [s if s > 0 and math.isfinite(s) else 1.0 for s in spacing]

    def size() -> int:
        return channels * math.prod(math.ceil(n / f) for n, f in zip(shape, factors, strict=True))

    while size() > budget:
        axes = [a for a in (2, 1, 0) if math.ceil(shape[a] / factors[a]) > 1]
        if not axes:
            break
        axis = min(axes, key=lambda a: spacing[a] * factors[a])
        factors[axis] += 1
    return factors[0], factors[1], factors[2]


def block_mean(array: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Average ``array`` over blocks of ``factors`` (one per axis) as float32; edges repeat to fill a block."""
    array = np.asarray(array, dtype=np.float32)
    if all(f == 1 for f in factors):
        return array
    pad = [(0, -n % f) for n, f in zip(array.shape, factors, strict=True)]
    if any(after for _, after in pad):
        array = np.pad(array, pad, mode="edge")
    shape: list[int] = []
    for n, f in zip(array.shape, factors, strict=True):
        shape += [n // f, f]
    return array.reshape(shape).mean(axis=tuple(range(1, 2 * array.ndim, 2)), dtype=np.float32)


def reduction_note(factors: Sequence[int]) -> str | None:
    """Plain words for a reduction by blocks of ``factors``, or None when nothing was reduced."""
    block = math.prod(factors)
    if block == 1:
        return None
    return (
        f"shown at lower resolution (each voxel is the average of {block} original ones) to stay within "
        f"featviz's memory limit of {MAX_VOXELS // 2**20} million voxels"
    )


def describe_volume(
    label: str, shape: Sequence[int], spacing: Sequence[float], notes: Sequence[str | None] = ()
) -> str:
    """``"CT · 120 slices of 512×512 · 0.7×0.7×1.25 mm"`` (x×y×z spacing), then any notes."""
    depth, height, width = shape
    sizes = "×".join(f"{s:.3g}" for s in (spacing[2], spacing[1], spacing[0]))
    words = [label, f"{depth} slice{'s' if depth != 1 else ''} of {width}×{height}", f"{sizes} mm"]
    return " · ".join(words + [note for note in notes if note])


def display_name(filename: str | None) -> str:
    """The file's name for a message, shortened in the middle; "the file" when there is none."""
    if not filename:
        return "the file"
    name = filename.replace("\\", "/").rsplit("/", 1)[-1] or filename
    if len(name) > _MAX_NAME_CHARS:
        half = _MAX_NAME_CHARS // 2 - 1
        name = f"{name[:half]}…{name[-half:]}"
    return f"'{name}'"


def too_large_message(name: str) -> str:
    return (
        f"Could not open {name} because it is too large to unpack safely (over "
        f"{MAX_UNCOMPRESSED_BYTES // 2**20} MB or {MAX_ZIP_MEMBERS} files): send a smaller part of the scan, "
        "for example one series."
    )


def _plane_axis(plane: str) -> int:
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}, not {plane!r}")
    return PLANES.index(plane)
