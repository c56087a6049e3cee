"""Downloads: feature maps as .npz, channel statistics as .csv, safe file names, Plotly's PNG button.

All functions return bytes or strings ready for ``st.download_button``; nothing touches the disk.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .stats import ChannelStats

__all__ = [
    "CSV_COLUMNS",
    "export_filename",
    "npz_bytes",
    "plotly_config",
    "png_filename",
    "stats_csv",
]

CSV_COLUMNS: tuple[str, ...] = (
    "layer",
    "channel",
    "mean",
    "max",
    "min",
    "std",
    "percent_zero",
    "zero_everywhere",
    "nonfinite_values",
)
"""Header of :func:`stats_csv` (machine-friendly names; one row per channel)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_REPEATS = re.compile(r"([._-])[._-]+")
_MAX_PART = 60


def npz_bytes(activations: Mapping[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` of ``activations``, one array per layer, keyed by the exact layer name.

    ``np.load(io.BytesIO(data))[name]`` gives back a bit-identical array (same dtype, shape and bytes).
    Names such as ``"layer1.0.relu#2"`` are kept as they are. Written member by member (the format of
    ``np.savez_compressed``) so that any name works, even ``"file"``, which ``np.savez_compressed(**arrays)``
    would reject. Object arrays are refused (an .npz must never need pickle to load).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, array in activations.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"Layer names must be non-empty strings, got {name!r}.")
            value = np.asanyarray(array)
            if value.dtype.hasobject:
                raise ValueError(f"Layer {name!r} holds Python objects, not numbers; it cannot be exported.")
            with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)
    return buffer.getvalue()


def _number(value: float) -> str:
    """Shortest text that parses back to the same float64 (``repr``); NaN as ``nan``, infinities as ``inf``."""
    return repr(float(value))


def stats_csv(stats: ChannelStats, layer: str) -> bytes:
    """Channel statistics as UTF-8 CSV: a header (:data:`CSV_COLUMNS`), then one row per channel.

    Numbers are written at full float64 precision (``repr``), so ``float(cell)`` gives back exactly the
    computed value; ``percent_zero`` is 0–100, ``zero_everywhere`` is ``True``/``False``.
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in range(stats.channels):
        writer.writerow(
            (
                layer,
                c,
                _number(stats.mean[c]),
                _number(stats.max[c]),
                _number(stats.min[c]),
                _number(stats.std[c]),
                _number(stats.zero_fraction[c] * 100.0),
                bool(stats.dead[c]),
                int(stats.nonfinite[c]),
            )
        )
    return text.getvalue().encode("utf-8")


def _safe_part(text: str | None, *, file_name: bool = False) -> str:
    if not text:
        return ""
    value = str(text)
    if file_name:  # an uploaded file's name: its last path part, without its extension
        value = value.replace("\\", "/").rsplit("/", 1)[-1]
    if file_name and "." in value.strip("."):
        stem, _, ext = value.rpartition(".")
        if stem and 1 <= len(ext) <= 5 and ext.isalnum():
            value = stem
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = value.replace("#", "-")
    value = re.sub(r"\s+", "-", value)
    value = _UNSAFE.sub("_", value)
    value = _REPEATS.sub(r"\1", value)
    return value.strip("._-")[:_MAX_PART].strip("._-")


def _join(*parts: str | None) -> str:
    return "_".join(p for p in parts if p)


def export_filename(model_name: str | None, layer: str | None, image_name: str | None, ext: str) -> str:
    """A readable file name that is safe on every system, e.g.
    ``export_filename("resnet18", "layer2.1.relu#2", "chelsea.png", "npz")`` ->
    ``"featviz_resnet18_layer2.1.relu-2_chelsea.npz"``.

    Only ASCII letters, digits, ``.``, ``_`` and ``-`` remain; ``#`` becomes ``-``, spaces ``-``, other
    characters ``_``; accents are dropped (é -> e); the image's own extension and any folder are removed;
    each part is at most 60 characters; empty parts are left out.
    """
    suffix = _safe_part(ext.lstrip(".")).lower()
    stem = _join("featviz", _safe_part(model_name), _safe_part(layer), _safe_part(image_name, file_name=True))
    return f"{stem}.{suffix}" if suffix else stem


def png_filename(
    model_name: str | None,
    layer: str | None,
    image_name: str | None,
    channel: int | None = None,
    what: str | None = None,
) -> str:
    """File name WITHOUT extension for Plotly's "download as PNG" button (Plotly adds ``.png``).

    ``png_filename("resnet18", "layer1.0.relu#2", "cat.jpg", channel=12)`` ->
    ``"featviz_resnet18_layer1.0.relu-2_cat_channel-12"``. ``what`` names the view (e.g. "overlay").
    """
    extra = _join(_safe_part(what), f"channel-{int(channel)}" if channel is not None else None)
    return _join(export_filename(model_name, layer, image_name, ""), extra)


PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "showSendToCloud": False}
"""``config=`` for every chart: no Plotly logo, and no "Share chart..." button (plotly.js 4 shows one by default;
after a confirmation it uploads the chart's data, here a patient's picture or maps, to Plotly's cloud)."""


def plotly_config(filename: str, *, scale: int = 2) -> dict[str, Any]:
    """``config=`` for ``st.plotly_chart``: the camera button saves ``<filename>.png`` at ``scale``× size; nothing
    is ever sent anywhere (:data:`PLOTLY_CONFIG`)."""
    return {"toImageButtonOptions": {"format": "png", "filename": filename, "scale": scale}, **PLOTLY_CONFIG}
