"""Images: bytes -> a validated picture (:mod:`.load`, DICOM in :mod:`.dicom`, shared limits and scaling in
:mod:`.pixels`); bytes -> a volume or clip (:mod:`.volume_load`: NIfTI in :mod:`.nifti`, DICOM series and multi-frame
files in :mod:`.dicom_series` and :mod:`.dicom_frames`, video in :mod:`.video`; the :class:`Volume` itself, windows
and planes in :mod:`.volume`; a CT phantom for the offline demo in :mod:`.phantom`); collections of pictures for
exemplars (:mod:`.collection`) and the bundled samples (:mod:`.samples`)."""

from .collection import Collection, open_collection, zip_collection
from .load import (
    MAX_PIXELS,
    MAX_SIDE,
    SUPPORTED_EXTENSIONS,
    describe_image,
    image_digest,
    is_dicom,
    load_image,
)
from .phantom import phantom_nifti_bytes, phantom_volume
from .samples import Sample, default_sample, list_samples, sample_bytes, sample_path
from .volume import PLANES, VOLUME_EXTENSIONS, WINDOW_PRESETS, SeriesInfo, Volume, apply_window, auto_window
from .volume_load import list_series, load_volume

__all__ = [
    "PLANES",
    "VOLUME_EXTENSIONS",
    "WINDOW_PRESETS",
    "SeriesInfo",
    "Volume",
    "apply_window",
    "auto_window",
    "list_series",
    "load_volume",
    "phantom_nifti_bytes",
    "phantom_volume",
    "MAX_PIXELS",
    "MAX_SIDE",
    "SUPPORTED_EXTENSIONS",
    "Collection",
    "Sample",
    "default_sample",
    "describe_image",
    "image_digest",
    "is_dicom",
    "list_samples",
    "load_image",
    "open_collection",
    "sample_bytes",
    "sample_path",
    "zip_collection",
]
