"""Images: bytes -> a validated picture (:mod:`.load`, DICOM in :mod:`.dicom`), collections of pictures for
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
from .samples import Sample, default_sample, list_samples, sample_bytes, sample_path

__all__ = [
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
