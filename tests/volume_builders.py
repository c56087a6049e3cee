"""Builders for tests/test_images_volume.py: DICOM slices and multi-frame files (pydicom), zips, NIfTI
(nibabel) and video clips (PyAV), all made in memory with known values at known places."""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Sequence

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _base(sop_class: str, modality: str, series_uid: str, description: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Test^Phantom"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = description
    return ds


def _write(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def ct_slice(
    stored: np.ndarray,
    position: Sequence[float] | None,
    *,
    orientation: Sequence[float] = AXIAL,
    pixel_spacing: Sequence[float] = (0.8, 0.7),
    series_uid: str = "1.2.826.0.1.3680043.10.2",
    description: str = "Chest 2.5 mm",
    modality: str = "CT",
    instance: int = 1,
    slope: float = 1.0,
    intercept: float = -1024.0,
    window: tuple[float, float] | None = None,
) -> bytes:
    """One classic CT (or MR) slice: ``stored`` values, rescaled to HU by ``slope`` and ``intercept``.

    A ``position`` of None leaves out ImagePositionPatient (and ImageOrientationPatient), as some exports do.
    """
    ds = _base(
        uid.CTImageStorage if modality == "CT" else uid.MRImageStorage, modality, series_uid, description
    )
    ds.set_pixel_data(np.asarray(stored, dtype=np.uint16), "MONOCHROME2", 16)
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = 2.5
    ds.InstanceNumber = instance
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    return _write(ds)


def zip_of(members: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, blob in members:
            archive.writestr(name, blob)
    return buffer.getvalue()


def enhanced_ct(
    stored: np.ndarray,
    positions: Sequence[Sequence[float]],
    *,
    slope: float = 1.0,
    intercept: float = -1024.0,
) -> bytes:
    """An Enhanced CT multi-frame file: per-frame positions, shared orientation, spacing and rescale."""
    ds = _base(uid.EnhancedCTImageStorage, "CT", "1.2.826.0.1.3680043.10.3", "Enhanced chest")
    ds.set_pixel_data(np.asarray(stored, dtype=np.uint16), "MONOCHROME2", 16)
    shared = Dataset()
    orientation, measures, rescale = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = list(AXIAL)
    measures.PixelSpacing = [0.5, 0.6]
    measures.SliceThickness = 2.0
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = slope, intercept, "HU"
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    shared.PixelValueTransformationSequence = [rescale]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for position in positions:
        group, plane = Dataset(), Dataset()
        plane.ImagePositionPatient = [float(v) for v in position]
        group.PlanePositionSequence = [plane]
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    return _write(ds)


def us_cine(
    frames: np.ndarray, *, frame_time_ms: float | None = None, cine_rate: float | None = None
) -> bytes:
    """An ultrasound multi-frame file: ``frames`` (n, rows, columns, 3) RGB or (n, rows, columns) grey uint8."""
    ds = _base(uid.UltrasoundMultiFrameImageStorage, "US", "1.2.826.0.1.3680043.10.4", "Echo")
    colour = frames.ndim == 4
    ds.set_pixel_data(np.asarray(frames, dtype=np.uint8), "RGB" if colour else "MONOCHROME2", 8)
    if frame_time_ms is not None:
        ds.FrameTime = frame_time_ms
    if cine_rate is not None:
        ds.CineRate = int(cine_rate)
    return _write(ds)


def nifti(
    array: np.ndarray, affine: np.ndarray, *, gz: bool = False, slope: float = 1.0, inter: float = 0.0
) -> bytes:
    """A single-file NIfTI-1 image holding ``array`` (NIfTI's own (i, j, k) order) with ``affine``."""
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    image.header.set_slope_inter(slope, inter)
    raw = image.to_bytes()
    return gzip.compress(raw, compresslevel=1) if gz else raw


def video(
    frames: Sequence[np.ndarray], *, fps: int = 10, container: str = "avi", codec: str = "mpeg4"
) -> bytes:
    """Encode RGB uint8 frames (height, width, 3) with PyAV into an in-memory clip."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format={"mp4": "mp4", "avi": "avi", "webm": "webm"}[container]) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.options = {"qscale": "2"}
        for picture in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()
