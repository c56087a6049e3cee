"""Volumes and clips page (pages/volume.py): the phantom in three planes, sliders, windows, uploads, errors."""

from __future__ import annotations

import numpy as np
import pytest

from featviz_core.figures import window_range
from featviz_core.images import PLANES, WINDOW_PRESETS, Volume, load_volume, phantom_volume
from tests.conftest import decode_array, no_exception, plotly_figures
from tests.volume_builders import ct_slice, nifti, video, zip_of

PAGE = "pages/volume.py"


def _planes(at) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The three plane heatmaps drawn, by plane."""
    heats = [f["data"][0] for f in plotly_figures(at)]
    return {h["name"]: h for h in heats if h.get("type") == "heatmap" and h.get("name") in PLANES}


def _upload(make_app, name: str, data: bytes, mime: str = "application/octet-stream"):  # type: ignore[no-untyped-def]
    at = make_app(page=PAGE)
    at.segmented_control(key="volume_source").set_value("upload").run()
    at.file_uploader(key="volume_upload").upload(name, data, mime).run()
    return at


def test_the_phantom_is_shown_in_three_planes_at_the_middle_slices(make_app) -> None:
    at = make_app(page=PAGE)
    no_exception(at)
    volume = phantom_volume()
    assert at.caption[0].value == volume.description
    planes = _planes(at)
    assert sorted(planes) == sorted(PLANES)
    for plane, heat in planes.items():
        index = volume.shape3d[PLANES.index(plane)] // 2
        assert at.slider(key=f"volume_{plane}").value == index
        assert np.array_equal(decode_array(heat["z"]), volume.slice(plane, index))  # exactly, as float32
        assert f"{plane} · slice {index}" in heat["hovertemplate"] and " HU" in heat["hovertemplate"]
        assert (heat["zmin"], heat["zmax"]) == window_range(WINDOW_PRESETS["mediastinum"])
    assert at.selectbox(key="volume_window").value == "mediastinum"


def test_a_slider_changes_its_slice_and_the_crosshair_elsewhere(make_app) -> None:
    at = make_app(page=PAGE)
    at.slider(key="volume_axial").set_value(10).run()
    no_exception(at)
    volume = phantom_volume()
    figs = {f["data"][0]["name"]: f for f in plotly_figures(at)}
    assert np.array_equal(decode_array(figs["axial"]["data"][0]["z"]), volume.slice("axial", 10))
    assert np.array_equal(decode_array(figs["coronal"]["data"][0]["z"]), volume.slice("coronal", 48))
    horizontal = figs["coronal"]["layout"]["shapes"][1]  # where the axial plane cuts the coronal one
    assert horizontal["y0"] == horizontal["y1"] == volume.shape3d[0] - 1 - 10


def test_a_window_preset_changes_the_grey_scale_and_custom_starts_from_it(make_app) -> None:
    at = make_app(page=PAGE)
    at.selectbox(key="volume_window").set_value("lung").run()
    no_exception(at)
    for heat in _planes(at).values():
        assert (heat["zmin"], heat["zmax"]) == (-1350.0, 150.0)
    at.selectbox(key="volume_window").set_value("custom").run()
    assert (at.number_input(key="volume_level").value, at.number_input(key="volume_width").value) == (-600, 1500)
    at.number_input(key="volume_width").set_value(100.0).run()
    assert {(h["zmin"], h["zmax"]) for h in _planes(at).values()} == {(-650.0, -550.0)}


def test_an_uploaded_nifti_is_shown_and_read_once(make_app, monkeypatch) -> None:
    import ui.cache

    reads = []
    monkeypatch.setattr(ui.cache, "load_volume", lambda *a, **k: reads.append(a[1]) or load_volume(*a, **k))
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) + int(np.random.default_rng().integers(1000))
    blob = nifti(data, np.diag([1.0, 1.5, 2.0, 1.0]))
    at = _upload(make_app, "small.nii", blob)
    no_exception(at)
    volume = load_volume(blob, "small.nii")
    assert at.caption[0].value == volume.description
    planes = _planes(at)
    assert np.array_equal(decode_array(planes["sagittal"]["z"]), volume.slice("sagittal", 2))
    assert at.selectbox(key="volume_window").value == "file"  # its suggested window
    at.slider(key="volume_sagittal").set_value(0).run()
    at.selectbox(key="volume_window").set_value("bone").run()
    assert np.array_equal(decode_array(_planes(at)["sagittal"]["z"]), volume.slice("sagittal", 0))
    assert reads == ["small.nii"]  # moving a slider or changing the window never reads the file again


def test_a_zip_with_two_series_asks_which_one(make_app) -> None:
    chest = [(f"c{k}.dcm", ct_slice(np.full((3, 4), 1024 + 10 * k), (0, 0, 2.5 * k))) for k in range(4)]
    scout = [("s.dcm", ct_slice(np.zeros((3, 4)), (0, 0, 0), series_uid="1.2.3.9", description="Scout"))]
    at = _upload(make_app, "study.zip", zip_of(chest + scout), "application/zip")
    no_exception(at)
    box = at.selectbox(key="volume_series")
    assert "2 series" in box.label and box.value == "1.2.826.0.1.3680043.10.2"
    assert "CT · Chest 2.5 mm · 4 slices" in at.caption[0].value
    box.set_value("1.2.3.9").run()
    no_exception(at)
    assert "CT · Scout · 1 slice " in at.caption[0].value


def test_a_clip_has_a_frame_slider_and_a_filmstrip(make_app) -> None:
    frames = [np.full((16, 16, 3), 20 * k, dtype=np.uint8) for k in range(10)]
    at = _upload(make_app, "clip.avi", video(frames), "video/x-msvideo")
    no_exception(at)
    assert at.slider(key="volume_frame").value == 5
    figs = plotly_figures(at)
    assert figs[0]["data"][0]["type"] == "image" and "frame 5" in figs[0]["data"][0]["hovertemplate"]
    assert len(figs[1]["data"]) == 8  # the filmstrip's evenly spaced frames
    at.slider(key="volume_frame").set_value(2).run()
    assert "frame 2" in plotly_figures(at)[0]["data"][0]["hovertemplate"]


@pytest.mark.parametrize("name, data", [("scan.nii", b"\x5c\x01\x00\x00" + bytes(400)), ("notes.zip", zip_of([("a.txt", b"x")]))])
def test_a_broken_file_gives_one_sentence(make_app, name: str, data: bytes) -> None:
    at = _upload(make_app, name, data)
    no_exception(at)
    assert len(at.error) == 1 and name in at.error[0].value and "Traceback" not in at.error[0].value
    assert not _planes(at)


def test_a_grey_multiframe_dicom_is_a_clip_with_a_window(make_app) -> None:
    from tests.volume_builders import us_cine

    frames = np.stack([np.full((12, 10), 10 * k, dtype=np.uint8) for k in range(12)])
    frames[:, 3, 4] = 201
    at = _upload(make_app, "echo.dcm", us_cine(frames, frame_time_ms=40.0), "application/dicom")
    no_exception(at)
    main, strip = plotly_figures(at)[:2]  # then what the 3-D model sees in the clip
    heat = main["data"][0]
    assert heat["type"] == "heatmap" and heat["hovertemplate"].startswith("frame 6<br>")
    z = decode_array(heat["z"])
    assert z[3, 4] == 201 and z[0, 0] == 60
    assert "0.24 s" in main["layout"]["title"]["text"]  # frame 6 at 25 frames a second
    assert len(strip["data"]) == 8
    at.selectbox(key="volume_window").set_value("auto").run()
    no_exception(at)
    options = at.selectbox(key="volume_window").options
    assert "Auto (the 1st to 99th percentile)" in options and "Lung" not in options  # no CT windows for ultrasound


def test_an_uploaded_scan_is_never_written_to_disk(make_app) -> None:
    import tempfile
    from pathlib import Path

    from tests.test_privacy import ROOT, contains, snapshot

    data = np.random.default_rng().integers(-1000, 1000, (6, 7, 8)).astype(np.int16)
    blob = nifti(data, np.eye(4), gz=True)
    marker = blob[-64:]  # compressed voxels: unique to this upload
    roots = (ROOT, Path(tempfile.gettempdir()))
    before = snapshot(*roots)
    at = _upload(make_app, "private-scan.nii.gz", blob, "application/gzip")
    at.slider(key="volume_axial").set_value(1).run()
    no_exception(at)
    assert len(_planes(at)) == 3
    changed = [p for p, meta in snapshot(*roots).items() if before.get(p) != meta]
    assert not [p for p in changed if contains(p, marker)], "the upload was written to disk"


def test_a_3d_model_shows_its_maps_at_the_slice_and_grad_cam_in_three_planes(make_app, monkeypatch) -> None:
    from featviz_core import cam, default_cam_layer, extract
    from featviz_core.cam import upsample
    from featviz_core.demo import load_demo_volume
    from ui import cache
    from ui.volume_model_view import depth_index

    runs: list[str] = []
    counted = cache._count_forward
    monkeypatch.setattr(cache, "_count_forward", lambda kind, *rest: (runs.append(kind), counted(kind, *rest)))
    at = make_app(page=PAGE)
    no_exception(at)
    volume, model = phantom_volume(), load_demo_volume()
    layer = at.selectbox(key="volume_model_layer").value
    maps = extract(model, volume, [layer]).activations[layer]
    figures = plotly_figures(at)
    mosaic = next(f for f in figures if any(t.get("name") == "tiles" for t in f["data"]))
    tiles = decode_array(mosaic["data"][0]["z"])
    z = depth_index(volume.shape3d[0] // 2, volume.shape3d[0], maps.shape[1])
    np.testing.assert_array_equal(tiles[: maps.shape[2], : maps.shape[3]], maps[0, z])  # channel 0's tile, exact
    heat = upsample(cam(model, volume, default_cam_layer(model)).normalized, volume.shape3d)
    cams = {t["name"]: t for f in figures for t in f["data"] if str(t.get("name", "")).endswith("Grad-CAM")}
    assert sorted(cams) == sorted(f"{p} Grad-CAM" for p in PLANES)
    axial = decode_array(cams["axial Grad-CAM"]["z"])
    np.testing.assert_allclose(axial, Volume(array=heat, spacing=volume.spacing, kind="volume", modality=None,
                                             window=None, description="").slice("axial", volume.shape3d[0] // 2),
                               rtol=1e-5, atol=1e-6)
    scans = {t["name"]: t for f in figures for t in f["data"] if str(t.get("name", "")).endswith(" scan")}
    np.testing.assert_array_equal(decode_array(scans["axial scan"]["z"]), volume.slice("axial", volume.shape3d[0] // 2))
    assert "HU" in cams["axial Grad-CAM"]["hovertemplate"], "the hover gives the scan's value under the map too"
    before = len(runs)
    at.slider(key="volume_axial").set_value(10).run()  # a new slice re-slices the cached maps
    no_exception(at)
    assert len(runs) == before, f"moving the slice ran the model again: {runs[before:]}"
