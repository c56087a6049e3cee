"""Bytes -> a validated PIL image in mode ``"RGB"`` or ``"L"``.

:func:`load_image` is the only door through which a picture enters featviz. It reads PNG, JPEG, WebP,
BMP, GIF (first frame), TIFF (first page) and DICOM, applies the EXIF orientation, flattens transparency
onto white, brings every pixel format down to 8-bit RGB or greyscale, and refuses images above
:data:`MAX_PIXELS` (or with a side above :data:`MAX_SIDE`) before decoding them. Whatever the bytes are,
the only exception it raises is :class:`~featviz_core.errors.ImageLoadError`, whose message is one plain
sentence that names the file and says what featviz accepts, so the UI can show it as it is.

This module holds the dispatch and the Pillow formats. The size limits, messages and pixel scaling that every
format shares live in :mod:`featviz_core.images.pixels`; DICOM decoding in :mod:`featviz_core.images.dicom`
(its public names are re-exported here).

Nothing here changes process-wide state: Pillow's ``LOAD_TRUNCATED_IMAGES`` and ``MAX_IMAGE_PIXELS`` and
the ``warnings`` filters are left alone, so the module is safe to call from many Streamlit sessions
(threads) at once. Instead of turning Pillow's ``DecompressionBombWarning`` into an error with
``warnings.catch_warnings`` (which is not thread-safe), every image is checked against
``min(MAX_PIXELS, PIL.Image.MAX_IMAGE_PIXELS)`` as soon as its header is read, so any image big enough
to make Pillow warn is rejected before a single pixel is decoded.

DICOM files are recognised by their ``DICM`` marker at byte 128 whatever their name; a file without
the 128-byte preamble is tried as DICOM only when its name ends in ``.dcm``. DICOM support needs
``pydicom>=3`` and is imported only when a DICOM file arrives.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ..errors import ImageLoadError
from .dicom import MAX_DICOM_BYTES, is_dicom, load_dicom
from .pixels import (
    MAX_PIXELS,
    MAX_SIDE,
    SUPPORTED_EXTENSIONS,
    check_size,
    damaged_message,
    display_name,
    empty_message,
    finite_range,
    range_to_uint8,
    row_bands,
    too_big_for_memory_message,
    too_large_message,
    unreadable_message,
    unsupported_colours_message,
)

__all__ = [
    "MAX_DICOM_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "SUPPORTED_EXTENSIONS",
    "describe_image",
    "image_digest",
    "is_dicom",
    "load_image",
]


# Pillow plugins we let identify the bytes; everything else (EPS, PSD, ICO, ...) is refused.
_PILLOW_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF", "TIFF")


# --------------------------------------------------------------------------------------------------
# Public helpers
# --------------------------------------------------------------------------------------------------


def image_digest(data: bytes) -> str:
    """Return the SHA-256 hex digest of ``data``: a cache key for an image's bytes."""
    return hashlib.sha256(data).hexdigest()


def describe_image(image: Image.Image) -> str:
    """Return a short description such as ``"451×300 RGB"`` (width × height, then the mode)."""
    width, height = image.size
    return f"{width}×{height} {image.mode}"


def load_image(data: bytes, filename: str | None = None) -> Image.Image:
    """Decode ``data`` into a fully loaded PIL image in mode ``"RGB"`` or ``"L"``.

    Args:
        data: The file's bytes (an upload, a camera shot, a sample, a DICOM file).
        filename: The file's name, used only in error messages and to allow DICOM files that lack the
            128-byte preamble when it ends in ``.dcm``; the format itself is found from the bytes.

    Returns:
        A new image, detached from ``data``, in mode ``"RGB"`` (colour) or ``"L"`` (greyscale), with its
        EXIF orientation applied and any transparency composited on white.

    Raises:
        ImageLoadError: For anything that is not a readable picture within :data:`MAX_PIXELS`; this is
            the only exception this function raises.
    """
    name = display_name(filename)
    try:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        return _load(data, filename, name)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(too_big_for_memory_message(name)) from None
    except Exception:
        raise ImageLoadError(unreadable_message(name)) from None


# --------------------------------------------------------------------------------------------------
# Messages: one plain sentence each, naming the file and what featviz accepts
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Dispatch and Pillow formats
# --------------------------------------------------------------------------------------------------


class _NotRecognised(Exception):
    """Pillow did not recognise the bytes as one of the supported formats."""


def _extension(filename: str | None) -> str:
    if not isinstance(filename, str) or "." not in filename:
        return ""
    return filename.rsplit(".", 1)[-1].strip().lower()


def _load(data: bytes, filename: str | None, name: str) -> Image.Image:
    if not isinstance(data, bytes):
        raise ImageLoadError(unreadable_message(name))
    if not data:
        raise ImageLoadError(empty_message(name))
    if is_dicom(data):
        return load_dicom(data, name, force=False)
    try:
        return _load_with_pillow(data, name)
    except _NotRecognised:
        if _extension(filename) == "dcm":
            return load_dicom(data, name, force=True)
        raise ImageLoadError(unreadable_message(name)) from None


def _load_with_pillow(data: bytes, name: str) -> Image.Image:
    Image.init()
    formats = [fmt for fmt in _PILLOW_FORMATS if fmt in Image.OPEN]
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError:
        raise ImageLoadError(too_large_message(name)) from None
    except MemoryError:
        raise
    except Exception:
        raise _NotRecognised from None

    check_size(*image.size, name)
    try:
        image.load()
    except Image.DecompressionBombError:
        raise ImageLoadError(too_large_message(name)) from None
    except MemoryError:
        raise
    except Exception:
        raise ImageLoadError(damaged_message(name)) from None
    check_size(*image.size, name)

    oriented = _apply_orientation(image)
    try:
        result = _to_rgb_or_l(oriented)
    except MemoryError:
        raise
    except Exception:
        raise ImageLoadError(unsupported_colours_message(name)) from None
    if isinstance(result, ImageFile.ImageFile):
        # Hand back a plain image that holds no reference to the file or its other frames.
        result = result.copy()
    if result.mode not in ("RGB", "L"):
        raise ImageLoadError(unsupported_colours_message(name))
    check_size(*result.size, name)
    return result


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Apply the EXIF/XMP orientation; a broken EXIF block leaves the picture as it is."""
    try:
        transposed = ImageOps.exif_transpose(image)
    except MemoryError:
        raise
    except Exception:
        return image
    return transposed if transposed is not None else image


# --------------------------------------------------------------------------------------------------
# Pixel formats -> "RGB" or "L"
# --------------------------------------------------------------------------------------------------


_GREY_MODES = frozenset({"1", "L", "LA", "La"})


def _to_rgb_or_l(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to ``"RGB"`` or ``"L"`` (transparency flattened onto white)."""
    mode = image.mode
    if mode == "F" or mode.startswith("I"):
        return _high_depth_grey_to_l(image)
    if _has_transparency(image):
        if mode in _GREY_MODES:
            return _composite_on_white(image.convert("LA"), "L")
        return _composite_on_white(image.convert("RGBA"), "RGB")
    if mode in ("RGB", "L"):
        return image
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _has_transparency(image: Image.Image) -> bool:
    """True when the image has an alpha channel, a transparent colour or a palette with alpha."""
    try:
        return bool(image.has_transparency_data)
    except AttributeError:  # Pillow < 10.1
        return image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info


def _composite_on_white(image: Image.Image, mode: str) -> Image.Image:
    """Blend an ``"RGBA"`` or ``"LA"`` image over a white background."""
    white: int | tuple[int, int, int] = 255 if mode == "L" else (255, 255, 255)
    background = Image.new(mode, image.size, white)
    background.paste(image.convert(mode), (0, 0), image.getchannel("A"))
    return background


def _high_depth_grey_to_l(image: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float greyscale image min..max to 8-bit ``"L"``.

    Works through horizontal bands so that memory beyond the image itself stays small.
    """
    width, height = image.size
    bands = row_bands(height, width)

    def band(rows: slice) -> np.ndarray:
        return np.asarray(image.crop((0, rows.start, width, rows.stop)))

    low, high = finite_range(band(rows) for rows in bands)
    out = np.empty((height, width), dtype=np.uint8)
    for rows in bands:
        out[rows] = range_to_uint8(band(rows), low, high)
    return Image.fromarray(out)
