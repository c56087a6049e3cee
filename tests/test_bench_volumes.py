"""The volume benchmark's smallest configuration: a tiny MONAI 3-D DenseNet loaded from code at 32³, a slice move as
the Volumes page draws it, peak memory, and a CT larger than the (lowered) voxel limit, which is reduced with a
sentence (structure, never timings)."""

from __future__ import annotations

import json

import pytest

from bench import volumes
from bench.run import _ms, _x

pytest.importorskip("monai")


def test_volumes_bench_smallest_configuration(monkeypatch) -> None:
    monkeypatch.setattr("featviz_core.images.volume.MAX_VOXELS", 16 * 1024)  # the small CT below must be reduced
    result = volumes.run(rounds=1, warmup=0, moves=1, spec="bench.volumes:densenet_3d_tiny", size=32,
                         ct_shape=(16, 48, 48))
    json.dumps(result)
    assert result["volume"]["shape"] == [32, 32, 32]
    e = result["extraction"]
    assert e["input_shape"] == [1, 1, 32, 32, 32] and isinstance(e["pass"], bool)
    assert set(e["timings"]) == {"forward", "preprocess+forward", "extract"}
    for peak in (e["peak_extract"], e["peak_bare"]):
        assert peak["rss_peak_over_before_mb"] >= 0 and peak["tracemalloc_peak_mb"] >= 0
    move = result["slice_move"]
    assert move["volume_shape"] == [32, 32, 32] and len(move["maps_shape"]) == 4 and move["json_kb"] > 0
    assert {"planes_s", "maps_s", "cam_upsample_s", "cam_planes_s", "to_json_s", "total_s"} <= set(move["steps"])
    ct = result["large_ct"]
    assert ct["file_shape"] == [16, 48, 48]
    assert 0 < ct["kept_shape"][0] * ct["kept_shape"][1] * ct["kept_shape"][2] <= 16 * 1024
    assert "lower resolution" in ct["description"]
    assert ct["slice_move"]["volume_shape"] == ct["kept_shape"]
    text = "\n".join(volumes.markdown(result, _ms, _x))
    assert "### 12 · Volumes" in text and "| the CT as kept (" in text and "lower resolution" in text
