"""A small generated CT-like scan of a torso: the offline demo's volume, needing no file and no download.

:func:`phantom_volume` builds it (the same values every time: the noise is seeded), :func:`phantom_nifti_bytes`
writes it as a ``.nii.gz`` file so the app can offer it as a sample to download or to load like an upload.
Values are Hounsfield units on the usual scale: air -1000, lung -800, fat -100, soft tissue 40, liver 60,
bone 700. The array is RAS+ ``(z, y, x)`` like every :class:`~featviz_core.images.volume.Volume`:

- an elliptic body (fat rim, soft tissue inside) the full height of the scan;
- two lungs (ellipsoids) in the upper half, one holding a 6 mm nodule, and the heart (a sphere) between
  them, towards the patient's left and front;
- the spine: a column of bone cubes at the back; the liver (an ellipsoid) low on the right;
- a hip-like bone shell (a hollow sphere with marrow inside) at the bottom right.
"""

from __future__ import annotations

import gzip
import io
from functools import lru_cache

import numpy as np

from .volume import WINDOW_PRESETS, Volume, describe_volume

__all__ = ["PHANTOM_FILENAME", "PHANTOM_SHAPE", "PHANTOM_SPACING", "phantom_nifti_bytes", "phantom_volume"]

PHANTOM_SHAPE: tuple[int, int, int] = (64, 96, 96)
"""(slices, rows, columns) = (z, y, x)."""

PHANTOM_SPACING: tuple[float, float, float] = (3.0, 2.0, 2.0)
"""Voxel size along (z, y, x) in mm: a 192 × 192 × 192 mm field of view."""

PHANTOM_FILENAME = "featviz-phantom-ct.nii.gz"

_AIR, _LUNG, _FAT, _TISSUE, _HEART, _LIVER, _MARROW, _BONE = -1000, -800, -100, 40, 50, 60, 200, 700
_NOISE_HU = 8.0
_SEED = 20240611


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Millimetre coordinates of voxel centres around the middle of the scan: z (superior), y (anterior), x (right)."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(PHANTOM_SHAPE, PHANTOM_SPACING, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    return z, y, x


def _ellipsoid(z: np.ndarray, y: np.ndarray, x: np.ndarray, centre: tuple, radii: tuple) -> np.ndarray:
    """Boolean mask of an ellipsoid; ``centre`` and ``radii`` are (z, y, x) in mm."""
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + (
        (x - centre[2]) / radii[2]
    ) ** 2 <= 1


def _cube(z: np.ndarray, y: np.ndarray, x: np.ndarray, centre: tuple, half: float) -> np.ndarray:
    return (np.abs(z - centre[0]) <= half) & (np.abs(y - centre[1]) <= half) & (np.abs(x - centre[2]) <= half)


def _phantom_hu() -> np.ndarray:
    """The phantom as integer HU (int16), noise included."""
    z, y, x = _grid()
    hu = np.full(PHANTOM_SHAPE, _AIR, dtype=np.float32)
    body = ((y / 62.0) ** 2 + (x / 86.0) ** 2 <= 1) & (np.abs(z) <= 90)
    hu[body] = _FAT
    hu[((y / 56.0) ** 2 + (x / 80.0) ** 2 <= 1) & (np.abs(z) <= 90)] = _TISSUE
    for side in (-1, 1):
        hu[_ellipsoid(z, y, x, (25.0, 2.0, side * 40.0), (55.0, 36.0, 27.0))] = _LUNG
    hu[_ellipsoid(z, y, x, (15.0, 22.0, -14.0), (26.0, 26.0, 26.0))] = _HEART
    hu[_ellipsoid(z, y, x, (40.0, 10.0, 42.0), (6.0, 6.0, 6.0))] = _TISSUE  # the nodule, in the right lung
    hu[_ellipsoid(z, y, x, (-45.0, 5.0, 35.0), (28.0, 38.0, 40.0))] = _LIVER
    for level in np.arange(-84.0, 91.0, 28.0):
        hu[_cube(z, y, x, (level, -44.0, 0.0), 10.0)] = _BONE  # vertebral bodies; discs between them
    shell = _ellipsoid(z, y, x, (-72.0, -8.0, 48.0), (17.0, 17.0, 17.0))
    hu[shell] = _BONE
    hu[_ellipsoid(z, y, x, (-72.0, -8.0, 48.0), (12.0, 12.0, 12.0))] = _MARROW
    noise = np.random.default_rng(_SEED).normal(0.0, _NOISE_HU, PHANTOM_SHAPE).astype(np.float32)
    noise[hu == _AIR] = 0.0
    return np.rint(hu + noise).astype(np.int16)


@lru_cache(maxsize=1)
def phantom_volume() -> Volume:
    """The phantom as a CT :class:`~featviz_core.images.volume.Volume` in HU (read-only, built once)."""
    array = _phantom_hu().astype(np.float32)
    return Volume(
        array=array,
        spacing=PHANTOM_SPACING,
        kind="volume",
        modality="CT",
        window=WINDOW_PRESETS["mediastinum"],
        description=describe_volume("CT phantom (generated)", array.shape, PHANTOM_SPACING),
        units="HU",
    )


@lru_cache(maxsize=1)
def phantom_nifti_bytes() -> bytes:
    """The phantom as ``.nii.gz`` bytes (int16 HU, RAS+ affine, mm): the file a user would upload."""
    import nibabel as nib

    data = _phantom_hu().transpose(2, 1, 0)  # (z, y, x) -> NIfTI's (x, y, z)
    affine = np.diag([PHANTOM_SPACING[2], PHANTOM_SPACING[1], PHANTOM_SPACING[0], 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(data.shape, np.diag(affine)[:3], strict=True)]
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = b"featviz CT phantom (generated), HU"
    image.header.set_slope_inter(1.0, 0.0)
    with io.BytesIO() as buffer:
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as packed:
            packed.write(image.to_bytes())
        return buffer.getvalue()
