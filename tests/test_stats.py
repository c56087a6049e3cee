"""featviz_core.stats: per-channel statistics, orderings, tables and comparisons."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from featviz_core.errors import FeatvizError, LayerError
from featviz_core.stats import (
    STATS_COLUMNS,
    SUMMARY_KEYS,
    ChannelComparison,
    ChannelStats,
    channel_stats,
    compare_channels,
    order_channels,
    stats_rows,
    summary,
)


def relu_maps(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_normal(shape, dtype=np.float32), 0)


@pytest.mark.parametrize("shape", [(2048, 7, 7), (64, 112, 112), (1, 1, 1), (3, 1, 5)])
def test_channel_stats_match_numpy_per_channel(shape: tuple[int, int, int]) -> None:
    maps = relu_maps(shape)
    maps[0] = 0.0  # a dead channel
    stats = channel_stats(maps)
    flat = maps.reshape(shape[0], -1).astype(np.float64)
    assert isinstance(stats, ChannelStats)
    assert stats.channels == len(stats) == shape[0]
    assert stats.pixels == shape[1] * shape[2]
    for name in ("mean", "max", "min", "std", "zero_fraction"):
        assert getattr(stats, name).dtype == np.float64
        assert getattr(stats, name).shape == (shape[0],)
    np.testing.assert_allclose(stats.mean, flat.mean(axis=1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stats.std, flat.std(axis=1), rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(stats.max, flat.max(axis=1))
    np.testing.assert_array_equal(stats.min, flat.min(axis=1))
    np.testing.assert_array_equal(stats.zero_fraction, (flat == 0).mean(axis=1))
    assert stats.dead.dtype == np.bool_
    np.testing.assert_array_equal(stats.dead, (flat == 0).all(axis=1))
    assert stats.dead[0] and stats.dead_count == int((flat == 0).all(axis=1).sum())
    assert not stats.nonfinite.any()


def test_channel_stats_is_nan_and_inf_safe() -> None:
    maps = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)
    maps[1, 0, 0] = np.nan
    maps[2, 1, 1] = np.inf
    maps[2, 2, 2] = -np.inf
    maps[3] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = channel_stats(maps)
    np.testing.assert_array_equal(stats.nonfinite, [0, 1, 2, 9])
    finite1 = maps[1][np.isfinite(maps[1])].astype(np.float64)
    assert stats.mean[1] == pytest.approx(finite1.mean())
    assert stats.std[1] == pytest.approx(finite1.std())
    assert stats.max[2] == maps[2][np.isfinite(maps[2])].max()
    assert stats.min[2] == maps[2][np.isfinite(maps[2])].min()
    assert np.isnan([stats.mean[3], stats.max[3], stats.min[3], stats.std[3]]).all()
    assert not stats.dead[3]


def test_channel_stats_rejects_non_spatial_input_with_a_helpful_message() -> None:
    with pytest.raises(LayerError, match="list_layers"):
        channel_stats(np.zeros((4, 5), np.float32))


def test_order_channels() -> None:
    maps = np.zeros((5, 2, 2), np.float32)
    maps[:, 0, 0] = [1.0, 3.0, 3.0, -1.0, 2.0]  # means 0.25, 0.75, 0.75, -0.25, 0.5
    maps[3, 1, 1] = 10.0
    stats = channel_stats(maps)
    np.testing.assert_array_equal(order_channels(stats, "index"), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(order_channels(stats, "mean"), [3, 1, 2, 4, 0])
    np.testing.assert_array_equal(order_channels(stats, "max"), [3, 1, 2, 4, 0])  # ties keep index order
    assert order_channels(stats, "std").dtype == np.int64
    with pytest.raises(ValueError):
        order_channels(stats, "median")  # type: ignore[arg-type]


def test_order_channels_puts_nan_last() -> None:
    maps = np.ones((3, 2, 2), np.float32)
    maps[0] = np.nan
    maps[2] *= 2
    np.testing.assert_array_equal(order_channels(channel_stats(maps), "mean"), [2, 1, 0])


def test_summary() -> None:
    map2d = np.array([[0.0, 1.0], [2.0, 0.0]], np.float32)
    result = summary(map2d)
    assert tuple(result) == SUMMARY_KEYS
    assert result == {
        "min": 0.0,
        "max": 2.0,
        "mean": 0.75,
        "spread (std)": pytest.approx(0.8291562),
        "% zero": 50.0,
    }
    assert all(type(v) is float for v in result.values())
    with pytest.raises(LayerError):
        summary(np.zeros((1, 2, 2)))


def test_stats_rows() -> None:
    maps = relu_maps((6, 4, 4))
    maps[2] = 0
    stats = channel_stats(maps)
    rows = stats_rows(stats)
    assert len(rows) == 6
    assert all(tuple(row) == STATS_COLUMNS for row in rows)
    assert rows[2]["zero everywhere"] is True and rows[2]["% zero"] == 100.0
    assert rows[1]["mean"] == stats.mean[1] and rows[1]["channel"] == 1
    assert [r["channel"] for r in stats_rows(stats, [5, 0])] == [5, 0]


def test_compare_channels_orders_by_size_of_change() -> None:
    a = np.zeros((4, 2, 2), np.float32)
    b = a.copy()
    b[1] += 0.5
    b[2] -= 2.0
    b[3] += 0.5
    result = compare_channels(a, b)
    assert isinstance(result, ChannelComparison)
    np.testing.assert_array_equal(result.channels, [2, 1, 3, 0])  # |change| descending, ties by index
    np.testing.assert_array_equal(result.change, [-2.0, 0.5, 0.5, 0.0])
    np.testing.assert_array_equal(result.mean_b - result.mean_a, result.change)
    rows = result.rows(2, label_a="before", label_b="after")
    assert rows == [
        {"channel": 2, "mean (before)": 0.0, "mean (after)": -2.0, "change (after − before)": -2.0},
        {"channel": 1, "mean (before)": 0.0, "mean (after)": 0.5, "change (after − before)": 0.5},
    ]


def test_compare_channels_shape_mismatch_says_what_to_do() -> None:
    with pytest.raises(FeatvizError, match="same layer"):
        compare_channels(np.zeros((4, 2, 2)), np.zeros((8, 2, 2)))
