"""Per-channel numbers for a layer's feature maps: summaries, orderings, tables, comparisons.

Everything here is vectorised over channels: a layer's ``(C, H, W)`` maps are read as one ``(C, H*W)``
array, never looped over channel by channel. Values are computed in float64 from the float32 maps.

Non-finite values (NaN, ±inf) do not occur in healthy networks, but a broken checkpoint can produce
them; they never crash anything here. They are left out of every statistic and counted in
:attr:`ChannelStats.nonfinite`, so the UI can say "channel 12 has 3 values that are not numbers".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import LayerError

__all__ = [
    "ChannelComparison",
    "ChannelStats",
    "ORDERINGS",
    "STATS_COLUMNS",
    "SUMMARY_KEYS",
    "channel_stats",
    "compare_channels",
    "order_channels",
    "stats_rows",
    "summary",
]

Ordering = Literal["index", "mean", "max", "std"]

ORDERINGS: dict[str, str] = {
    "index": "channel number",
    "mean": "highest mean first",
    "max": "highest peak first",
    "std": "most varied first",
}
"""The orderings :func:`order_channels` knows, with a plain label for a select box."""

SUMMARY_KEYS: tuple[str, ...] = ("min", "max", "mean", "spread (std)", "% zero")
"""The keys of :func:`summary`, in display order."""

STATS_COLUMNS: tuple[str, ...] = (
    "channel",
    "mean",
    "max",
    "min",
    "spread (std)",
    "% zero",
    "zero everywhere",
)
"""The keys of each :func:`stats_rows` row, in display order."""


def _as_maps(maps: np.ndarray, what: str = "feature maps") -> np.ndarray:
    array = np.asarray(maps)
    if array.ndim != 3:
        raise LayerError(
            f"Expected {what} of shape (channels, height, width), got shape {tuple(array.shape)}. "
            "Choose a layer whose output is a spatial feature map (see list_layers(model))."
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise LayerError(f"Expected numeric {what}, got values of type {array.dtype}.")
    return array


@dataclass(frozen=True, eq=False)
class ChannelStats:
    """Per-channel statistics of one layer's feature maps (every array has one entry per channel).

    ``mean``, ``max``, ``min`` and ``std`` (population standard deviation, the "spread") are float64 and
    computed over the channel's finite values; a channel with no finite value gets NaN.
    ``zero_fraction`` is the fraction of values that are exactly 0 (0.0 to 1.0). ``dead`` is True where
    every value of the channel is exactly 0 (a ReLU channel that never fires for this image).
    ``nonfinite`` counts NaN and ±inf values (normally all 0). ``pixels`` is H*W.
    """

    mean: np.ndarray
    max: np.ndarray
    min: np.ndarray
    std: np.ndarray
    zero_fraction: np.ndarray
    dead: np.ndarray
    nonfinite: np.ndarray
    channels: int
    pixels: int

    def __len__(self) -> int:
        return self.channels

    @property
    def dead_count(self) -> int:
        """How many channels are zero everywhere."""
        return int(np.count_nonzero(self.dead))


def channel_stats(maps: np.ndarray) -> ChannelStats:
    """Statistics of every channel of ``maps`` (shape (C, H, W)), computed in one vectorised pass.

    Fast for any layer size (2048×7×7 or 64×112×112 take a few milliseconds).
    """
    array = _as_maps(maps)
    c = int(array.shape[0])
    n = int(array.shape[1] * array.shape[2])
    flat = array.reshape(c, n)
    zeros = np.count_nonzero(flat == 0, axis=1)
    finite_mask = np.isfinite(flat) if np.issubdtype(flat.dtype, np.floating) else None
    if finite_mask is None or bool(finite_mask.all()):
        values = flat.astype(np.float64, copy=False)
        count = np.full(c, n, dtype=np.int64)
        nonfinite = np.zeros(c, dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            if n:
                mean = values.mean(axis=1)
                centred = values - mean[:, None]
                std = np.sqrt(np.einsum("ij,ij->i", centred, centred) / n)
                vmax = values.max(axis=1)
                vmin = values.min(axis=1)
            else:
                mean = std = vmax = vmin = np.full(c, np.nan)
    else:
        count = np.count_nonzero(finite_mask, axis=1)
        nonfinite = n - count
        values = np.where(finite_mask, flat, 0).astype(np.float64, copy=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = values.sum(axis=1) / count
            centred = np.where(finite_mask, values - mean[:, None], 0.0)
            std = np.sqrt(np.einsum("ij,ij->i", centred, centred) / count)
            vmax = np.where(finite_mask, values, -np.inf).max(axis=1, initial=-np.inf)
            vmin = np.where(finite_mask, values, np.inf).min(axis=1, initial=np.inf)
        empty = count == 0
        mean[empty] = std[empty] = vmax[empty] = vmin[empty] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        zero_fraction = zeros / n if n else np.full(c, np.nan)
    return ChannelStats(
        mean=np.asarray(mean, dtype=np.float64),
        max=np.asarray(vmax, dtype=np.float64),
        min=np.asarray(vmin, dtype=np.float64),
        std=np.asarray(std, dtype=np.float64),
        zero_fraction=np.asarray(zero_fraction, dtype=np.float64),
        dead=(zeros == n) if n else np.zeros(c, dtype=bool),
        nonfinite=np.asarray(nonfinite, dtype=np.int64),
        channels=c,
        pixels=n,
    )


def order_channels(stats: ChannelStats, by: Ordering = "index") -> np.ndarray:
    """Channel indices in display order: by number (ascending) or by mean, max or spread (descending).

    Ties keep channel-number order; channels whose value is NaN go last. Returns an int64 array.
    """
    if by == "index":
        return np.arange(stats.channels, dtype=np.int64)
    if by not in ("mean", "max", "std"):
        raise ValueError(f"Unknown ordering {by!r}; use one of {', '.join(ORDERINGS)}.")
    values = getattr(stats, by)
    key = np.where(np.isnan(values), np.inf, -values)  # descending, NaN last
    return np.argsort(key, kind="stable").astype(np.int64)


def summary(map2d: np.ndarray) -> dict[str, float]:
    """Min, max, mean, spread (std) and percent of exact zeros of one channel's map (finite values).

    Keys are :data:`SUMMARY_KEYS`; values are plain Python floats.
    """
    array = np.asarray(map2d)
    if array.ndim != 2:
        raise LayerError(f"Expected one channel's map of shape (height, width), got {tuple(array.shape)}.")
    stats = channel_stats(array[None])
    return dict(
        zip(
            SUMMARY_KEYS,
            (
                float(stats.min[0]),
                float(stats.max[0]),
                float(stats.mean[0]),
                float(stats.std[0]),
                float(stats.zero_fraction[0] * 100.0),
            ),
            strict=True,
        )
    )


def stats_rows(
    stats: ChannelStats, channels: Sequence[int] | np.ndarray | None = None
) -> list[dict[str, Any]]:
    """One dict per channel for a table (keys :data:`STATS_COLUMNS`), in ``channels`` order (default: all).

    ``"% zero"`` is a percentage (0–100); ``"zero everywhere"`` is a bool.
    """
    order = np.arange(stats.channels) if channels is None else np.asarray(channels, dtype=np.int64)
    mean = stats.mean[order].tolist()
    vmax = stats.max[order].tolist()
    vmin = stats.min[order].tolist()
    std = stats.std[order].tolist()
    zero = (stats.zero_fraction[order] * 100.0).tolist()
    dead = stats.dead[order].tolist()
    return [
        dict(zip(STATS_COLUMNS, row, strict=True))
        for row in zip(order.tolist(), mean, vmax, vmin, std, zero, dead, strict=True)
    ]


@dataclass(frozen=True, eq=False)
class ChannelComparison:
    """How each channel's mean activation differs between two images (A and B), biggest change first.

    ``channels`` are channel indices ordered by ``|change|`` descending (ties: lower channel first);
    ``mean_a``, ``mean_b`` and ``change`` (= mean B − mean A) are float64 arrays in that same order.
    """

    channels: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    change: np.ndarray

    def __len__(self) -> int:
        return int(self.channels.size)

    def rows(self, top: int | None = None, label_a: str = "A", label_b: str = "B") -> list[dict[str, Any]]:
        """The first ``top`` channels (all when None) as table rows with plain column names."""
        n = len(self) if top is None else max(0, min(top, len(self)))
        col_a, col_b = f"mean ({label_a})", f"mean ({label_b})"
        col_change = f"change ({label_b} − {label_a})"
        return [
            {"channel": ch, col_a: a, col_b: b, col_change: d}
            for ch, a, b, d in zip(
                self.channels[:n].tolist(),
                self.mean_a[:n].tolist(),
                self.mean_b[:n].tolist(),
                self.change[:n].tolist(),
                strict=True,
            )
        ]


def compare_channels(a: np.ndarray, b: np.ndarray) -> ChannelComparison:
    """Per-channel means of two (C, H, W) feature maps of the same layer and their change B − A.

    Raises :class:`~featviz_core.errors.LayerError` when the shapes differ (different layers, or inputs of
    different sizes).
    """
    maps_a = _as_maps(a, "feature maps of image A")
    maps_b = _as_maps(b, "feature maps of image B")
    if maps_a.shape != maps_b.shape:
        raise LayerError(
            f"The two feature maps have different shapes ({'×'.join(map(str, maps_a.shape))} and "
            f"{'×'.join(map(str, maps_b.shape))}), so their channels cannot be compared. "
            "Compare the same layer of the same model for both images."
        )
    mean_a = channel_stats(maps_a).mean
    mean_b = channel_stats(maps_b).mean
    change = mean_b - mean_a
    key = np.where(np.isnan(change), np.inf, -np.abs(change))
    order = np.argsort(key, kind="stable").astype(np.int64)
    return ChannelComparison(channels=order, mean_a=mean_a[order], mean_b=mean_b[order], change=change[order])
