"""What every image format shares: the size limits, the plain sentences that name a file and say what featviz
accepts, and the scaling of high-depth pixels to 8 bits (in bands, to bound temporary copies). Used by
:mod:`.load` (Pillow formats), :mod:`.dicom` and the volume readers."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np
from PIL import Image

from ..errors import ImageLoadError

__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE",
    "SUPPORTED_EXTENSIONS",
    "SUPPORTED_WORDS",
    "check_size",
    "damaged_message",
    "display_name",
    "empty_message",
    "finite_range",
    "pixel_limit",
    "range_to_uint8",
    "row_bands",
    "too_big_for_memory_message",
    "too_large_message",
    "unreadable_message",
    "unsupported_colours_message",
]

_MAX_NAME_CHARS = 80
_BAND_PIXELS = 1 << 22  # pixels per band when scaling, to bound temporary float64 copies


MAX_PIXELS: int = 64_000_000
"""Largest image accepted, in pixels (width × height; rows × columns for DICOM)."""


MAX_SIDE: int = 65_535
"""Longest accepted side, in pixels: taller or wider images cost memory out of proportion to their area."""


SUPPORTED_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff", "dcm")
"""File name extensions featviz reads, without the dot (for ``st.file_uploader(type=...)``)."""


SUPPORTED_WORDS = "PNG, JPEG, WebP, BMP, GIF, TIFF or DICOM (.dcm)"






def display_name(filename: str | None) -> str:
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


def unreadable_message(name: str) -> str:
    return f"Could not read {name} as a picture: featviz reads {SUPPORTED_WORDS} files."


def empty_message(name: str) -> str:
    return f"Could not read {name} because the file is empty: choose a {SUPPORTED_WORDS} file."


def damaged_message(name: str) -> str:
    return (
        f"Could not read {name} because the file is damaged or incomplete: "
        f"save it again as {SUPPORTED_WORDS} and retry."
    )


def too_large_message(name: str, width: int | None = None, height: int | None = None) -> str:
    limit = f"{pixel_limit() / 1_000_000:g}"
    size = f" at {width}×{height} pixels" if width is not None and height is not None else ""
    return (
        f"Could not open {name} because{size} it is larger than featviz accepts (at most {limit} megapixels "
        f"and {MAX_SIDE} pixels on a side): resize it and save it as {SUPPORTED_WORDS}."
    )


def too_big_for_memory_message(name: str) -> str:
    return (
        f"Could not open {name} because there is not enough free memory for it: "
        f"use a smaller {SUPPORTED_WORDS} image."
    )


def unsupported_colours_message(name: str) -> str:
    return (
        f"Could not read {name} because its colour format cannot be converted: "
        f"save it as an RGB or greyscale {SUPPORTED_WORDS} file."
    )


def pixel_limit() -> int:
    """The pixel limit in force: :data:`MAX_PIXELS`, or Pillow's own limit when that is lower."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return min(MAX_PIXELS, pillow_limit) if pillow_limit else MAX_PIXELS


def check_size(width: int, height: int, name: str) -> None:
    if width < 1 or height < 1:
        raise ImageLoadError(damaged_message(name))
    if width * height > pixel_limit() or max(width, height) > MAX_SIDE:
        raise ImageLoadError(too_large_message(name, width, height))


def row_bands(height: int, width: int) -> list[slice]:
    """Split ``height`` rows into bands of about :data:`_BAND_PIXELS` pixels each."""
    step = max(1, _BAND_PIXELS // max(width, 1))
    return [slice(top, min(height, top + step)) for top in range(0, height, step)]


def finite_range(blocks: Iterable[np.ndarray]) -> tuple[float, float]:
    """Return the lowest and highest finite value over ``blocks`` (``(inf, -inf)`` when there is none)."""
    low, high = math.inf, -math.inf
    for block in blocks:
        values = block[np.isfinite(block)] if block.dtype.kind in "fc" else block
        if values.size:
            low = min(low, float(values.min()))
            high = max(high, float(values.max()))
    return low, high


def range_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
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
