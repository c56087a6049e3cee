"""DICOM bytes -> a validated PIL image in mode ``"RGB"`` or ``"L"``: the DICOM half of image loading.

:func:`featviz_core.images.load.load_image` sends a file here when it carries the ``DICM`` marker at byte 128
(:func:`is_dicom`), or when Pillow does not recognise it and its name ends in ``.dcm`` (a file without the
128-byte preamble). pydicom decodes the first frame; greyscale goes through the Modality LUT (rescale
slope and intercept), then the VOI LUT table or the window (centre and width), else is scaled min..max,
to 8-bit ``"L"`` (MONOCHROME1 inverted); colour and palette colour become 8-bit ``"RGB"``. Enhanced
multi-frame objects have their rescale and window read from their functional groups.

The pixel limits are those of :mod:`featviz_core.images.pixels` (:data:`~featviz_core.images.pixels.MAX_PIXELS`
and :data:`~featviz_core.images.pixels.MAX_SIDE`, read when a file is loaded), checked on Rows × Columns and on a
compressed frame's own header before anything is decoded; :data:`MAX_DICOM_BYTES` bounds what a
deflate-compressed data set may inflate to. Every refusal is an :class:`~featviz_core.errors.ImageLoadError`
whose message is one plain sentence naming the file and saying what to do next.

DICOM support needs ``pydicom>=3``, imported only when a DICOM file arrives. The limits, messages and pixel
scaling it shares with the other formats come from :mod:`featviz_core.images.pixels`.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import ImageLoadError
from .pixels import (
    MAX_PIXELS,
    check_size,
    finite_range,
    range_to_uint8,
    row_bands,
    too_large_message,
    unreadable_message,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "MAX_DICOM_BYTES",
    "is_dicom",
]

MAX_DICOM_BYTES: int = 4 * MAX_PIXELS
"""Largest size a deflate-compressed DICOM data set may inflate to, in bytes."""

_DICOM_MAGIC = b"DICM"
_DICOM_MAGIC_OFFSET = 128
_DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
_INFLATE_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------------
# Public helpers
# --------------------------------------------------------------------------------------------------


def is_dicom(data: bytes) -> bool:
    """Return True when ``data`` carries the DICOM ``DICM`` marker at byte offset 128."""
    end = _DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC)
    return len(data) >= end and bytes(data[_DICOM_MAGIC_OFFSET:end]) == _DICOM_MAGIC


# --------------------------------------------------------------------------------------------------
# Messages: one plain sentence each, naming the file and saying what to do next
# --------------------------------------------------------------------------------------------------


def _dicom_damaged(name: str) -> str:
    return (
        f"Could not read {name} because the DICOM file is damaged, incomplete or of a kind featviz "
        "does not support: export it again as uncompressed DICOM or as PNG."
    )


def _dicom_no_image(name: str) -> str:
    return (
        f"Could not show {name} because this DICOM file contains no picture: "
        "choose a DICOM image, or a PNG, JPEG, WebP, BMP, GIF or TIFF file."
    )


def _dicom_compression(name: str, compression: str) -> str:
    return (
        f"Could not read {name} because its compression ({compression}) is not supported here: "
        "export it as uncompressed DICOM or as PNG."
    )


def _dicom_missing(name: str) -> str:
    return (
        f"Could not read {name} because DICOM support (the pydicom package, version 3 or later) "
        "is not installed: export it as PNG, or install pydicom."
    )


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


# Attributes that drive the Modality LUT and VOI LUT stages, and the functional-group sequences where
# enhanced multi-frame objects keep them instead of the top level.
_PIXEL_MODULE_KEYWORDS = ("PhotometricInterpretation", "BitsStored", "PixelRepresentation")
_FUNCTIONAL_GROUP_KEYWORDS = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}
_TOP_LEVEL_LUT_KEYWORDS = ("ModalityLUTSequence", "VOILUTSequence")


def _check_deflated_size(data: bytes, name: str) -> None:
    """Refuse a deflate-compressed DICOM data set that would inflate beyond :data:`MAX_DICOM_BYTES`.

    pydicom inflates the whole data set in one go, so a tiny file could otherwise claim gigabytes.
    """
    meta_start = _DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC)
    group_length_element = b"\x02\x00\x00\x00UL\x04\x00"
    if data[meta_start : meta_start + 8] != group_length_element or len(data) < meta_start + 12:
        if _DEFLATED_UID in data[meta_start : meta_start + 4096]:
            raise ImageLoadError(_dicom_compression(name, "Deflated Explicit VR Little Endian"))
        return
    meta_end = meta_start + 12 + int.from_bytes(data[meta_start + 8 : meta_start + 12], "little")
    if _DEFLATED_UID not in data[meta_start:meta_end]:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending = data[meta_end:]
    total = 0
    try:
        while not inflater.eof:
            produced = len(inflater.decompress(pending, _INFLATE_CHUNK))
            total += produced
            if total > MAX_DICOM_BYTES:
                raise ImageLoadError(too_large_message(name))
            tail = inflater.unconsumed_tail
            if not produced and tail == pending:
                break  # no more input and nothing more to come out: a truncated stream
            pending = tail
    except zlib.error:
        raise ImageLoadError(_dicom_damaged(name)) from None


def load_dicom(data: bytes, name: str, *, force: bool) -> Image.Image:
    try:
        import pydicom
        from pydicom.pixels import get_decoder, pixel_array
    except ImportError:
        raise ImageLoadError(_dicom_missing(name)) from None

    if not force:
        _check_deflated_size(data, name)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    except MemoryError:
        raise
    except Exception:
        message = _dicom_damaged(name) if not force else unreadable_message(name)
        raise ImageLoadError(message) from None

    if not any(kw in ds for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageLoadError(_dicom_no_image(name) if not force else unreadable_message(name))

    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        transfer_syntax = _transfer_syntax(ds)
    except MemoryError:
        raise
    except Exception:
        raise ImageLoadError(_dicom_damaged(name)) from None
    check_size(columns, rows, name)

    compression = _compression_label(transfer_syntax)
    try:
        decoder = get_decoder(transfer_syntax)
    except Exception:
        raise ImageLoadError(_dicom_compression(name, compression)) from None
    if not decoder.is_available:
        raise ImageLoadError(_dicom_compression(name, compression))
    encapsulated = bool(decoder.is_encapsulated)
    if encapsulated:
        _check_embedded_frame_size(ds, name)

    try:
        frame = pixel_array(ds, index=0)
    except MemoryError:
        raise
    except Exception:
        message = _dicom_compression(name, compression) if encapsulated else _dicom_damaged(name)
        raise ImageLoadError(message) from None

    try:
        image = _dicom_frame_to_image(frame, ds, samples, photometric)
    except MemoryError:
        raise
    except Exception:
        raise ImageLoadError(_dicom_damaged(name)) from None
    check_size(*image.size, name)
    return image


def _transfer_syntax(ds: Dataset) -> Any:
    """Return the data set's Transfer Syntax UID, inferring it for files read without a file meta."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    file_meta = getattr(ds, "file_meta", None)
    uid = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if uid:
        return uid
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        implicit, little = True, True
    uid = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    if file_meta is None:
        ds.file_meta = file_meta = FileMetaDataset()
    file_meta.TransferSyntaxUID = uid
    return uid


def _compression_label(transfer_syntax: Any) -> str:
    """A transfer syntax's plain name, or a neutral phrase for one pydicom does not know."""
    name = str(getattr(transfer_syntax, "name", ""))
    if getattr(transfer_syntax, "is_transfer_syntax", False) and name and name != str(transfer_syntax):
        return name
    return "an unrecognised DICOM encoding"


def _check_embedded_frame_size(ds: Dataset, name: str) -> None:
    """Refuse a compressed frame whose own header claims more than the pixel limit, before decoding."""
    from pydicom.encaps import get_frame

    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        codestream = get_frame(ds.PixelData, 0, number_of_frames=frames)
    except Exception:
        return  # pydicom will report the damage when it tries to decode
    try:
        with Image.open(io.BytesIO(codestream), formats=["JPEG", "JPEG2000"]) as probe:
            width, height = probe.size
    except Image.DecompressionBombError:
        raise ImageLoadError(too_large_message(name)) from None
    except Exception:
        return  # not a codestream Pillow parses (RLE, JPEG-LS ...): pydicom sizes it from Rows/Columns
    check_size(width, height, name)


def _dicom_frame_to_image(frame: np.ndarray, ds: Dataset, samples: int, photometric: str) -> Image.Image:
    """Turn one decoded DICOM frame into an 8-bit ``"L"`` or ``"RGB"`` image."""
    from pydicom.pixels import apply_color_lut

    array = np.asarray(frame)
    if photometric == "PALETTE COLOR" or samples >= 3:
        if photometric == "PALETTE COLOR":
            array = np.asarray(apply_color_lut(array, ds))
            high = 255.0 if array.dtype == np.uint8 or float(array.max(initial=0)) <= 255 else 65535.0
        else:
            bits = min(max(int(ds.get("BitsStored", 8) or 8), 1), 32)
            high = 255.0 if array.dtype == np.uint8 else float(2**bits - 1)
        if array.ndim != 3 or array.shape[-1] < 3:
            raise ValueError(f"expected one colour frame, got an array of shape {array.shape}")
        rgb = np.empty((*array.shape[:2], 3), dtype=np.uint8)
        for rows in row_bands(*array.shape[:2]):
            band = array[rows, :, :3]
            rgb[rows] = band if band.dtype == np.uint8 else range_to_uint8(band, 0.0, high)
        return Image.fromarray(rgb)

    if array.ndim != 2:
        array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"expected one greyscale frame, got an array of shape {array.shape}")
    grey = _dicom_grey_to_uint8(array, _frame_attributes(ds))
    if photometric == "MONOCHROME1":
        np.subtract(255, grey, out=grey)
    return Image.fromarray(grey)


def _frame_attributes(ds: Dataset) -> Dataset:
    """Gather the attributes that drive rescaling and windowing of the first frame.

    Classic objects keep them at the top level; enhanced multi-frame objects keep them in the shared or
    first per-frame functional group. Working on a copy also keeps pydicom from editing ``ds``.
    """
    from pydicom.dataset import Dataset

    attributes = Dataset()
    keywords = _PIXEL_MODULE_KEYWORDS + _TOP_LEVEL_LUT_KEYWORDS
    keywords += tuple(kw for group in _FUNCTIONAL_GROUP_KEYWORDS.values() for kw in group)
    for keyword in keywords:
        if keyword in ds:
            attributes.add(ds[keyword])
    for group_keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(group_keyword)
        if not groups:
            continue
        for sequence_keyword, member_keywords in _FUNCTIONAL_GROUP_KEYWORDS.items():
            items = groups[0].get(sequence_keyword)
            if not items:
                continue
            for keyword in member_keywords:
                if keyword in items[0] and keyword not in attributes:
                    attributes.add(items[0][keyword])
    return attributes


def _dicom_grey_to_uint8(stored: np.ndarray, attributes: Dataset) -> np.ndarray:
    """Apply the Modality LUT, then the VOI LUT or window, and return 8-bit grey levels.

    Without a VOI LUT or a usable window the Modality LUT's output is scaled min..max. The frame is
    processed in row bands, since pydicom's LUT functions return float64 copies of their input.
    """
    from pydicom.pixels import apply_modality_lut

    bands = row_bands(*stored.shape)
    out = np.empty(stored.shape, dtype=np.uint8)

    def modality(rows: slice) -> np.ndarray:
        return np.asarray(apply_modality_lut(stored[rows], attributes))

    for stage in (_voi_lut_mapping(attributes), _window_mapping(attributes)):
        if stage is None:
            continue
        try:
            for rows in bands:
                out[rows] = stage(modality(rows))
            return out
        except MemoryError:
            raise
        except Exception:
            continue  # a broken VOI LUT or an unusable window: try the next stage, then min..max

    low, high = finite_range(modality(rows) for rows in bands)
    for rows in bands:
        out[rows] = range_to_uint8(modality(rows), low, high)
    return out


def _voi_lut_mapping(attributes: Dataset) -> Callable[[np.ndarray], np.ndarray] | None:
    """Return the VOI LUT (table) stage as a function onto 0..255, or None when there is no table."""
    from pydicom.pixels import apply_voi

    sequence = attributes.get("VOILUTSequence")
    if not sequence:
        return None
    try:
        depth = int(sequence[0].LUTDescriptor[2])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if not 1 <= depth <= 16:
        return None
    top = float(2**depth - 1)

    def mapping(values: np.ndarray) -> np.ndarray:
        looked_up = apply_voi(np.rint(values).astype(np.int64), attributes, index=0)
        return range_to_uint8(looked_up, 0.0, top)

    return mapping


def _window_mapping(attributes: Dataset) -> Callable[[np.ndarray], np.ndarray] | None:
    """Return the window (centre/width) stage as a function onto 0..255, or None when there is none."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    if "WindowCenter" not in attributes or "WindowWidth" not in attributes:
        return None
    # pydicom's output range follows the data set; this one makes it exactly 0..255 (unsigned 8-bit,
    # no rescale, no Modality LUT) while keeping the original centre, width and function.
    window = Dataset()
    window.PhotometricInterpretation = "MONOCHROME2"
    window.BitsStored = 8
    window.PixelRepresentation = 0
    for keyword in ("WindowCenter", "WindowWidth", "VOILUTFunction"):
        if keyword in attributes:
            window.add(attributes[keyword])

    def mapping(values: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            windowed = apply_windowing(np.asarray(values, dtype=np.float64), window, index=0)
        return np.clip(np.rint(np.nan_to_num(windowed)), 0, 255).astype(np.uint8)

    return mapping
