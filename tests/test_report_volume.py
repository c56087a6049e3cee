"""The report of a 3-D model on a scan (featviz_core/report/volume.py): the three planes at the chosen slices
(exact values), the layer's maps at the depth of the axial slice, Grad-CAM over the planes; without consent no
voxel of the scan, nor its description, goes in."""

from __future__ import annotations

import numpy as np
import pytest

from featviz_core import cam, default_cam_layer, extract
from featviz_core.cam import upsample
from featviz_core.demo import load_demo_volume
from featviz_core.images import PLANES, Volume, load_volume
from featviz_core.report import volume_report_html
from featviz_core.report.html import chart_specs
from featviz_core.report.volume import depth_index
from tests.conftest import decode_array
from tests.volume_builders import nifti

LAYER = "block2.relu"
INDICES = {"axial": 17, "coronal": 9, "sagittal": 5}
WINDOW = (40.0, 400.0)


@pytest.fixture(scope="module")
def scan():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    data = rng.integers(-1000, 1200, (14, 12, 22)).astype(np.int16)  # (i, j, k): random, unique to this test
    return load_volume(nifti(data, np.diag([0.8, 0.8, 2.5, 1.0])), "private-scan.nii")


@pytest.fixture(scope="module")
def parts(scan):  # type: ignore[no-untyped-def]
    model = load_demo_volume()
    maps = extract(model, scan, [LAYER]).activations[LAYER]
    return model, maps, cam(model, scan, default_cam_layer(model))


def make(scan, parts, include: bool) -> bytes:  # type: ignore[no-untyped-def]
    model, maps, result = parts
    return volume_report_html(model, LAYER, maps, volume=scan, indices=INDICES, window=WINDOW, include_scan=include,
                              scan_name="private-scan.nii", top_k=[("sphere", 0.7), ("cube", 0.2)], cam=result,
                              version="9.9")


def _heat(specs: list[dict], name: str) -> dict:
    return next(t for spec in specs for t in spec["data"] if t.get("name") == name)


def test_the_planes_at_the_slices_the_maps_at_their_depth_and_grad_cam(scan, parts) -> None:
    model, maps, result = parts
    data = make(scan, parts, include=True)
    specs = chart_specs(data)
    assert len(specs) == 7  # three planes of the scan, the mosaic, three planes with Grad-CAM
    cams = Volume(array=upsample(result.normalized, scan.shape3d), spacing=scan.spacing, kind="volume",
                  modality=None, window=None, description="")
    for k, plane in enumerate(PLANES):
        index = INDICES[plane]
        assert np.array_equal(decode_array(specs[k]["data"][0]["z"]), scan.slice(plane, index)), plane
        assert f"{plane} · slice {index}" in specs[k]["data"][0]["hovertemplate"]
        over = specs[4 + k]["data"]
        assert np.array_equal(decode_array(over[0]["z"]), scan.slice(plane, index))
        np.testing.assert_allclose(decode_array(over[1]["z"]), cams.slice(plane, index), atol=1e-6)
        assert over[1]["name"] == f"{plane} Grad-CAM"
    z = depth_index(INDICES["axial"], scan.shape3d[0], maps.shape[1])
    mosaic = specs[3]["data"][0]
    assert f"z {z} · x" in mosaic["hovertemplate"]
    tiles = decode_array(mosaic["z"])
    strongest = int(np.argmax(maps[:, z].mean(axis=(1, 2))))
    np.testing.assert_array_equal(tiles[: maps.shape[2], : maps.shape[3]], maps[strongest, z])
    text = data.decode()
    assert f"at depth {z} of {maps.shape[1]}" in text and scan.description in text and "private-scan.nii" in text
    assert "sphere" in text and model.provenance in text


def test_without_consent_no_voxel_of_the_scan_goes_in(scan, parts) -> None:
    with_scan, without = make(scan, parts, include=True), make(scan, parts, include=False)
    def arrays(data: bytes) -> list[np.ndarray]:
        return [decode_array(t[key]) for spec in chart_specs(data) for t in spec["data"]
                for key in ("z", "customdata") if isinstance(t.get(key), dict)]

    for plane in PLANES:  # the scan's slices are in the charts with consent (so the search works) ...
        secret = scan.slice(plane, INDICES[plane])
        assert any(a.shape == secret.shape and np.array_equal(a, secret) for a in arrays(with_scan))
        assert not any(a.shape == secret.shape and np.array_equal(a, secret) for a in arrays(without))  # ... not without
    assert b"private-scan" not in without and scan.description.encode() not in without
    assert b"Your scan is not in this file" in without
    specs = chart_specs(without)
    assert len(specs) == 4  # the mosaic and Grad-CAM alone in three planes
    assert [t["name"] for spec in specs[1:] for t in spec["data"]] == list(PLANES)
    assert all("Grad-CAM" in spec["data"][0]["hovertemplate"] for spec in specs[1:])


def test_a_2d_layer_is_refused(scan, parts) -> None:
    model, maps, result = parts
    with pytest.raises(ValueError, match=r"\(C, D, H, W\)"):
        volume_report_html(model, LAYER, maps[:, 0], volume=scan, indices=INDICES, window=WINDOW, include_scan=False)
