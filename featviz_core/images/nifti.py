"""NIfTI (``.nii``, ``.nii.gz``) -> a :class:`~.volume.Volume` in RAS+ with its voxel spacing, read from memory with
nibabel, reduced while it is read when it would exceed :data:`~.volume.MAX_VOXELS`."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

from ..errors import ImageLoadError
from . import volume as vol
from .volume import (
    ACCEPTED,
    Volume,
    auto_window,
    block_mean,
    describe_volume,
    reduction_factors,
    reduction_note,
    too_large_message,
)

__all__ = ["load_nifti", "nifti_version"]

_SLAB_VALUES = 1 << 22  # values read and reduced at a time


def nifti_version(data: bytes | bytearray) -> int:
    """1 or 2 for a single-file NIfTI header (either byte order), else 0."""
    for order in ("little", "big"):
        size = int.from_bytes(data[:4], order) if len(data) >= 4 else 0
        if size == 348 and data[344:348] == b"n+1\x00":
            return 1
        if size == 540 and data[4:8] == b"n+2\x00":
            return 2
    return 0


def _gunzip(data: bytes, name: str) -> bytearray:
    """Unpack gzip ``data`` in chunks, refusing more than :data:`~.volume.MAX_UNCOMPRESSED_BYTES` (no second copy)."""
    inflater = zlib.decompressobj(wbits=31)
    out, pending = bytearray(), data
    try:
        while not inflater.eof:
            part = inflater.decompress(pending, 1 << 24)
            if not part and not inflater.unconsumed_tail and not inflater.eof:
                raise ImageLoadError(_damaged_nifti(name))  # the stream ends before its end marker
            if len(out) + len(part) > vol.MAX_UNCOMPRESSED_BYTES:
                raise ImageLoadError(too_large_message(name))
            out += part
            pending = inflater.unconsumed_tail
    except zlib.error:
        raise ImageLoadError(_damaged_nifti(name)) from None
    return out


def _damaged_nifti(name: str) -> str:
    return (
        f"Could not read {name} because the NIfTI file is damaged or incomplete: "
        "export it again as .nii or .nii.gz."
    )


def load_nifti(data: bytes, name: str) -> Volume:
    try:
        import nibabel as nib
    except ImportError:
        raise ImageLoadError(
            f"Could not open {name} because NIfTI support (nibabel) is not installed."
        ) from None
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, name)
    version = nifti_version(data)
    if not version:
        raise ImageLoadError(
            f"Could not open {name}: its content is not a NIfTI image. featviz opens {ACCEPTED}."
        )
    try:
        image = (nib.Nifti2Image if version == 2 else nib.Nifti1Image).from_bytes(data)
        shape = tuple(int(n) for n in image.shape)
        dtype = image.get_data_dtype()
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception:
        raise ImageLoadError(_damaged_nifti(name)) from None
    if len(shape) < 3 or dtype.kind not in "biuf" or dtype.fields:
        raise ImageLoadError(
            f"Could not open {name} because it is not a 3-D greyscale scan (shape {shape}, {dtype}): "
            "open a flat picture as an image instead."
        )
    if min(shape) < 1 or math.prod(shape[:3]) * dtype.itemsize > len(data):
        raise ImageLoadError(_damaged_nifti(name))
    if shape[0] * shape[1] > vol.MAX_FRAME_PIXELS:
        raise ImageLoadError(
            f"Could not open {name} because its slices are {shape[0]}×{shape[1]} voxels (featviz reads up to "
            f"{vol.MAX_FRAME_PIXELS:,} per slice): save the scan at a lower resolution."
        )
    extra = (0,) * (len(shape) - 3)
    notes: list[str | None] = [f"first of {math.prod(shape[3:])} volumes"] if math.prod(shape[3:]) > 1 else []

    ornt = nib.orientations.io_orientation(affine)
    if np.isnan(ornt).any():  # a degenerate affine: keep the stored axes and say so
        zooms = [abs(float(z)) for z in image.header.get_zooms()[:3]]
        affine = np.diag([*(z if math.isfinite(z) and z > 0 else 1.0 for z in zooms), 1.0])
        ornt = nib.orientations.io_orientation(affine)
        notes.append("the file's orientation is broken, so the axes are shown as stored")
    out_axis = [2 - int(ornt[i, 0]) for i in range(3)]  # RAS axis -> (z, y, x) position
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    out_shape, out_zooms = [0, 0, 0], [1.0, 1.0, 1.0]
    for i in range(3):
        out_shape[out_axis[i]], out_zooms[out_axis[i]] = shape[i], zooms[i]
    out_factors = reduction_factors(out_shape, out_zooms)
    factors = [out_factors[out_axis[i]] for i in range(3)]
    try:
        reduced = _read_reduced(image.dataobj, shape[:3], factors, extra)
    except (ValueError, OSError, EOFError, OverflowError):
        raise ImageLoadError(_damaged_nifti(name)) from None
    step = np.diag([*factors, 1]).astype(np.float64)
    step[:3, 3] = [(f - 1) / 2 for f in factors]
    canonical = nib.as_closest_canonical(nib.Nifti1Image(reduced, affine @ step))
    array = np.ascontiguousarray(np.asarray(canonical.dataobj, dtype=np.float32).transpose(2, 1, 0))
    spacing = tuple(float(z) for z in canonical.header.get_zooms()[:3][::-1])
    notes.append(reduction_note(out_factors))
    return Volume(
        array=array,
        spacing=(spacing[0], spacing[1], spacing[2]),
        kind="volume",
        modality=None,
        window=auto_window(array),
        description=describe_volume("NIfTI", array.shape, spacing, notes),
    )


def _read_reduced(
    proxy: object, shape: Sequence[int], factors: Sequence[int], extra: tuple[int, ...]
) -> np.ndarray:
    """Read a NIfTI array in slabs along its last axis (contiguous on disk), reducing each slab on the way."""
    out = np.empty([math.ceil(n / f) for n, f in zip(shape, factors, strict=True)], dtype=np.float32)
    step = factors[2] * max(1, _SLAB_VALUES // max(1, shape[0] * shape[1] * factors[2]))
    for start in range(0, shape[2], step):
        slab = np.asarray(proxy[(slice(None), slice(None), slice(start, start + step), *extra)])  # type: ignore[index]
        reduced = block_mean(slab, factors)
        out[:, :, start // factors[2] : start // factors[2] + reduced.shape[2]] = reduced
    return out
