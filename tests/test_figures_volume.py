"""Figures for volumes and clips (featviz_core.figures.volume): exact values, proportions, crosshair, speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from featviz_core.figures import (
    ORIENTATION,
    cut_lines,
    filmstrip_figure,
    filmstrip_indices,
    frame_figure,
    plane_figure,
    window_range,
)
from featviz_core.images import PLANES, Volume, phantom_volume
from tests.conftest import decode_array


def _indexed_volume(shape: tuple[int, int, int] = (5, 6, 7)) -> Volume:
    """Each voxel holds 100 z + 10 y + x: its own address."""
    z, y, x = np.indices(shape)
    return Volume((100 * z + 10 * y + x).astype(np.float32), (3.0, 2.0, 1.0), "volume", "CT", None, "t", units="HU")


def test_plane_figure_sends_the_exact_float32_slice_with_a_window_and_a_hover() -> None:
    volume = phantom_volume()
    picture = volume.slice("coronal", 40)
    fig = plane_figure(picture, volume.slice_spacing("coronal"), plane="coronal", index=40, window=(50, 350),
                       units="HU")
    heat = json.loads(fig.to_json())["data"][0]
    assert heat["z"]["dtype"] == "f4"  # base64 binary, not a list of numbers
    assert np.array_equal(decode_array(heat["z"]), picture)
    assert (heat["zmin"], heat["zmax"]) == window_range((50, 350)) == (-125.0, 225.0)
    assert heat["hovertemplate"].startswith("coronal · slice 40<br>row %{y} · column %{x}")
    assert "%{z:.9~g} HU" in heat["hovertemplate"]
    # 3 mm slices, 2 mm columns: a row is drawn 1.5 times as tall as a column is wide
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == pytest.approx(1.5)
    assert list(fig.layout.yaxis.range) == [picture.shape[0] - 0.5, -0.5]  # row 0 at the top


def test_plane_figure_without_window_spans_the_picture_and_names_other_pictures() -> None:
    fig = plane_figure(np.array([[1, 2], [3, 5]], dtype=np.float32), plane="frame", index=3)
    heat = fig.data[0]
    assert (heat.zmin, heat.zmax) == (1.0, 5.0)
    assert heat.hovertemplate.startswith("frame 3<br>")
    with pytest.raises(ValueError):
        plane_figure(np.zeros((2, 2, 2), dtype=np.float32))


def test_cut_lines_cross_at_the_voxel_the_three_planes_share() -> None:
    volume = _indexed_volume()
    for indices in ({"axial": 1, "coronal": 4, "sagittal": 2}, {"axial": 0, "coronal": 0, "sagittal": 6}):
        voxel = volume.array[indices["axial"], indices["coronal"], indices["sagittal"]]
        for plane in PLANES:
            row, column = cut_lines(volume, plane, indices)
            assert volume.slice(plane, indices[plane])[row, column] == voxel, plane


def test_crosshair_lines_and_side_letters_are_drawn_on_the_picture() -> None:
    volume = _indexed_volume()
    indices = {"axial": 1, "coronal": 4, "sagittal": 2}
    fig = plane_figure(volume.slice("axial", 1), volume.slice_spacing("axial"), plane="axial", index=1,
                       crosshair=cut_lines(volume, "axial", indices), sides=ORIENTATION["axial"])
    frame, horizontal, vertical = fig.layout.shapes
    assert frame.type == "rect" and frame.xref == "x domain"
    assert horizontal.y0 == horizontal.y1 == 6 - 1 - 4 and (horizontal.x0, horizontal.x1) == (-0.5, 6.5)
    assert vertical.x0 == vertical.x1 == 7 - 1 - 2
    assert horizontal.line.color != vertical.line.color  # the coronal and the sagittal plane's colours
    assert [a.text for a in fig.layout.annotations] == ["<b>A</b>", "<b>P</b>", "<b>R</b>", "<b>L</b>"]


def test_filmstrip_and_colour_frames() -> None:
    assert filmstrip_indices(64) == [0, 9, 18, 27, 36, 45, 54, 63]
    assert filmstrip_indices(3) == [0, 1, 2] and filmstrip_indices(0) == []
    frames = [np.full((4, 5), i, dtype=np.float32) for i in range(3)]
    strip = filmstrip_figure(frames, [0, 5, 9], window=(127.5, 255), current=5)
    assert len(strip.data) == 3 and [a.text for a in strip.layout.annotations] == ["0", "<b>5</b>", "9"]
    colour = np.zeros((4, 5, 3), dtype=np.float32)
    colour[1, 2] = (255, 128, 0)
    fig = frame_figure(colour, index=7)
    assert np.asarray(fig.data[0].z)[1, 2].tolist() == [255, 128, 0]
    assert fig.data[0].hovertemplate.startswith("frame 7<br>")


def test_three_planes_of_a_256_by_256_by_100_volume_build_fast() -> None:
    rng = np.random.default_rng(0)
    volume = Volume(rng.normal(0, 300, (100, 256, 256)).astype(np.float32), (2.5, 0.8, 0.8), "volume", "CT",
                    None, "bench", units="HU")
    indices = {"axial": 50, "coronal": 128, "sagittal": 128}

    def build() -> list:
        return [plane_figure(volume.slice(p, indices[p]), volume.slice_spacing(p), plane=p, index=indices[p],
                             window=(40, 400), units="HU", crosshair=cut_lines(volume, p, indices),
                             sides=ORIENTATION[p], title=p) for p in PLANES]

    build()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        figs = build()
        times.append(time.perf_counter() - start)
    print(f"three planes of 256×256×100: {1000 * min(times):.1f} ms (best of 5)")
    assert min(times) < 0.5  # about 15 ms on an idle core; generous for a busy machine
    assert sum(len(f.data[0].z.tobytes()) for f in figs) == 4 * (256 * 256 + 2 * 100 * 256)  # slices only
