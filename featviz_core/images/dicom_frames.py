"""DICOM -> :class:`~featviz_core.images.volume.Volume`: one multi-frame file here, and what a series of slices
in a zip shares with it (reading a slice's header, ordering and assembling slices); the zip itself is read by
:mod:`.dicom_series`.

A series is ordered by ImagePositionPatient projected on the slice normal (the cross product of the two
ImageOrientationPatient direction cosines), never by file name or InstanceNumber; the slice spacing is the
distance between those positions, the in-plane spacing is PixelSpacing, and each slice's stored values go
through its own RescaleSlope/RescaleIntercept (Hounsfield units for CT). The volume is then turned to RAS+
(z, y, x) by the closest axes of its direction cosines, like a NIfTI volume. Non-DICOM files in the zip are
skipped and counted; slices of different sizes or directions, or two slices at one position, are refused.

A multi-frame file becomes a volume when its frames carry positions (enhanced CT/MR: per-frame functional
groups), and a clip otherwise when it is a cine (ultrasound, angiography, or a FrameTime/CineRate): its frame
rate comes from CineRate or FrameTime. Zips are read in memory, member by member, within the limits of
:mod:`featviz_core.images.volume`; pixels are decoded one slice at a time into the (possibly reduced) result.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import ImageLoadError
from . import volume as vol
from .video import clip_shrink, clip_volume
from .volume import Volume

__all__ = [
    "DEFLATED_UID", "NO_EXTENSION_OR_DICOM", "DicomSlice", "assemble", "decode_slice", "load_dicom_file", "read_header",
    "refused",
]

DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
_CINE_MODALITIES = frozenset({"US", "IVUS", "XA", "RF", "ES", "XC", "GM"})
NO_EXTENSION_OR_DICOM = ("", "dcm", "dicom", "ima")


@dataclass(frozen=True)
class DicomSlice:
    """One slice's header: enough to group, order and check a series before any pixel is decoded."""

    member: str
    frame: int
    series_uid: str
    description: str
    modality: str | None
    rows: int
    columns: int
    samples: int
    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    instance: int | None
    thickness: float | None
    window: tuple[float, float] | None
    frames: int = 1


# --------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------


def refused(name: str, why: str, then: str) -> ImageLoadError:
    return ImageLoadError(f"Could not open {name} because {why}: {then}.")


# --------------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------------


def read_header(blob: bytes, name: str, *, force: bool) -> DicomSlice | None:
    """A DICOM image's header, or None for anything else (documents, DICOMDIR, notes, thumbnails)."""
    import pydicom

    preamble = blob[128:132] == b"DICM"
    if not preamble and not force:
        return None
    if DEFLATED_UID in blob[:4096]:
        raise refused(
            name, "it holds deflate-compressed DICOM files", "export the scan as uncompressed DICOM"
        )
    try:
        ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True, force=not preamble)
        return _slice_header(ds, 0) if "Rows" in ds and "Columns" in ds and "BitsAllocated" in ds else None
    except Exception:
        return None  # not a DICOM image after all: counted as an ignored file


def _slice_header(ds: Any, frame: int, groups: tuple[Any, Any] | None = None) -> DicomSlice:
    """Read one frame's geometry and rescale, from the per-frame/shared functional groups or the top level."""

    def find(sequence: str, keyword: str) -> Any:
        for group in groups or ():
            items = group.get(sequence) if group is not None else None
            if items and keyword in items[0]:
                return items[0].get(keyword)
        return ds.get(keyword)

    def number(value: Any, default: float | None = None) -> float | None:
        try:
            result = float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)
        except (TypeError, ValueError, IndexError):
            return default
        return result if math.isfinite(result) else default

    def numbers(value: Any, count: int) -> tuple[float, ...] | None:
        try:
            values = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            return None
        return values if len(values) == count and all(math.isfinite(v) for v in values) else None

    spacing = numbers(find("PixelMeasuresSequence", "PixelSpacing"), 2)
    center = number(find("FrameVOILUTSequence", "WindowCenter"))
    width = number(find("FrameVOILUTSequence", "WindowWidth"))
    instance = number(ds.get("InstanceNumber"))
    return DicomSlice(
        member="",
        frame=frame,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        description=str(ds.get("SeriesDescription", "") or "").strip(),
        modality=str(ds.get("Modality", "") or "").strip().upper() or None,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        samples=int(ds.get("SamplesPerPixel", 1) or 1),
        orientation=numbers(find("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
        position=numbers(find("PlanePositionSequence", "ImagePositionPatient"), 3),
        pixel_spacing=(spacing[0], spacing[1]) if spacing and min(spacing) > 0 else None,
        slope=number(find("PixelValueTransformationSequence", "RescaleSlope"), 1.0) or 1.0,
        intercept=number(find("PixelValueTransformationSequence", "RescaleIntercept"), 0.0) or 0.0,
        instance=int(instance) if instance is not None else None,
        thickness=number(find("PixelMeasuresSequence", "SliceThickness")),
        window=(center, width) if center is not None and width and width > 0 else None,
        frames=max(1, int(number(ds.get("NumberOfFrames"), 1) or 1)),
    )


# --------------------------------------------------------------------------------------------------
# Single and multi-frame files
# --------------------------------------------------------------------------------------------------


def load_dicom_file(data: bytes, name: str, notes: Sequence[str | None] = ()) -> Volume:
    """One DICOM file: its frames as a volume (positions known, or not a cine) or as a clip (a cine)."""
    import pydicom

    header = read_header(data, name, force=True)
    if header is None:
        raise refused(
            name, "it is not a DICOM image", "choose a DICOM image, a zip of DICOM slices or a NIfTI file"
        )
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")
    except Exception:
        raise refused(name, "it is damaged or incomplete", "export the scan again") from None
    if "PixelData" not in ds:
        raise refused(name, "this DICOM file contains no picture", "choose a DICOM image")
    try:
        shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        frames = [
            replace(_slice_header(ds, i, (per_frame[i] if i < len(per_frame) else None, shared)), frames=1)
            for i in range(header.frames)
        ]
    except Exception:
        raise refused(name, "its frame descriptions are damaged", "export the scan again") from None
    positioned = header.frames > 1 and all(f.position and f.orientation for f in frames)
    cine = any(keyword in ds for keyword in ("CineRate", "FrameTime", "FrameTimeVector"))
    if header.samples >= 3 or (
        not positioned and header.frames > 1 and (cine or header.modality in _CINE_MODALITIES)
    ):
        return _clip(ds, frames, name, notes)

    def read(piece: DicomSlice) -> np.ndarray:
        return decode_slice(ds, piece, name, piece.frame if header.frames > 1 else None)

    return assemble(frames, read, name, header.description, notes)


def _clip(ds: Any, frames: Sequence[DicomSlice], name: str, notes: Sequence[str | None]) -> Volume:
    """A cine: frames sampled evenly down to the most a clip keeps, shrunk in-plane to the memory limit."""
    first = frames[0]
    _check_frame_size(first, name)
    stride = math.ceil(len(frames) / vol.MAX_CLIP_FRAMES)
    shrink = clip_shrink(first.rows, first.columns, first.samples)
    kept = [
        vol.block_mean(picture, (shrink, shrink, 1)[: picture.ndim])
        for picture in (
            decode_slice(ds, frames[i], name, i if len(frames) > 1 else None)
            for i in range(0, len(frames), stride)
        )
    ]
    eight_bit = int(ds.get("BitsStored", 8) or 8) <= 8 and first.slope == 1 and first.intercept == 0
    grey_window = (
        None if first.samples > 1 or eight_bit else (first.window or vol.auto_window(np.stack(kept)))
    )
    return clip_volume(
        kept,
        label=f"{first.modality or 'DICOM'} clip",
        rate=_frame_rate(ds),
        stride=stride,
        total=len(frames),
        shrink=shrink,
        modality=first.modality,
        pixel_spacing=first.pixel_spacing or (1.0, 1.0),
        window=grey_window,
        notes=notes,
    )


def _frame_rate(ds: Any) -> float | None:
    """Frames per second from CineRate, FrameTime (ms), FrameTimeVector or RecommendedDisplayFrameRate."""
    for keyword in ("CineRate", "FrameTime", "FrameTimeVector", "RecommendedDisplayFrameRate"):
        value = ds.get(keyword)
        try:
            if keyword == "FrameTimeVector":
                value = 1000.0 / (sum(float(t) for t in list(value)[1:]) / (len(value) - 1))
            rate = 1000.0 / float(value) if keyword == "FrameTime" else float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(rate) and 0 < rate < 10_000:
            return rate
    return None


# --------------------------------------------------------------------------------------------------
# Volumes: check, order, decode, reduce, reorient
# --------------------------------------------------------------------------------------------------


def assemble(
    slices: Sequence[DicomSlice],
    read: Callable[[DicomSlice], np.ndarray],
    name: str,
    description: str,
    notes: Sequence[str | None],
) -> Volume:
    first = slices[0]
    _check_frame_size(first, name)
    _check_alike(slices, name)
    ordered, z_spacing, order_note = _order(slices, name)
    row_spacing, column_spacing = first.pixel_spacing or (1.0, 1.0)
    spacing = (z_spacing, row_spacing, column_spacing)
    factors = vol.reduction_factors((len(ordered), first.rows, first.columns), spacing)
    depth = math.ceil(len(ordered) / factors[0])
    out = np.empty(
        (depth, math.ceil(first.rows / factors[1]), math.ceil(first.columns / factors[2])), np.float32
    )
    for slot in range(depth):
        group = ordered[slot * factors[0] : (slot + 1) * factors[0]]
        out[slot] = vol.block_mean(np.stack([read(piece) for piece in group]), factors)[0]
    reduced_spacing = tuple(s * f for s, f in zip(spacing, factors, strict=True))
    array, ras_spacing = _to_ras(out, first.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), reduced_spacing)
    middle = ordered[len(ordered) // 2]
    window = middle.window or (
        vol.WINDOW_PRESETS["mediastinum"] if first.modality == "CT" else vol.auto_window(array)
    )
    label = " · ".join(word for word in (first.modality or "DICOM", description) if word)
    all_notes = [order_note, vol.reduction_note(factors)]
    if first.pixel_spacing is None:
        all_notes.append("pixel size unknown (shown as 1 mm)")
    return Volume(
        array=array,
        spacing=ras_spacing,
        kind="volume",
        modality=first.modality,
        window=window,
        description=vol.describe_volume(label, array.shape, ras_spacing, [*all_notes, *notes]),
        units="HU" if first.modality == "CT" else None,
    )


def _check_frame_size(first: DicomSlice, name: str) -> None:
    if first.rows * first.columns > vol.MAX_FRAME_PIXELS or min(first.rows, first.columns) < 1:
        size = f"{first.columns}×{first.rows} pixels (featviz reads up to {vol.MAX_FRAME_PIXELS:,})"
        raise refused(name, f"its slices are {size}", "export the scan at a lower resolution")


def _check_alike(slices: Sequence[DicomSlice], name: str) -> None:
    """Refuse a stack that mixes sizes, colour, or directions (checked before any pixel is decoded)."""
    sizes = sorted({(s.columns, s.rows) for s in slices})
    if len(sizes) > 1:
        shown = " and ".join(f"{w}×{h}" for w, h in sizes[:3])
        why = f"the series mixes slices of different sizes ({shown})"
        raise refused(name, why, "export each stack as its own series")
    if slices[0].samples != 1:
        raise refused(name, "the series holds colour pictures, not a greyscale scan", "open them as images")
    directions = {s.orientation for s in slices}
    if len(directions) > 1 and (
        None in directions or np.ptp(np.array(list(directions)), axis=0).max() > 1e-3
    ):
        why = "the series mixes slices cut in different directions (often a scout or localizer image)"
        raise refused(name, why, "export only the stack you want to see")


def _order(slices: Sequence[DicomSlice], name: str) -> tuple[list[DicomSlice], float, str | None]:
    """Order slices along the slice normal; return them, the slice spacing and a note when something was odd."""
    first = slices[0]
    fallback = first.thickness if first.thickness and first.thickness > 0 else 1.0
    if not all(s.position and s.orientation for s in slices):
        ordered = sorted(slices, key=lambda s: (s.instance is None, s.instance or 0, s.frame, s.member))
        one_file = len({s.member for s in slices}) == 1
        note = "no slice positions: " + (
            "frames shown as stored" if one_file else "ordered by instance number"
        )
        return ordered, fallback, note if len(slices) > 1 else None
    orientation = np.asarray(first.orientation, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    depth = np.array([np.dot(np.asarray(s.position), normal) for s in slices])
    order = np.argsort(depth, kind="stable")
    ordered = [slices[i] for i in order]
    if len(slices) == 1:
        return ordered, fallback, None
    gaps = np.diff(depth[order])
    if gaps.min() < 1e-3:
        raise refused(
            name,
            "the series has several slices at the same position (often several time points or echoes in one series)",
            "export a single time point or echo",
        )
    spacing = float(np.median(gaps))
    note = None
    if gaps.max() - gaps.min() > max(0.01, 0.1 * spacing):
        note = f"slice spacing varies from {gaps.min():.3g} to {gaps.max():.3g} mm (shown evenly, missing slices?)"
    return ordered, spacing, note


def decode_slice(source: Any, piece: DicomSlice, name: str, frame: int | None) -> np.ndarray:
    """One slice's pixels as float32, rescaled (HU for CT); ``source`` is the file's bytes or its data set."""
    import pydicom
    from pydicom.pixels import pixel_array

    try:
        ds = (
            pydicom.dcmread(io.BytesIO(source), force=source[128:132] != b"DICM")
            if isinstance(source, bytes)
            else source
        )
        pixels = pixel_array(ds, index=frame) if frame is not None else ds.pixel_array
    except MemoryError:
        raise
    except Exception:
        why = "its pixels could not be decoded (damaged, or compressed in a way featviz does not read)"
        raise refused(name, why, "export the scan as uncompressed DICOM") from None
    if (
        pixels.shape[:2] != (piece.rows, piece.columns)
        or pixels.size != piece.rows * piece.columns * piece.samples
    ):
        raise refused(name, "it is damaged or incomplete", "export the scan again")
    values = pixels.astype(np.float32)
    if piece.slope != 1 or piece.intercept != 0:
        values *= np.float32(piece.slope)
        values += np.float32(piece.intercept)
    return values


def _to_ras(
    array: np.ndarray, orientation: Sequence[float], spacing: Sequence[float]
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Turn a (slice, row, column) array into RAS+ (z, y, x) by each axis's closest patient axis."""
    along_row = np.asarray(orientation[:3], dtype=np.float64)  # direction of growing column index
    along_column = np.asarray(orientation[3:], dtype=np.float64)  # direction of growing row index
    directions = [np.cross(along_row, along_column), along_column, along_row]
    directions = [d * np.array([-1.0, -1.0, 1.0]) for d in directions]  # DICOM LPS+ -> RAS+
    source_of = [0, 0, 0]
    flips: list[int] = []
    free = [True, True, True]
    for axis in sorted(range(3), key=lambda a: -float(np.abs(directions[a]).max())):
        strength = np.where(free, np.abs(directions[axis]), -1.0)
        patient_axis = int(np.argmax(strength))
        free[patient_axis] = False
        position = 2 - patient_axis  # R (x) -> 2, A (y) -> 1, S (z) -> 0
        source_of[position] = axis
        if directions[axis][patient_axis] < 0:
            flips.append(position)
    turned = np.flip(array.transpose(source_of), axis=flips) if flips else array.transpose(source_of)
    z, y, x = (float(spacing[source_of[p]]) for p in range(3))
    return np.ascontiguousarray(turned), (z, y, x)
