"""featviz_core.export: .npz and .csv downloads, safe file names, Plotly's PNG button config."""

from __future__ import annotations

import csv
import io
import math
import re

import numpy as np
import pytest

from featviz_core.export import (
    CSV_COLUMNS,
    export_filename,
    npz_bytes,
    plotly_config,
    png_filename,
    stats_csv,
)
from featviz_core.stats import channel_stats

SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def test_npz_round_trips_bit_identically_with_exact_layer_names() -> None:
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((8, 5, 5), dtype=np.float32)
    maps[0, 0, 0] = np.nan
    maps[0, 0, 1] = -0.0
    read_only = rng.standard_normal((3, 2, 2), dtype=np.float32)
    read_only.flags.writeable = False  # Extraction arrays are read-only
    activations = {
        "layer1.0.relu#2": maps,
        "features.0": read_only,
        "file": np.ones((1, 1, 1), np.float32),  # would clash with np.savez_compressed(file, **kw)
    }
    data = npz_bytes(activations)
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        assert sorted(loaded.files) == sorted(activations)
        for name, array in activations.items():
            back = loaded[name]
            assert back.dtype == np.float32 and back.shape == array.shape
            assert back.tobytes() == array.tobytes()  # bit-identical, NaN and -0.0 included


def test_npz_refuses_object_arrays() -> None:
    with pytest.raises(ValueError):
        npz_bytes({"x": np.array([{"a": 1}], dtype=object)})


def test_stats_csv_has_one_row_per_channel_and_exact_numbers() -> None:
    rng = np.random.default_rng(1)
    maps = np.maximum(rng.standard_normal((5, 6, 6), dtype=np.float32), 0)
    maps[3] = 0
    maps[4, 0, 0] = np.nan
    stats = channel_stats(maps)
    text = stats_csv(stats, "layer1.0.relu#2").decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(text.splitlines()[0].split(",")) == CSV_COLUMNS
    assert len(rows) == stats.channels
    for c, row in enumerate(rows):
        assert row["layer"] == "layer1.0.relu#2" and int(row["channel"]) == c
        for column, values in (
            ("mean", stats.mean),
            ("max", stats.max),
            ("min", stats.min),
            ("std", stats.std),
        ):
            assert float(row[column]) == values[c]  # exact float round trip
        assert float(row["percent_zero"]) == stats.zero_fraction[c] * 100.0
        assert row["zero_everywhere"] == str(bool(stats.dead[c]))
    assert rows[3]["zero_everywhere"] == "True"
    assert int(rows[4]["nonfinite_values"]) == 1


def test_stats_csv_nan_channel_parses_as_nan() -> None:
    maps = np.full((1, 2, 2), np.nan, np.float32)
    row = next(csv.DictReader(io.StringIO(stats_csv(channel_stats(maps), "x").decode())))
    assert math.isnan(float(row["mean"]))


def test_export_filename_example_and_safety() -> None:
    assert (
        export_filename("resnet18", "layer2.1.relu#2", "chelsea.png", "npz")
        == "featviz_resnet18_layer2.1.relu-2_chelsea.npz"
    )
    assert export_filename("resnet18", "conv1", "scan.dcm", ".csv") == "featviz_resnet18_conv1_scan.csv"
    names = [
        export_filename("my model/v2", "features.0", "../../etc/passwd", "csv"),
        export_filename("resnet18", "layer1", "C:\\Users\\me\\Photo de l'été 2024.JPEG", "npz"),
        export_filename("a:b*c?", 'la"yer<>|', ".hidden", "png"),
        export_filename("", "", "", "npz"),
        export_filename(None, None, None, "npz"),
        export_filename("x" * 500, "y" * 500, "z" * 500, "npz"),
    ]
    for name in names:
        assert SAFE.match(name), name
        assert "/" not in name and "\\" not in name and ".." not in name
        assert len(name) < 200
    assert names[1] == "featviz_resnet18_layer1_Photo-de-l_ete-2024.npz"
    assert names[4] == "featviz.npz"


def test_png_filename_and_plotly_config() -> None:
    name = png_filename("resnet18", "layer1.0.relu#2", "cat.jpg", channel=12)
    assert name == "featviz_resnet18_layer1.0.relu-2_cat_channel-12"
    assert SAFE.match(png_filename("resnet18", "conv1", "cat.jpg", what="overlay"))
    config = plotly_config(name)
    assert config["toImageButtonOptions"] == {"format": "png", "filename": name, "scale": 2}
