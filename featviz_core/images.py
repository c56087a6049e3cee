"""Bytes -> a validated PIL image in mode ``"RGB"`` or ``"L"``.

:func:`load_image` is the only door through which a picture enters featviz. It reads PNG, JPEG, WebP,
BMP, GIF (first frame), TIFF (first page) and DICOM, applies the EXIF orientation, flattens transparency
onto white, brings every pixel format down to 8-bit RGB or greyscale, and refuses images above
:data:`MAX_PIXELS` (or with a side above :data:`MAX_SIDE`) before decoding them. Whatever the bytes are, the only exception it raises is
:class:`~featviz_core.errors.ImageLoadError`, whose message is one plain sentence that names the file and
says what featviz accepts, so the UI can show it as it is.

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
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFile, ImageOps

from .errors import ImageLoadError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

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

MAX_DICOM_BYTES: int = 4 * MAX_PIXELS
"""Largest size a deflate-compressed DICOM data set may inflate to, in bytes."""

SUPPORTED_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff", "dcm")
"""File name extensions featviz reads, without the dot (for ``st.file_uploader(type=...)``)."""

# Pillow plugins we let identify the bytes; everything else (EPS, PSD, ICO, ...) is refused.
_PILLOW_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF", "TIFF")
_SUPPORTED_WORDS = "PNG, JPEG, WebP, BMP, GIF, TIFF or DICOM (.dcm)"
_DICOM_MAGIC = b"DICM"
_DICOM_MAGIC_OFFSET = 128
_DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
_INFLATE_CHUNK = 1 << 20
_MAX_NAME_CHARS = 80
_BAND_PIXELS = 1 << 22  # pixels per band when scaling, to bound temporary float64 copies


# --------------------------------------------------------------------------------------------------
# Public helpers
# --------------------------------------------------------------------------------------------------


def image_digest(data: bytes) -> str:
    """Return the SHA-256 hex digest of ``data``: a cache key for an image's bytes."""
    return hashlib.sha256(data).hexdigest()


def is_dicom(data: bytes) -> bool:
    """Return True when ``data`` carries the DICOM ``DICM`` marker at byte offset 128."""
    end = _DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC)
    return len(data) >= end and bytes(data[_DICOM_MAGIC_OFFSET:end]) == _DICOM_MAGIC


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
# DICOM
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
                raise ImageLoadError(_too_large(name))
            tail = inflater.unconsumed_tail
            if not produced and tail == pending:
                break  # no more input and nothing more to come out: a truncated stream
            pending = tail
    except zlib.error:
        raise ImageLoadError(_dicom_damaged(name)) from None


def _load_dicom(data: bytes, name: str, *, force: bool) -> Image.Image:
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
        message = _dicom_damaged(name) if not force else _unreadable(name)
        raise ImageLoadError(message) from None

    if not any(kw in ds for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageLoadError(_dicom_no_image(name) if not force else _unreadable(name))

    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        transfer_syntax = _transfer_syntax(ds)
    except MemoryError:
        raise
    except Exception:
        raise ImageLoadError(_dicom_damaged(name)) from None
    _check_size(columns, rows, name)

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
    _check_size(*image.size, name)
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
        raise ImageLoadError(_too_large(name)) from None
    except Exception:
        return  # not a codestream Pillow parses (RLE, JPEG-LS ...): pydicom sizes it from Rows/Columns
    _check_size(width, height, name)


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
        for rows in _row_bands(*array.shape[:2]):
            band = array[rows, :, :3]
            rgb[rows] = band if band.dtype == np.uint8 else _range_to_uint8(band, 0.0, high)
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

    bands = _row_bands(*stored.shape)
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

    low, high = _finite_range(modality(rows) for rows in bands)
    for rows in bands:
        out[rows] = _range_to_uint8(modality(rows), low, high)
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
        return _range_to_uint8(looked_up, 0.0, top)

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
