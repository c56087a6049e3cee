"""Tests for featviz_core.images.load: every file is built in memory with PIL, numpy or pydicom.

The DICOM decoding (featviz_core.images.dicom) is tested in tests/test_images_dicom.py, which imports
its builders (``_dicom``, ``_encapsulated_dicom`` ...) and message checks from here.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile
from pydicom import dcmwrite, uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

from featviz_core.errors import ImageLoadError
from featviz_core.images import (
    MAX_PIXELS,
    MAX_SIDE,
    SUPPORTED_EXTENSIONS,
    describe_image,
    image_digest,
    load_image,
    pixels,
)

# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    # Save a copy: Pillow keeps a JPEG save's encoder settings on the image and reuses them for TIFF.
    image.copy().save(buffer, fmt, **params)
    return buffer.getvalue()


def _rgb(width: int, height: int) -> Image.Image:
    """A deterministic colour gradient."""
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None]
    rgb = np.stack(np.broadcast_arrays(x, y, (x + y) / 2), axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def _noise_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _blank_bilevel_png(width: int, height: int) -> bytes:
    """A real, complete 1-bit PNG of the given size, built row by row so it never sits in memory."""
    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(6)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _dataset(transfer_syntax: str = uid.ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.SOPClassUID = uid.SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientName = "Test^Phantom"
    return ds


def _write(ds: Dataset, *, preamble: bool = True) -> bytes:
    buffer = io.BytesIO()
    if preamble:
        dcmwrite(buffer, ds, enforce_file_format=True)
    else:
        del ds.file_meta
        dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


def _dicom(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    *,
    bits_stored: int | None = None,
    transfer_syntax: str = uid.ExplicitVRLittleEndian,
    preamble: bool = True,
    **attributes: object,
) -> bytes:
    """An uncompressed (or deflated) DICOM file holding ``pixels``."""
    ds = _dataset(transfer_syntax)
    ds.set_pixel_data(pixels, photometric, bits_stored or 8 * pixels.dtype.itemsize)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return _write(ds, preamble=preamble)


def _encapsulated_dicom(
    frame: bytes,
    transfer_syntax: str,
    *,
    rows: int,
    columns: int,
    photometric: str = "MONOCHROME2",
    samples: int = 1,
    bits: int = 8,
) -> bytes:
    """A compressed DICOM file whose single frame is ``frame`` (which may be garbage)."""
    ds = _dataset(transfer_syntax)
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = samples
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return _write(ds)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


_ONE_SENTENCE = re.compile(r"[.!?](?=\s|$)")


def _assert_plain_message(error: ImageLoadError, filename: str | None) -> None:
    """One plain sentence that names the file and says what featviz accepts, with no traceback chain."""
    message = str(error)
    expected_name = filename if filename is not None else "the image"
    assert expected_name in message, message
    assert "\n" not in message, message
    assert message[0].isupper() and message.endswith("."), message
    assert len(_ONE_SENTENCE.findall(message)) == 1, message
    assert "PNG" in message, message
    assert "Traceback" not in message and "Error" not in message, message
    assert error.__cause__ is None, "the cause must be hidden (from None)"
    assert error.__context__ is None or error.__suppress_context__, "the context must be hidden (from None)"


def _load_error(data: bytes, filename: str | None) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(data, filename)
    _assert_plain_message(excinfo.value, filename)
    return excinfo.value


# --------------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "source_mode", "expected_mode"),
    [
        ("PNG", "RGB", "RGB"),
        ("PNG", "L", "L"),
        ("JPEG", "RGB", "RGB"),
        ("JPEG", "L", "L"),
        ("WEBP", "RGB", "RGB"),
        ("WEBP", "L", "RGB"),  # WebP has no greyscale
        ("BMP", "RGB", "RGB"),
        ("BMP", "L", "L"),
        ("GIF", "RGB", "RGB"),  # palette -> RGB
        ("GIF", "L", "RGB"),
        ("TIFF", "RGB", "RGB"),
        ("TIFF", "L", "L"),
    ],
)
def test_formats_round_trip(fmt: str, source_mode: str, expected_mode: str) -> None:
    source = _rgb(37, 23).convert(source_mode)
    image = load_image(_save(source, fmt), f"picture.{fmt.lower()}")
    assert image.mode == expected_mode
    assert image.size == (37, 23)
    assert type(image) is Image.Image, "a plain, detached image"
    if fmt in ("PNG", "BMP", "TIFF"):
        assert np.array_equal(_pixels(image), _pixels(source))


def test_format_is_found_from_the_bytes_not_the_name() -> None:
    jpeg = _save(_rgb(16, 8), "JPEG")
    assert load_image(jpeg, "actually_a_jpeg.png").size == (16, 8)
    assert load_image(jpeg, None).mode == "RGB"
    assert load_image(jpeg, "no_extension").mode == "RGB"


def test_bytearray_and_memoryview_are_accepted() -> None:
    png = _save(_rgb(5, 4), "PNG")
    assert load_image(bytearray(png)).size == (5, 4)
    assert load_image(memoryview(png)).size == (5, 4)


def test_animated_gif_gives_the_first_frame() -> None:
    red = Image.new("RGB", (8, 6), (255, 0, 0))
    green = Image.new("RGB", (8, 6), (0, 255, 0))
    data = _save(red, "GIF", save_all=True, append_images=[green], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    image = load_image(data, "anim.gif")
    assert image.mode == "RGB" and image.size == (8, 6)
    assert image.getpixel((3, 3)) == (255, 0, 0)


def test_multipage_tiff_gives_the_first_page() -> None:
    first = Image.new("RGB", (10, 5), (255, 0, 0))
    second = Image.new("RGB", (20, 20), (0, 0, 255))
    data = _save(first, "TIFF", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    image = load_image(data, "pages.tiff")
    assert image.size == (10, 5)
    assert image.getpixel((0, 0)) == (255, 0, 0)
    assert not hasattr(image, "n_frames") or image.n_frames == 1


def test_exif_orientation_is_applied() -> None:
    source = Image.new("RGB", (40, 20), (0, 0, 255))
    source.paste((255, 0, 0), (0, 0, 20, 20))  # red on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image = load_image(_save(source, "JPEG", exif=exif.tobytes(), quality=95), "phone.jpg")
    assert image.size == (20, 40)
    red, _, blue = image.getpixel((10, 5))  # the left half is now at the top
    assert red > 200 and blue < 60


def test_broken_exif_does_not_stop_the_image_loading() -> None:
    image = load_image(_save(_rgb(12, 9), "JPEG", exif=b"Exif\x00\x00garbage-exif-block"), "odd.jpg")
    assert image.size == (12, 9) and image.mode == "RGB"


# --------------------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------------------


def test_rgba_is_composited_on_white() -> None:
    source = Image.new("RGBA", (3, 1))
    source.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red
    source.putpixel((1, 0), (0, 0, 255, 255))  # opaque blue
    source.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black
    image = load_image(_save(source, "PNG"), "logo.png")
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == (0, 0, 255)
    assert all(abs(c - 127) <= 1 for c in image.getpixel((2, 0)))


def test_grey_with_alpha_stays_grey_on_white() -> None:
    source = Image.new("LA", (2, 1))
    source.putpixel((0, 0), (0, 0))
    source.putpixel((1, 0), (40, 255))
    image = load_image(_save(source, "PNG"), "grey_alpha.png")
    assert image.mode == "L"
    assert _pixels(image).ravel().tolist() == [255, 40]


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_on_white(fmt: str) -> None:
    source = Image.new("P", (2, 1))
    source.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    source.putpixel((0, 0), 0)
    source.putpixel((1, 0), 1)
    image = load_image(_save(source, fmt, transparency=0), f"palette.{fmt.lower()}")
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == (0, 0, 255)


def test_palette_without_transparency_becomes_rgb() -> None:
    source = Image.new("P", (2, 1))
    source.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    source.putpixel((1, 0), 1)
    image = load_image(_save(source, "PNG"), "palette.png")
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 0, 0) and image.getpixel((1, 0)) == (0, 0, 255)


def test_grey_png_with_transparent_value_is_composited_on_white() -> None:
    source = Image.new("L", (2, 1), 0)
    source.putpixel((1, 0), 90)
    image = load_image(_save(source, "PNG", transparency=0), "trns.png")
    assert image.mode == "L"
    assert _pixels(image).ravel().tolist() == [255, 90]


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_rgb(fmt: str) -> None:
    source = Image.new("CMYK", (4, 3), (0, 0, 0, 0))
    source.putpixel((1, 1), (255, 0, 0, 0))
    image = load_image(_save(source, fmt), f"print.{fmt.lower()}")
    assert image.mode == "RGB" and image.size == (4, 3)
    if fmt == "TIFF":
        assert image.getpixel((0, 0)) == (255, 255, 255)
        assert image.getpixel((1, 1)) == (0, 255, 255)


def test_ycbcr_tiff_becomes_rgb() -> None:
    image = load_image(_save(_rgb(6, 4).convert("YCbCr"), "TIFF"), "ycbcr.tif")
    assert image.mode == "RGB" and image.size == (6, 4)


@pytest.mark.parametrize(
    ("fmt", "dtype", "mode"),
    [("PNG", "<u2", "I;16"), ("TIFF", "<u2", "I;16"), ("TIFF", ">u2", "I;16B"), ("TIFF", "<i4", "I")],
)
def test_high_bit_depth_grey_is_scaled_min_to_max(fmt: str, dtype: str, mode: str) -> None:
    values = np.array([[1000, 2000], [4000, 5000]], dtype=dtype)
    source = Image.frombytes(mode, (2, 2), values.tobytes())
    data = _save(source, fmt)
    assert Image.open(io.BytesIO(data)).mode == mode
    image = load_image(data, f"depth.{fmt.lower()}")
    assert image.mode == "L"
    assert _pixels(image).tolist() == [[0, 64], [191, 255]]


def test_float_tiff_is_scaled_min_to_max() -> None:
    source = Image.fromarray(np.array([[-2.0, -1.0], [1.0, 2.0]], dtype=np.float32))
    image = load_image(_save(source, "TIFF"), "float.tif")
    assert image.mode == "L"
    assert _pixels(image).tolist() == [[0, 64], [191, 255]]


def test_float_tiff_with_nan_and_infinity() -> None:
    values = np.array([[np.nan, np.inf, -np.inf], [1.0, 1.5, 5.0]], dtype=np.float32)
    image = load_image(_save(Image.fromarray(values), "TIFF"), "float.tif")
    assert _pixels(image).tolist() == [[0, 255, 0], [0, 32, 255]]


@pytest.mark.parametrize(
    "values",
    [np.full((3, 4), 7.5), np.full((3, 4), np.nan), np.array([[np.inf, -np.inf], [np.nan, np.nan]])],
)
def test_constant_or_non_finite_float_image_gives_no_division_by_zero(values: np.ndarray) -> None:
    source = Image.fromarray(values.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from numpy either
        image = load_image(_save(source, "TIFF"), "flat.tif")
    expected = np.where(np.isposinf(values), 255, 0)
    assert _pixels(image).tolist() == expected.tolist()


def test_constant_16_bit_image_gives_zeros() -> None:
    source = Image.frombytes("I;16", (3, 2), np.full((2, 3), 4242, dtype="<u2").tobytes())
    image = load_image(_save(source, "PNG"), "flat.png")
    assert image.mode == "L" and not _pixels(image).any()


def test_one_bit_becomes_grey() -> None:
    source = Image.new("1", (3, 1), 0)
    source.putpixel((1, 0), 1)
    image = load_image(_save(source, "PNG"), "mask.png")
    assert image.mode == "L"
    assert _pixels(image).ravel().tolist() == [0, 255, 0]


@pytest.mark.parametrize("size", [(1, 1), (3, 3), (4000, 2), (2, 4000)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_tiny_and_extreme_aspect_ratio_images_load(size: tuple[int, int], fmt: str) -> None:
    image = load_image(_save(_rgb(*size), fmt), f"odd.{fmt.lower()}")
    assert image.size == size and image.mode == "RGB"


# --------------------------------------------------------------------------------------------------
# Bad inputs and limits
# --------------------------------------------------------------------------------------------------


_SAMPLE_PNG = _save(_noise_rgb(32, 24, seed=1), "PNG")
_SAMPLE_JPEG = _save(_noise_rgb(64, 48, seed=2), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        pytest.param(b"", "empty.png", id="empty"),
        pytest.param(b"", None, id="empty-no-name"),
        pytest.param(b"Shopping list:\n- milk\n- eggs\n" * 20, "notes.png", id="text-as-png"),
        pytest.param(_SAMPLE_PNG[: len(_SAMPLE_PNG) // 2], "cut.png", id="truncated-png"),
        pytest.param(_SAMPLE_JPEG[: len(_SAMPLE_JPEG) * 2 // 3], "cut.jpg", id="truncated-jpeg"),
        pytest.param(_SAMPLE_JPEG[:200], "header_only.jpg", id="jpeg-header-only"),
        pytest.param(np.random.default_rng(3).bytes(5000), "noise.jpg", id="random-bytes"),
        pytest.param(np.random.default_rng(4).bytes(5000), None, id="random-bytes-no-name"),
        pytest.param(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "drawing.eps", id="eps"),
        pytest.param(b"GIF89a", "stub.gif", id="gif-signature-only"),
        pytest.param(b"\x89PNG\r\n\x1a\n", "stub.png", id="png-signature-only"),
    ],
)
def test_bad_inputs_raise_a_plain_image_load_error(data: bytes, filename: str | None) -> None:
    _load_error(data, filename)


def test_error_names_only_the_base_name_on_one_line() -> None:
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(b"not an image", "C:\\Users\\dr\\scans/notes\n.png")
    message = str(excinfo.value)
    assert "notes .png" in message and "Users" not in message and "\n" not in message


def test_decompression_bomb_png_is_refused() -> None:
    data = _blank_bilevel_png(20_000, 20_000)
    assert len(data) < 200_000, "the file itself is small"
    error = _load_error(data, "bomb.png")
    assert "megapixels" in str(error)


def test_image_between_our_limit_and_pillows_is_refused() -> None:
    side = 8_500  # 72 megapixels: over MAX_PIXELS, under Pillow's own warning threshold
    assert MAX_PIXELS < side * side < (Image.MAX_IMAGE_PIXELS or 0)
    error = _load_error(_blank_bilevel_png(side, side), "large.png")
    assert "8500×8500" in str(error)


def test_side_longer_than_max_side_is_refused() -> None:
    error = _load_error(_blank_bilevel_png(1, MAX_SIDE + 1), "ribbon.png")
    assert f"1×{MAX_SIDE + 1}" in str(error)
    assert load_image(_blank_bilevel_png(2, MAX_SIDE), "tall.png").size == (2, MAX_SIDE)


def test_limit_follows_max_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixels, "MAX_PIXELS", 100)
    _load_error(_save(_rgb(11, 10), "PNG"), "just_over.png")
    assert load_image(_save(_rgb(10, 10), "PNG"), "at_limit.png").size == (10, 10)


def test_pillow_global_settings_are_left_alone() -> None:
    before = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS, list(warnings.filters))
    for data in (_SAMPLE_PNG, _SAMPLE_JPEG[:300], _blank_bilevel_png(20_000, 20_000)):
        try:
            load_image(data, "x.png")
        except ImageLoadError:
            pass
    assert (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS, list(warnings.filters)) == before


def test_loading_from_many_threads() -> None:
    inputs = [(_SAMPLE_PNG, "a.png"), (_SAMPLE_JPEG, "b.jpg"), (_dicom(np.eye(4, dtype=np.uint16)), None)]
    expected = [_pixels(load_image(data, name)) for data, name in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: _pixels(load_image(*inputs[i % 3])), range(48)))
    for i, result in enumerate(results):
        assert np.array_equal(result, expected[i % 3])


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def test_supported_extensions() -> None:
    assert set(SUPPORTED_EXTENSIONS) >= {"png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff", "dcm"}
    assert all(ext == ext.lower() and not ext.startswith(".") for ext in SUPPORTED_EXTENSIONS)


def test_image_digest() -> None:
    assert image_digest(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert image_digest(_SAMPLE_PNG) != image_digest(_SAMPLE_JPEG)


def test_describe_image() -> None:
    assert describe_image(Image.new("RGB", (451, 300))) == "451×300 RGB"
    assert describe_image(Image.new("L", (2, 3))) == "2×3 L"


# --------------------------------------------------------------------------------------------------
# Property: no input escapes as anything but ImageLoadError
# --------------------------------------------------------------------------------------------------


def _seed_files() -> list[bytes]:
    rgb = _noise_rgb(12, 9, seed=5)
    grey = rgb.convert("L")
    exif = Image.Exif()
    exif[0x0112] = 8
    return [
        _save(rgb, "PNG"),
        _save(rgb.convert("RGBA"), "PNG"),
        _save(rgb, "JPEG", exif=exif.tobytes()),
        _save(grey, "JPEG"),
        _save(rgb, "GIF", save_all=True, append_images=[grey.convert("RGB")]),
        _save(rgb, "TIFF", save_all=True, append_images=[grey]),
        _save(Image.fromarray(np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)), "TIFF"),
        _save(rgb, "WEBP"),
        _save(rgb, "BMP"),
        _dicom(np.arange(20, dtype=np.uint16).reshape(4, 5), WindowCenter=10, WindowWidth=8),
        _dicom(np.arange(2 * 20, dtype=np.int16).reshape(2, 4, 5), "MONOCHROME1"),
        _dicom(_pixels(rgb), "RGB", transfer_syntax=uid.DeflatedExplicitVRLittleEndian),
        _encapsulated_dicom(_save(grey, "JPEG"), uid.JPEGBaseline8Bit, rows=9, columns=12),
    ]


_SEEDS = _seed_files()


@st.composite
def _corrupted(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for position, bit in draw(
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 7)), max_size=8)
    ):
        data[position] ^= 1 << bit
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(st.binary(max_size=2048), _corrupted()),
    filename=st.sampled_from(["upload.png", "scan.dcm", "photo.jpg", None]),
)
def test_any_bytes_give_an_image_or_an_image_load_error(data: bytes, filename: str | None) -> None:
    try:
        image = load_image(data, filename)
    except ImageLoadError as error:
        message = str(error)
        assert message.endswith(".") and "\n" not in message
        assert (filename or "the image") in message
        assert len(_ONE_SENTENCE.findall(message)) == 1, message
        return
    assert image.mode in ("RGB", "L")
    assert image.width >= 1 and image.height >= 1
    image.tobytes()  # fully loaded, no lazy decoding left


def test_every_seed_file_loads() -> None:
    for data in _SEEDS:
        assert load_image(data, "seed").mode in ("RGB", "L")
