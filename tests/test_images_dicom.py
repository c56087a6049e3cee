"""Tests for featviz_core.images.dicom: DICOM files built in memory with pydicom, loaded through
featviz_core.images.load (``load_image``, and ``is_dicom`` as it re-exports it), as callers do.

The builders and message checks are shared with tests/test_images.py and imported from there.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space

from featviz_core.images import dicom as images_dicom
from featviz_core.images import is_dicom, load_image, pixels
from tests.test_images import (
    _SAMPLE_PNG,
    _dataset,
    _dicom,
    _encapsulated_dicom,
    _load_error,
    _pixels,
    _rgb,
    _save,
    _write,
)

# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _linear_window(value: float, center: float, width: float) -> int:
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR) onto 0..255, written out independently of featviz."""
    if value <= center - 0.5 - (width - 1) / 2:
        return 0
    if value > center - 0.5 + (width - 1) / 2:
        return 255
    return round(((value - (center - 0.5)) / (width - 1) + 0.5) * 255)


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------


def test_dicom_without_window_is_scaled_min_to_max() -> None:
    stored = np.array([[1000, 1100], [1500, 1200]], dtype=np.uint16)
    image = load_image(_dicom(stored), "scan.dcm")
    assert image.mode == "L" and image.size == (2, 2)
    assert _pixels(image).tolist() == [[0, 51], [255, 102]]


def test_dicom_window_maps_values_through_the_window() -> None:
    stored = np.array([[0, 1000, 1064], [1264, 3000, 1100]], dtype=np.uint16)
    data = _dicom(stored, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    image = load_image(data, "ct.dcm")
    hounsfield = stored.astype(float) - 1024
    expected = [[_linear_window(v, 40, 400) for v in row] for row in hounsfield]
    assert _pixels(image).tolist() == expected
    assert _pixels(image)[0, 2] == 128  # 40 HU, the window's centre
    assert _pixels(image)[0, 1] == 87  # -24 HU


def test_dicom_window_is_applied_after_rescale_slope_and_intercept() -> None:
    stored = np.array([[480, 500, 600]], dtype=np.uint16)
    data = _dicom(stored, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=100)
    image = load_image(data, "rescaled.dcm")
    # Rescaled values are -40, 0 and 200; without the rescale every stored value would be above the window.
    assert _pixels(image).tolist() == [[_linear_window(-40, 0, 100), _linear_window(0, 0, 100), 255]]
    assert _pixels(image).tolist() == [[26, 129, 255]]


def test_dicom_rescale_without_window_uses_the_rescaled_range() -> None:
    stored = np.array([[0, 40, 100]], dtype=np.uint16)
    image = load_image(_dicom(stored, RescaleSlope=-1, RescaleIntercept=0), "negative_slope.dcm")
    assert _pixels(image).tolist() == [[255, 153, 0]]


def test_dicom_multi_valued_window_uses_the_first() -> None:
    stored = np.array([[0, 100, 200]], dtype=np.uint16)
    image = load_image(_dicom(stored, WindowCenter=[100, 5000], WindowWidth=[201, 10]), "views.dcm")
    assert _pixels(image).tolist() == [[_linear_window(v, 100, 201) for v in (0, 100, 200)]]


def test_dicom_unusable_window_falls_back_to_min_max() -> None:
    stored = np.array([[10, 20, 30]], dtype=np.uint16)
    image = load_image(_dicom(stored, WindowCenter=20, WindowWidth=0), "zero_width.dcm")
    assert _pixels(image).tolist() == [[0, 128, 255]]


def test_dicom_monochrome1_is_inverted() -> None:
    stored = np.array([[0, 100], [200, 400]], dtype=np.uint16)
    image = load_image(_dicom(stored, "MONOCHROME1"), "xray.dcm")
    assert _pixels(image).tolist() == [[255, 191], [128, 0]]


def test_dicom_signed_pixels() -> None:
    stored = np.array([[-1000, 0, 3000]], dtype=np.int16)
    image = load_image(_dicom(stored), "signed.dcm")
    assert _pixels(image).tolist() == [[0, 64, 255]]


def test_dicom_8_bit_grey() -> None:
    stored = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    image = load_image(_dicom(stored, bits_stored=8), "grey8.dcm")
    assert image.mode == "L" and _pixels(image).tolist() == [[0, 85], [170, 255]]


def test_dicom_rgb() -> None:
    rgb = _pixels(_rgb(6, 4))
    image = load_image(_dicom(rgb, "RGB"), "photo.dcm")
    assert image.mode == "RGB" and image.size == (6, 4)
    assert np.array_equal(_pixels(image), rgb)


def test_dicom_ybr_full_becomes_rgb() -> None:
    rgb = _pixels(_rgb(6, 4))
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    image = load_image(_dicom(ybr, "YBR_FULL"), "ybr.dcm")
    assert image.mode == "RGB"
    assert np.abs(_pixels(image).astype(int) - rgb.astype(int)).max() <= 2


def test_dicom_multi_frame_gives_the_first_frame() -> None:
    frames = np.zeros((3, 4, 5), dtype=np.uint16)
    frames[0] = np.arange(20, dtype=np.uint16).reshape(4, 5) * 10
    frames[1] = 7
    frames[2] = 60000
    image = load_image(_dicom(frames), "cine.dcm")
    assert image.size == (5, 4)
    expected = np.rint(np.arange(20).reshape(4, 5) * 255 / 19).astype(int)
    assert _pixels(image).tolist() == expected.tolist()


def test_dicom_enhanced_multi_frame_window_from_functional_groups() -> None:
    stored = np.array([[[0, 100, 200]], [[5, 5, 5]]], dtype=np.uint16)
    ds = _dataset()
    ds.set_pixel_data(stored, "MONOCHROME2", 16)
    voi = Dataset()
    voi.WindowCenter = 100
    voi.WindowWidth = 101
    group = Dataset()
    group.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [group]
    image = load_image(_write(ds), "enhanced.dcm")
    assert _pixels(image).tolist() == [[_linear_window(v, 100, 101) for v in (0, 100, 200)]]


def test_dicom_voi_lut_table_wins_over_the_window() -> None:
    ds = _dataset()
    ds.set_pixel_data(np.array([[0, 1], [2, 3]], dtype=np.uint16), "MONOCHROME2", 16)
    table = Dataset()
    table.LUTDescriptor = [4, 0, 8]  # 4 entries, first stored value 0, 8-bit output
    table.add_new(0x00283006, "US", [0, 50, 200, 255])  # LUT Data
    ds.VOILUTSequence = [table]
    ds.WindowCenter = 1
    ds.WindowWidth = 1
    assert _pixels(load_image(_write(ds), "lut.dcm")).tolist() == [[0, 50], [200, 255]]


def test_dicom_palette_colour() -> None:
    ds = _dataset()
    ds.set_pixel_data(np.array([[0, 1], [2, 3]], dtype=np.uint8), "PALETTE COLOR", 8)
    tables = {"Red": [65535, 0, 0, 32896], "Green": [0, 65535, 0, 32896], "Blue": [0, 0, 65535, 32896]}
    for colour, entries in tables.items():
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [4, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", np.array(entries, dtype="<u2").tobytes())
    image = load_image(_write(ds), "palette.dcm")
    assert image.mode == "RGB"
    assert _pixels(image).tolist() == [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [128, 128, 128]]]


def test_dicom_jpeg_baseline_is_decoded() -> None:
    grey = _rgb(16, 8).convert("L")
    data = _encapsulated_dicom(_save(grey, "JPEG", quality=95), uid.JPEGBaseline8Bit, rows=8, columns=16)
    image = load_image(data, "compressed.dcm")
    assert image.mode == "L" and image.size == (16, 8)


def test_dicom_deflated_transfer_syntax_loads() -> None:
    stored = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    data = _dicom(stored, transfer_syntax=uid.DeflatedExplicitVRLittleEndian)
    assert _pixels(load_image(data, "deflated.dcm")).tolist() == [[0, 85], [170, 255]]


@pytest.mark.parametrize("filename", ["scan.png", None, "scan", "scan.dcm"])
def test_dicom_is_detected_by_its_marker_not_its_name(filename: str | None) -> None:
    data = _dicom(np.array([[0, 1]], dtype=np.uint16))
    assert is_dicom(data)
    assert load_image(data, filename).mode == "L"


def test_dicom_without_preamble_is_read_only_when_named_dcm() -> None:
    data = _dicom(np.array([[0, 300], [600, 900]], dtype=np.uint16), preamble=False)
    assert not is_dicom(data)
    assert _pixels(load_image(data, "old_scanner.DCM")).tolist() == [[0, 85], [170, 255]]
    _load_error(data, "old_scanner.png")
    _load_error(data, None)


@pytest.mark.parametrize(
    "transfer_syntax",
    [
        uid.JPEG2000,
        uid.JPEG2000Lossless,
        uid.JPEGLSLossless,
        uid.HTJ2K,
        uid.JPEGBaseline8Bit,
        uid.RLELossless,
    ],
)
def test_dicom_compression_that_cannot_be_decoded(transfer_syntax: str) -> None:
    data = _encapsulated_dicom(b"\x00garbage" * 20, transfer_syntax, rows=8, columns=8)
    error = _load_error(data, "mri.dcm")
    assert "compression" in str(error) and "uncompressed DICOM" in str(error)


def test_dicom_without_pixel_data() -> None:
    ds = _dataset()
    ds.StudyDescription = "a structured report, no pixels"
    error = _load_error(_write(ds), "report.dcm")
    assert "no picture" in str(error)


def test_truncated_dicom() -> None:
    data = _dicom(np.arange(64, dtype=np.uint16).reshape(8, 8))
    _load_error(data[: len(data) - 50], "cut.dcm")
    _load_error(data[:200], "cut.dcm")


def test_dicom_rows_times_columns_over_the_limit_is_refused_before_decoding() -> None:
    data = _encapsulated_dicom(b"\x00garbage" * 20, uid.JPEG2000, rows=10_000, columns=10_000)
    assert len(data) < 2_000
    error = _load_error(data, "huge.dcm")
    assert "10000×10000" in str(error) and "megapixels" in str(error)


def test_dicom_limit_follows_max_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixels, "MAX_PIXELS", 100)
    _load_error(_dicom(np.zeros((20, 20), dtype=np.uint16)), "big.dcm")
    assert load_image(_dicom(np.zeros((10, 10), dtype=np.uint16)), "ok.dcm").size == (10, 10)


def test_dicom_compressed_frame_larger_than_its_header_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixels, "MAX_PIXELS", 1_000)
    big_frame = _save(Image.new("L", (64, 64), 128), "JPEG")
    data = _encapsulated_dicom(big_frame, uid.JPEGBaseline8Bit, rows=8, columns=8)
    error = _load_error(data, "liar.dcm")
    assert "megapixels" in str(error)


def test_dicom_deflate_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _dicom(np.zeros((100, 100), dtype=np.uint16), transfer_syntax=uid.DeflatedExplicitVRLittleEndian)
    assert len(data) < 2_000
    monkeypatch.setattr(images_dicom, "MAX_DICOM_BYTES", 5_000)
    _load_error(data, "bomb.dcm")


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def test_is_dicom() -> None:
    assert is_dicom(b"\x00" * 128 + b"DICM" + b"\x00" * 10)
    assert not is_dicom(b"\x00" * 128 + b"DICX")
    assert not is_dicom(b"DICM")
    assert not is_dicom(b"")
    assert not is_dicom(_SAMPLE_PNG)
