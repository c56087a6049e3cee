"""Bytes -> a validated PIL image in mode ``"RGB"`` or ``"L"``.

:func:`load_image` is the only door through which a picture enters featviz. It reads PNG, JPEG, WebP,
BMP, GIF (first frame), TIFF (first page) and DICOM, applies the EXIF orientation, flattens transparency
onto white, brings every pixel format down to 8-bit RGB or greyscale, and refuses images above
:data:`MAX_PIXELS` (or with a side above :data:`MAX_SIDE`) before decoding them. Whatever the bytes are,
the only exception it raises is :class:`~featviz_core.errors.ImageLoadError`, whose message is one plain
sentence that names the file and says what featviz accepts, so the UI can show it as it is.

This module holds the dispatch, the Pillow formats, the size limits, the messages and the pixel scaling
that every format shares. DICOM decoding lives in :mod:`featviz_core.images_dicom`; its public names
(:func:`~featviz_core.images_dicom.is_dicom` and :data:`~featviz_core.images_dicom.MAX_DICOM_BYTES`)
are re-exported here, so ``from featviz_core.images import is_dicom`` keeps working.

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
import math
import re
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageFile, ImageOps

from .errors import ImageLoadError

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

MAX_PIXELS: int = 64_000_000
"""Largest image accepted, in pixels (width × height; rows × columns for DICOM)."""

MAX_SIDE: int = 65_535
"""Longest accepted side, in pixels: taller or wider images cost memory out of proportion to their area."""

SUPPORTED_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff", "dcm")
"""File name extensions featviz reads, without the dot (for ``st.file_uploader(type=...)``)."""

# Pillow plugins we let identify the bytes; everything else (EPS, PSD, ICO, ...) is refused.
_PILLOW_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF", "TIFF")
_SUPPORTED_WORDS = "PNG, JPEG, WebP, BMP, GIF, TIFF or DICOM (.dcm)"
_MAX_NAME_CHARS = 80
_BAND_PIXELS = 1 << 22  # pixels per band when scaling, to bound temporary float64 copies


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
    name = _display_name(filename)
    try:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        return _load(data, filename, name)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(_too_big_for_memory(name)) from None
    except Exception:
        raise ImageLoadError(_unreadable(name)) from None


# --------------------------------------------------------------------------------------------------
# Messages: one plain sentence each, naming the file and what featviz accepts
# --------------------------------------------------------------------------------------------------


def _display_name(filename: str | None) -> str:
    """Return the file's base name fit for a one-line message, or ``"the image"``."""
    if not isinstance(filename, str):
        return "the image"
    base = re.split(r"[\\/]", filename)[-1]
    base = " ".join("".join(ch if ch.isprintable() else " " for ch in base).split())
    if not base:
        return "the image"
    if len(base) > _MAX_NAME_CHARS:
        base = base[: _MAX_NAME_CHARS - 1] + "…"
    return base


def _unreadable(name: str) -> str:
    return f"Could not read {name} as a picture: featviz reads {_SUPPORTED_WORDS} files."


def _empty(name: str) -> str:
    return f"Could not read {name} because the file is empty: choose a {_SUPPORTED_WORDS} file."


def _damaged(name: str) -> str:
    return (
        f"Could not read {name} because the file is damaged or incomplete: "
        f"save it again as {_SUPPORTED_WORDS} and retry."
    )


def _too_large(name: str, width: int | None = None, height: int | None = None) -> str:
    limit = f"{_pixel_limit() / 1_000_000:g}"
    size = f" at {width}×{height} pixels" if width is not None and height is not None else ""
    return (
        f"Could not open {name} because{size} it is larger than featviz accepts (at most {limit} megapixels "
        f"and {MAX_SIDE} pixels on a side): resize it and save it as {_SUPPORTED_WORDS}."
    )


def _too_big_for_memory(name: str) -> str:
    return (
        f"Could not open {name} because there is not enough free memory for it: "
        f"use a smaller {_SUPPORTED_WORDS} image."
    )


def _unsupported_colours(name: str) -> str:
    return (
        f"Could not read {name} because its colour format cannot be converted: "
        f"save it as an RGB or greyscale {_SUPPORTED_WORDS} file."
    )


# --------------------------------------------------------------------------------------------------
# Dispatch and Pillow formats
# --------------------------------------------------------------------------------------------------


class _NotRecognised(Exception):
    """Pillow did not recognise the bytes as one of the supported formats."""


def _pixel_limit() -> int:
    """The pixel limit in force: :data:`MAX_PIXELS`, or Pillow's own limit when that is lower."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return min(MAX_PIXELS, pillow_limit) if pillow_limit else MAX_PIXELS


def _check_size(width: int, height: int, name: str) -> None:
    if width < 1 or height < 1:
        raise ImageLoadError(_damaged(name))
    if width * height > _pixel_limit() or max(width, height) > MAX_SIDE:
        raise ImageLoadError(_too_large(name, width, height))


def _extension(filename: str | None) -> str:
    if not isinstance(filename, str) or "." not in filename:
        return ""
    return filename.rsplit(".", 1)[-1].strip().lower()


def _load(data: bytes, filename: str | None, name: str) -> Image.Image:
    if not isinstance(data, bytes):
        raise ImageLoadError(_unreadable(name))
    if not data:
        raise ImageLoadError(_empty(name))
    if is_dicom(data):
        return _load_dicom(data, name, force=False)
    try:
        return _load_with_pillow(data, name)
    except _NotRecognised:
        if _extension(filename) == "dcm":
            return _load_dicom(data, name, force=True)
        raise ImageLoadError(_unreadable(name)) from None


def _load_with_pillow(data: bytes, name: str) -> Image.Image:
    Image.init()
    formats = [fmt for fmt in _PILLOW_FORMATS if fmt in Image.OPEN]
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError:
        raise ImageLoadError(_too_large(name)) from None
    except MemoryError:
        raise
    except Exception:
        raise _NotRecognised from None

    _check_size(*image.size, name)
    try:
        image.load()
    except Image.DecompressionBombError:
        raise ImageLoadError(_too_large(name)) from None
    except MemoryError:
        raise
    except Exception:
        raise ImageLoadError(_damaged(name)) from None
    _check_size(*image.size, name)

    oriented = _apply_orientation(image)
    try:
        result = _to_rgb_or_l(oriented)
    except MemoryError:
        raise
    except Exception:
        raise ImageLoadError(_unsupported_colours(name)) from None
    if isinstance(result, ImageFile.ImageFile):
        # Hand back a plain image that holds no reference to the file or its other frames.
        result = result.copy()
    if result.mode not in ("RGB", "L"):
        raise ImageLoadError(_unsupported_colours(name))
    _check_size(*result.size, name)
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
    bands = _row_bands(height, width)

    def band(rows: slice) -> np.ndarray:
        return np.asarray(image.crop((0, rows.start, width, rows.stop)))

    low, high = _finite_range(band(rows) for rows in bands)
    out = np.empty((height, width), dtype=np.uint8)
    for rows in bands:
        out[rows] = _range_to_uint8(band(rows), low, high)
    return Image.fromarray(out)


def _row_bands(height: int, width: int) -> list[slice]:
    """Split ``height`` rows into bands of about :data:`_BAND_PIXELS` pixels each."""
    step = max(1, _BAND_PIXELS // max(width, 1))
    return [slice(top, min(height, top + step)) for top in range(0, height, step)]


def _finite_range(blocks: Iterable[np.ndarray]) -> tuple[float, float]:
    """Return the lowest and highest finite value over ``blocks`` (``(inf, -inf)`` when there is none)."""
    low, high = math.inf, -math.inf
    for block in blocks:
        values = block[np.isfinite(block)] if block.dtype.kind in "fc" else block
        if values.size:
            low = min(low, float(values.min()))
            high = max(high, float(values.max()))
    return low, high


def _range_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low..high`` linearly onto 0..255, clipping outside it.

    An empty or constant range gives zeros; NaN and -inf give 0 and +inf gives 255.
    """
    array = np.asarray(values)
    if not high > low:
        out = np.zeros(array.shape, dtype=np.uint8)
        out[np.isposinf(array)] = 255
        return out
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = (array.astype(np.float64) - low) * (255.0 / (high - low))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# DICOM (featviz_core.images_dicom)
# --------------------------------------------------------------------------------------------------

# Imported last, once every helper above exists: images_dicom takes those helpers from this module, and
# this module takes the DICOM decoder and its public names back. Importing featviz_core (whose __init__
# imports this module) or this module first, as every import of images_dicom does, finds them defined.
from .images_dicom import MAX_DICOM_BYTES, _load_dicom, is_dicom  # noqa: E402
