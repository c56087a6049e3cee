"""Tests for the volume and clip loaders: featviz_core.images (volume_load, nifti, dicom_series, dicom_frames, video, phantom).

Every file is built in memory with known values at known places (tests/volume_builders.py).
"""

from __future__ import annotations

import builtins
import io
import os
import random
import zipfile
from typing import Any

import numpy as np
import pytest

from featviz_core.errors import ImageLoadError, SeriesChoiceError
from featviz_core.images import WINDOW_PRESETS, Volume, apply_window, list_series, load_volume
from featviz_core.images import video as images_video
from featviz_core.images import volume as images_volume
from featviz_core.images.phantom import PHANTOM_SHAPE, PHANTOM_SPACING, phantom_nifti_bytes, phantom_volume
from featviz_core.images.volume import reduction_factors
from tests.volume_builders import SAGITTAL, ct_slice, enhanced_ct, nifti, us_cine, video, zip_of


def _error(data: bytes, filename: str | None = None, **kwargs: object) -> str:
    with pytest.raises(ImageLoadError) as caught:
        load_volume(data, filename, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.endswith((".", ")")) and "Traceback" not in message
    return message


# --------------------------------------------------------------------------------------------------
# Volume, windows
# --------------------------------------------------------------------------------------------------


def test_apply_window_maps_level_and_width_onto_0_255() -> None:
    values = np.array([-2000.0, -600 - 750, -600.0, -600 + 750, 3000.0, np.nan], dtype=np.float32)
    out = apply_window(values, *WINDOW_PRESETS["lung"])
    assert out.dtype == np.uint8 and out.tolist() == [0, 0, 128, 255, 255, 0]
    assert WINDOW_PRESETS["mediastinum"] == (50, 350) and WINDOW_PRESETS["bone"] == (400, 1800)
    assert WINDOW_PRESETS["brain"] == (40, 80)
    with pytest.raises(ValueError):
        apply_window(values, 0, 0)


def test_volume_slices_show_radiological_orientation_and_are_read_only() -> None:
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (z: S, y: A, x: R)
    volume = Volume(array, (3.0, 2.0, 1.0), "volume", "CT", None, "test")
    assert volume.shape3d == (2, 3, 4) and volume.channels == 1
    axial = volume.slice("axial", 1)
    assert axial[0, 0] == array[1, 2, 3]  # top left: most anterior, patient's right
    assert volume.slice("coronal", 0)[0, 0] == array[1, 0, 3]  # top: superior; left: patient's right
    assert volume.slice("sagittal", 2)[0, 0] == array[1, 2, 2]  # top: superior; left: anterior
    assert volume.slice_spacing("axial") == (2.0, 1.0) and volume.slice_spacing("sagittal") == (3.0, 2.0)
    assert volume.slice().shape == (3, 4)  # the middle slice by default
    with pytest.raises(ValueError, match="axial, coronal, sagittal"):
        volume.slice("oblique")  # type: ignore[arg-type]
    with pytest.raises(IndexError):
        volume.slice("axial", 2)
    with pytest.raises(ValueError):
        volume.array[0, 0, 0] = 1


def test_reduction_factors_take_in_plane_detail_first() -> None:
    assert reduction_factors((300, 512, 512), (1.25, 0.7, 0.7), budget=32 * 2**20) == (1, 2, 2)
    assert reduction_factors((10, 8, 8), (1.0, 1.0, 1.0), budget=640) == (1, 1, 1)
    factors = reduction_factors((1000, 1000, 1000), (1.0, 1.0, 1.0), budget=1_000_000)
    assert np.prod([np.ceil(1000 / f) for f in factors]) <= 1_000_000


# --------------------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------------------


def _indexed(shape: tuple[int, int, int]) -> np.ndarray:
    i, j, k = np.indices(shape)
    return (100 * i + 10 * j + k).astype(np.int16)


def test_nifti_lps_comes_out_ras_with_spacing_and_values_in_place() -> None:
    data = _indexed((4, 5, 6))  # i -> patient's left (L), j -> posterior (P), k -> superior (S)
    volume = load_volume(nifti(data, np.diag([-1.0, -2.0, 3.0, 1.0])), "lps.nii")
    assert volume.kind == "volume" and volume.array.dtype == np.float32
    assert volume.array.shape == (6, 5, 4) and volume.spacing == (3.0, 2.0, 1.0)
    for i, j, k in [(0, 0, 0), (3, 4, 5), (1, 2, 3), (2, 0, 4)]:
        assert volume.array[k, 4 - j, 3 - i] == data[i, j, k]  # R and A grow with the index
    assert volume.description.startswith("NIfTI · 6 slices of 4×5 · 1×2×3 mm")


def test_nifti_with_permuted_axes_comes_out_ras() -> None:
    data = _indexed((4, 5, 6))  # i -> superior (2 mm), j -> right (1.5 mm), k -> anterior (3 mm)
    affine = np.array([[0, 1.5, 0, 0], [0, 0, 3.0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])
    volume = load_volume(nifti(data, affine), None)
    assert volume.array.shape == (4, 6, 5) and volume.spacing == (2.0, 3.0, 1.5)
    for i, j, k in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        assert volume.array[i, k, j] == data[i, j, k]


def test_nifti_gz_applies_slope_and_intercept() -> None:
    data = _indexed((3, 3, 2))
    volume = load_volume(nifti(data, np.eye(4), gz=True, slope=2.0, inter=-1000.0), "scan.nii.gz")
    assert volume.array[1, 2, 0] == 2.0 * data[0, 2, 1] - 1000.0


def test_nifti_4d_keeps_the_first_volume_and_says_so() -> None:
    data = np.stack([_indexed((3, 3, 2)), _indexed((3, 3, 2)) + 1], axis=-1)
    volume = load_volume(nifti(data, np.eye(4)), "fmri.nii")
    assert volume.array.shape == (2, 3, 3) and volume.array[1, 2, 0] == data[0, 2, 1, 0]
    assert "first of 2 volumes" in volume.description


def test_large_nifti_is_reduced_to_the_budget_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_volume, "MAX_VOXELS", 4 * 4 * 8)
    data = np.ones((8, 8, 8), dtype=np.int16)
    data[:2, :2, :] = 5  # one 2×2 block in the plane, all along z: a mean of 5 after reduction
    volume = load_volume(nifti(data, np.eye(4)), "big.nii")
    assert volume.array.shape == (8, 4, 4) and volume.spacing == (1.0, 2.0, 2.0)
    assert np.all(volume.array[:, 0, 0] == 5) and np.all(volume.array[:, 1:, 1:] == 1)
    assert "average of 4 original ones" in volume.description and "memory limit" in volume.description


def test_nifti_gzip_bomb_and_damage_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_volume, "MAX_UNCOMPRESSED_BYTES", 1 << 20)
    bomb = nifti(np.zeros((128, 128, 128), dtype=np.uint8), np.eye(4), gz=True)
    assert "too large to unpack safely" in _error(bomb, "bomb.nii.gz")
    good = nifti(_indexed((4, 4, 4)), np.eye(4))
    assert "damaged or incomplete" in _error(good[:400], "cut.nii")
    assert "damaged or incomplete" in _error(
        nifti(_indexed((4, 4, 4)), np.eye(4), gz=True)[:-12], "cut.nii.gz"
    )


# --------------------------------------------------------------------------------------------------
# DICOM series in a zip
# --------------------------------------------------------------------------------------------------


def _axial_series(count: int = 6, **kwargs: Any) -> list[bytes]:
    """Slice k (bottom to top) sits at z = -10 + 2.5 k and holds HU 10 k, with a slope and intercept of its own;
    the first pixel (the patient's right front corner) of every slice holds HU 500."""
    files = []
    for k in range(count):
        slope, intercept = (1.0, -1024.0) if k % 2 else (2.0, -2048.0)
        hu = np.full((3, 4), 10.0 * k)
        hu[0, 0] = 500.0
        files.append(
            ct_slice(
                (hu - intercept) / slope,
                (-50.0, -60.0, -10.0 + 2.5 * k),
                slope=slope,
                intercept=intercept,
                instance=count - k if k % 3 else 7 + k,
                **kwargs,
            )
        )
    return files


def test_shuffled_misnamed_series_is_ordered_by_position() -> None:
    files = _axial_series()
    names = [f"IMG{n:04d}.dcm" for n in (3, 0, 5, 1, 4, 2)]  # names in no relation to the positions
    members = list(zip(names, files, strict=True)) + [
        ("README.txt", b"notes"),
        ("__MACOSX/._IMG1", b"\x00\x05"),
    ]
    random.Random(4).shuffle(members)
    volume = load_volume(zip_of(members), "chest.zip")
    assert volume.array.shape == (6, 3, 4) and volume.spacing == (2.5, 0.8, 0.7)
    assert [float(volume.array[k, 0, 0]) for k in range(6)] == [10.0 * k for k in range(6)]
    assert np.all(volume.array[:, -1, -1] == 500)  # the right front corner: high A and R indices
    assert np.all(volume.slice("axial", 3)[0, 0] == 500)  # shown at the top left
    assert volume.modality == "CT" and volume.units == "HU" and volume.window == WINDOW_PRESETS["mediastinum"]
    assert (
        volume.description == "CT · Chest 2.5 mm · 6 slices of 4×3 · 0.7×0.8×2.5 mm · 2 other files ignored"
    )


def test_sagittal_series_is_ordered_along_its_normal_and_turned_to_ras() -> None:
    # Sagittal: columns run anterior -> posterior, rows superior -> inferior, the normal points to the right.
    files = []
    for k, x in enumerate([30.0, 27.0, 33.0, 24.0]):
        stored = np.full((5, 3), 1024.0 + x)
        stored[0, 0] = 1024.0 + 999  # the top front pixel
        files.append(
            (f"s{k}.dcm", ct_slice(stored, (x, -20.0, 40.0), orientation=SAGITTAL, pixel_spacing=(1.5, 2.0)))
        )
    volume = load_volume(zip_of(files), "sag.zip")
    assert volume.array.shape == (5, 3, 4) and volume.spacing == (1.5, 2.0, 3.0)
    assert volume.array[0, 0, :].tolist() == [33.0, 30.0, 27.0, 24.0]  # RAS x: DICOM's x (to the left) falls
    assert np.all(volume.array[-1, -1, :] == 999)  # top front: highest S and A indices


def test_series_without_positions_follows_instance_numbers_and_says_so() -> None:
    files = [
        (
            f"{k}.dcm",
            ct_slice(np.full((3, 4), 100 + n), None, modality="MR", instance=n, intercept=0, window=(90, 60)),
        )
        for k, n in enumerate([3, 1, 2])
    ]
    volume = load_volume(zip_of(files), "mr.zip")
    assert volume.array[:, 0, 0].tolist() == [101.0, 102.0, 103.0]
    assert volume.modality == "MR" and volume.units is None and volume.window == (90.0, 60.0)
    assert "no slice positions: ordered by instance number" in volume.description


def test_uneven_slice_spacing_is_said() -> None:
    files = [(f"{z}.dcm", ct_slice(np.zeros((3, 4)), (0, 0, z))) for z in (0.0, 2.5, 5.0, 10.0)]
    volume = load_volume(zip_of(files), "gap.zip")
    assert volume.spacing[0] == 2.5 and "slice spacing varies from 2.5 to 5 mm" in volume.description


def test_two_series_need_a_choice_by_uid_or_description() -> None:
    chest = [(f"a{k}.dcm", blob) for k, blob in enumerate(_axial_series(3))]
    scout = [("b.dcm", ct_slice(np.zeros((3, 4)), (0, 0, 0), series_uid="1.2.3.9", description="Scout"))]
    data = zip_of(chest + scout)
    infos = list_series(data)
    assert [(i.description, i.modality, i.slices) for i in infos] == [
        ("Chest 2.5 mm", "CT", 3),
        ("Scout", "CT", 1),
    ]
    assert infos[0].label == "CT · Chest 2.5 mm · 3 slices"
    with pytest.raises(SeriesChoiceError) as caught:
        load_volume(data, "study.zip")
    assert "holds 2 series" in str(caught.value) and "'Scout'" in str(caught.value)
    assert caught.value.series == tuple(infos)
    assert load_volume(data, "study.zip", series=infos[0].uid).shape3d == (3, 3, 4)
    assert load_volume(data, "study.zip", series="scout").shape3d == (1, 3, 4)
    assert "no single series called 'Knee'" in _error(data, "study.zip", series="Knee")
    with pytest.raises(ImageLoadError, match="zip file is damaged"):
        list_series(b"not a zip")


def test_series_with_mixed_slices_is_refused() -> None:
    axial = [("a.dcm", ct_slice(np.zeros((3, 4)), (0, 0, 0)))]
    turned = axial + [("b.dcm", ct_slice(np.zeros((3, 4)), (0, 0, 2), orientation=SAGITTAL))]
    assert "cut in different directions" in _error(zip_of(turned), "mixed.zip")
    resized = axial + [("c.dcm", ct_slice(np.zeros((5, 4)), (0, 0, 4)))]
    assert "different sizes (4×3 and 4×5)" in _error(zip_of(resized), "mixed.zip")
    same_place = axial + [("b.dcm", ct_slice(np.ones((3, 4)), (0, 0, 0)))]
    assert "same position" in _error(zip_of(same_place), "echoes.zip")


def test_large_series_is_reduced_to_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_volume, "MAX_VOXELS", 6 * 3 * 2)
    volume = load_volume(zip_of([(f"{k}", blob) for k, blob in enumerate(_axial_series())]), "big.zip")
    assert volume.array.shape == (6, 3, 2) and volume.spacing == (2.5, 0.8, 1.4)
    assert "average of 2 original ones" in volume.description


def test_zip_limits_and_non_dicom_zips_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    files = [(f"{k}.dcm", blob) for k, blob in enumerate(_axial_series(3))]
    assert "no DICOM images (1 other file)" in _error(zip_of([("a.txt", b"x")]), "notes.zip")
    monkeypatch.setattr(images_volume, "MAX_ZIP_MEMBERS", 2)
    assert "too large to unpack safely" in _error(zip_of(files), "many.zip")
    monkeypatch.setattr(images_volume, "MAX_ZIP_MEMBERS", 10)
    monkeypatch.setattr(images_volume, "MAX_UNCOMPRESSED_BYTES", 1000)
    assert "too large to unpack safely" in _error(zip_of(files), "big.zip")
    assert "damaged" in _error(zip_of(files)[:-30], "cut.zip")


# --------------------------------------------------------------------------------------------------
# Multi-frame DICOM
# --------------------------------------------------------------------------------------------------


def test_enhanced_ct_frames_are_ordered_by_their_positions() -> None:
    z = [4.0, 0.0, 8.0, 2.0, 6.0]
    stored = np.stack([np.full((2, 3), 1024 + 10 * v) for v in z]).astype(np.uint16)
    volume = load_volume(enhanced_ct(stored, [(0.0, 0.0, v) for v in z]), "enhanced.dcm")
    assert volume.kind == "volume" and volume.units == "HU"
    assert volume.array.shape == (5, 2, 3) and volume.spacing == (2.0, 0.5, 0.6)
    assert volume.array[:, 0, 0].tolist() == [0.0, 20.0, 40.0, 60.0, 80.0]


def test_ultrasound_cine_is_a_colour_clip_with_its_frame_rate() -> None:
    frames = np.zeros((5, 16, 20, 3), dtype=np.uint8)
    for n in range(5):
        frames[n, :, :, n % 3] = 200
    clip = load_volume(us_cine(frames, frame_time_ms=40.0), "echo.dcm")
    assert clip.kind == "clip" and clip.modality == "US" and clip.fps == pytest.approx(25.0)
    assert clip.array.shape == (3, 5, 16, 20) and clip.channels == 3
    assert clip.array[:, 4, 8, 10].tolist() == [0.0, 200.0, 0.0]
    assert clip.slice("axial", 0).shape == (16, 20, 3) and clip.spacing[0] == pytest.approx(0.04)


def test_long_cine_keeps_64_evenly_spaced_frames() -> None:
    frames = np.arange(128, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 6), dtype=np.uint8)
    clip = load_volume(us_cine(frames, cine_rate=50), "long.dcm")
    assert clip.array.shape == (64, 4, 6) and clip.fps == pytest.approx(25.0)
    assert clip.array[:, 0, 0].tolist() == list(range(0, 128, 2))
    assert "every 2nd of 128 frames kept" in clip.description


# --------------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------------

_COLOURS = [(220, 30, 30), (30, 200, 40), (40, 40, 210)]


@pytest.mark.parametrize(("container", "codec"), [("avi", "mpeg4"), ("mp4", "mpeg4"), ("webm", "libvpx")])
def test_video_decodes_to_an_rgb_clip(container: str, codec: str) -> None:
    frames = [np.full((48, 64, 3), _COLOURS[n % 3], dtype=np.uint8) for n in range(9)]
    clip = load_volume(video(frames, fps=10, container=container, codec=codec), f"clip.{container}")
    assert clip.kind == "clip" and clip.array.shape == (3, 9, 48, 64) and clip.fps == pytest.approx(10.0)
    for n in range(9):
        assert np.abs(clip.array[:, n, 24, 32] - _COLOURS[n % 3]).max() < 25
    assert clip.description.startswith("Video clip · 9 frames of 64×48 at 10 fps")


def test_long_video_keeps_evenly_spaced_frames_and_says_so() -> None:
    frames = [np.full((16, 16, 3), 40 + n, dtype=np.uint8) for n in range(150)]
    clip = load_volume(video(frames, fps=30), "long.avi")
    assert clip.array.shape == (3, 50, 16, 16) and clip.fps == pytest.approx(10.0)
    grey = clip.array[1, :, 8, 8]
    assert np.abs(grey - (40 + 3 * np.arange(50))).max() < 4
    assert "every 3rd of 150 frames kept" in clip.description


def test_video_of_unknown_length_still_keeps_at_most_64_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_video, "_expected_frames", lambda *args: 0)
    frames = [np.full((16, 16, 3), 40 + n, dtype=np.uint8) for n in range(150)]
    clip = load_volume(video(frames, fps=30), "long.avi")
    assert clip.array.shape == (3, 38, 16, 16) and clip.fps == pytest.approx(7.5)  # every 4th frame
    assert np.abs(clip.array[1, :, 8, 8] - (40 + 4 * np.arange(38))).max() < 4
    monkeypatch.setattr(images_video, "MAX_DECODED_FRAMES", 20)
    assert "only the first 20 frames were read" in load_volume(video(frames[:30]), "c.avi").description


def test_oversized_frames_are_shrunk_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_volume, "MAX_VOXELS", 3 * 64 * 16 * 16)
    clip = load_volume(video([np.full((48, 64, 3), 90, dtype=np.uint8)] * 4), "big.avi")
    assert clip.array.shape == (3, 4, 12, 16) and "frames shrunk 4×" in clip.description
    monkeypatch.setattr(images_volume, "MAX_FRAME_PIXELS", 1000)
    assert "frames are 64×48 pixels" in _error(video([np.zeros((48, 64, 3), dtype=np.uint8)] * 2), "c.avi")
    assert "slices are 30×40 pixels" in _error(us_cine(np.zeros((2, 40, 30), np.uint8), cine_rate=5), "u.dcm")


def test_damaged_or_unknown_files_are_refused_in_plain_words() -> None:
    assert "as a video" in _error(b"RIFF\x00\x00\x00\x00AVI " + bytes(200), "broken.avi")
    assert "as a video" in _error(b"not a video at all", "clip.mp4")
    assert "featviz opens NIfTI" in _error(b"\x89PNG\r\n\x1a\n" + bytes(100), "photo.png")
    assert ".hdr/.img pair" in _error(bytes(348), "brain.hdr")
    assert images_video.is_video(b"\x1a\x45\xdf\xa3" + bytes(20))


# --------------------------------------------------------------------------------------------------
# Phantom, and nothing touches the disk
# --------------------------------------------------------------------------------------------------


def test_phantom_is_deterministic_ct_and_round_trips_through_nifti() -> None:
    volume = phantom_volume()
    assert volume.shape3d == PHANTOM_SHAPE and volume.spacing == PHANTOM_SPACING and volume.units == "HU"
    assert volume.array[0, 0, 0] == -1000  # air in the corner
    assert abs(float(volume.array[40, 48, 68]) - -800) < 40  # right lung
    assert abs(float(volume.array[3, 26, 48]) - 700) < 40  # a vertebra at the back
    assert abs(float(volume.array[40, 40, 48]) - 40) < 40  # soft tissue
    loaded = load_volume(phantom_nifti_bytes(), "phantom.nii.gz")
    assert np.array_equal(loaded.array, volume.array) and loaded.spacing == volume.spacing


def test_loading_never_writes_or_reads_files(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = [
        (phantom_nifti_bytes(), "p.nii.gz"),
        (zip_of([(f"{k}", blob) for k, blob in enumerate(_axial_series(3))]), "s.zip"),
        (video([np.zeros((16, 16, 3), dtype=np.uint8)] * 3), "c.avi"),
    ]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a file was opened: {args}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    for data, name in samples:
        assert load_volume(data, name).array.size > 0
    assert zipfile  # the zips above were read from memory
