"""The result of :func:`~featviz_core.exemplars.search.find_exemplars`: per channel the top-k and bottom-k images,
their patches, and its exports (``.npz`` / ``.parquet`` table, contact-sheet PNG).

The table has one row per (channel, kind, rank): ``image`` (the file's name in the collection), ``channel``,
``kind`` ("top" or "bottom"), ``rank`` (1 = strongest / weakest), ``peak`` (the largest value of the channel's
map for that image), ``mean`` (the map's mean), ``peak_y`` / ``peak_x`` (where the peak is, in map cells).
An ``.npz`` holds those columns as plain arrays plus ``meta`` (JSON text: the layer, the model, the receptive
field, the failed files...), and loads without pickle: ``np.load("exemplars.npz")["peak"]``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import ExemplarsError
from ..images.collection import Collection
from ..images.load import load_image
from ..layers.receptive_field import ReceptiveField, crop_patch

__all__ = ["COLUMNS", "Exemplar", "Exemplars", "ExemplarsError", "fit"]

COLUMNS = ("image", "channel", "kind", "rank", "peak", "mean", "peak_y", "peak_x")
"""The columns of :meth:`Exemplars.table` (and of the .npz / .parquet exports)."""
FORMAT = "featviz-exemplars-1"
_MAX_RESULT_BYTES = 1024**3
_TILE = 128


class Exemplar(NamedTuple):
    """One image of a channel's top (or bottom) list: its name, its peak value and where the peak is."""

    name: str
    peak: float
    position: tuple[int, int]


def _readonly(array: np.ndarray, dtype: Any) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=dtype).copy()
    out.flags.writeable = False
    return out


def fit(image: Image.Image, size: int) -> Image.Image:
    """``image`` scaled so its longer side is ``size`` (small patches enlarged without blurring)."""
    scale = size / max(image.size)
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)


@dataclass(frozen=True, eq=False)
class Exemplars:
    """Per channel of ``layer``: the ``k`` images with the highest and the lowest peak.

    ``count`` images were read out of ``files`` in the collection; ``failed`` lists (file, reason) for the
    others; ``complete`` is False for a run that was stopped (a partial result). Arrays are (channels, m) with
    m = min(k, count), strongest (top) or weakest (bottom) first, ties in collection order; ``*_index`` point
    into ``names``. Pictures and patches need the images: they are there for a fresh result, and for a loaded
    one after :meth:`with_images`.
    """

    layer: str
    model_key: str
    model_name: str
    map_size: tuple[int, int]
    input_size: tuple[int, int]
    k: int
    count: int
    files: int
    failed: tuple[tuple[str, str], ...]
    complete: bool
    seconds: float
    collection_label: str
    collection_key: str
    receptive_field: ReceptiveField
    names: tuple[str, ...]
    top_index: np.ndarray
    top_peak: np.ndarray
    top_mean: np.ndarray
    top_pos: np.ndarray
    bottom_index: np.ndarray
    bottom_peak: np.ndarray
    bottom_mean: np.ndarray
    bottom_pos: np.ndarray
    collection_root: str | None = None
    _collection: Collection | None = field(default=None, repr=False)
    _view: Callable[[Image.Image], Image.Image] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, *, top: tuple[np.ndarray, ...], bottom: tuple[np.ndarray, ...],
              collection: Collection | None = None, view: Callable[[Image.Image], Image.Image] | None = None,
              **fields: Any) -> Exemplars:
        """From (index, peak, mean, y, x) arrays of shape (C, m) for the top and the bottom lists."""
        def side(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
            index, peak, mean, y, x = arrays
            return (_readonly(index, np.int32), _readonly(peak, np.float32), _readonly(mean, np.float32),
                    _readonly(np.stack([y, x], axis=-1), np.int32))

        t, b = side(top), side(bottom)
        root = fields.pop("collection_root", None)
        if collection is not None:
            root = collection.root
        return cls(top_index=t[0], top_peak=t[1], top_mean=t[2], top_pos=t[3], bottom_index=b[0],
                   bottom_peak=b[1], bottom_mean=b[2], bottom_pos=b[3], collection_root=root,
                   _collection=collection, _view=view, **fields)

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def channels(self) -> int:
        return int(self.top_peak.shape[0])

    @property
    def has_images(self) -> bool:
        return self._collection is not None and self._view is not None

    def _check(self, channel: int) -> int:
        if not 0 <= int(channel) < self.channels:
            raise ExemplarsError(
                f"Layer {self.layer} has channels 0 to {self.channels - 1}; channel {channel} is not one of them."
            )
        return int(channel)

    def _entries(self, channel: int, bottom: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        c = self._check(channel)
        if bottom:
            return self.bottom_index[c], self.bottom_peak[c], self.bottom_mean[c], self.bottom_pos[c]
        return self.top_index[c], self.top_peak[c], self.top_mean[c], self.top_pos[c]

    def _list(self, channel: int, k: int | None, bottom: bool) -> list[Exemplar]:
        index, peak, _mean, pos = self._entries(channel, bottom)
        n = len(index) if k is None else max(0, min(int(k), len(index)))
        return [Exemplar(self.names[int(index[i])], float(peak[i]), (int(pos[i, 0]), int(pos[i, 1])))
                for i in range(n)]

    def top(self, channel: int, k: int | None = None) -> list[Exemplar]:
        """The images whose peak at ``channel`` is highest: (name, peak, (y, x)), strongest first."""
        return self._list(channel, k, bottom=False)

    def bottom(self, channel: int, k: int | None = None) -> list[Exemplar]:
        """The images whose peak at ``channel`` is lowest (what the channel ignores), weakest first."""
        return self._list(channel, k, bottom=True)

    def means(self, channel: int, *, bottom: bool = False) -> np.ndarray:
        """The mean of the channel's map for each image of :meth:`top` (or :meth:`bottom`)."""
        return self._entries(channel, bottom)[2]

    def strongest_channels(self) -> np.ndarray:
        """Channel numbers ordered by the average peak of their top images, strongest first."""
        score = np.nan_to_num(self.top_peak.astype(np.float64), nan=-np.inf).mean(axis=1) if self.count else (
            np.zeros(self.channels))
        return np.lexsort((np.arange(self.channels), -score)).astype(np.int64)

    # -- pictures --------------------------------------------------------------------------------------

    def with_images(self, collection: Collection, view: Callable[[Image.Image], Image.Image]) -> Exemplars:
        """The same result, able to show pictures read from ``collection`` through a model's ``view``
        (``LoadedModel.model_view``)."""
        return dataclasses.replace(self, _collection=collection, _view=view)

    def without_images(self) -> Exemplars:
        """The same result holding no reference to the collection (to keep it somewhere the images must not
        stay, e.g. a table shared by every session)."""
        return dataclasses.replace(self, _collection=None, _view=None)

    def image_bytes(self, name: str) -> bytes:
        """The file ``name`` as it is in the collection (to open it elsewhere)."""
        if self._collection is None:
            raise ExemplarsError(
                "The images of this result are not available here: open the collection it was made from "
                "(the same zip file or folder) to see them."
            )
        return self._collection.read(name)

    def _model_view(self, name: str) -> Image.Image:
        data = self.image_bytes(name)
        if self._view is None:
            raise ExemplarsError("Choose the model this result was made with to see its pictures.")
        return self._view(load_image(data, name))

    def _item(self, channel: int, i: int, bottom: bool) -> Exemplar:
        items = self._list(channel, None, bottom)
        if not 0 <= i < len(items):
            raise ExemplarsError(f"Channel {channel} has {len(items)} exemplars here; number {i} is not one of them.")
        return items[i]

    def patch(self, channel: int, i: int, *, bottom: bool = False) -> Image.Image:
        """The region of exemplar ``i`` (0 = strongest) around its peak, the size of the layer's receptive
        field, from the image as the model sees it; parts outside the image are padded (never shifted)."""
        item = self._item(channel, i, bottom)
        return crop_patch(self._model_view(item.name), self.receptive_field.box(*item.position))

    def picture(self, channel: int, i: int, *, bottom: bool = False, outline: bool = True) -> Image.Image:
        """Exemplar ``i``'s whole image as the model sees it, with a box around the patch."""
        item = self._item(channel, i, bottom)
        image = self._model_view(item.name).convert("RGB")
        if outline:
            top, left, bottom_, right = self.receptive_field.box(*item.position)
            draw = ImageDraw.Draw(image)
            width = max(1, round(min(image.size) / 64))
            box = (max(0, left), max(0, top), min(image.width, right) - 1, min(image.height, bottom_) - 1)
            draw.rectangle(box, outline=(255, 196, 0), width=width)
        return image

    # -- exports ---------------------------------------------------------------------------------------

    def table(self) -> dict[str, np.ndarray]:
        """One row per channel, kind and rank (see :data:`COLUMNS`)."""
        rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        for kind in ("top", "bottom"):
            index, peak, mean, pos = (getattr(self, f"{kind}_{n}") for n in ("index", "peak", "mean", "pos"))
            for c in range(self.channels):
                for r in range(index.shape[1]):
                    rows["image"].append(self.names[int(index[c, r])])
                    rows["channel"].append(c)
                    rows["kind"].append(kind)
                    rows["rank"].append(r + 1)
                    rows["peak"].append(peak[c, r])
                    rows["mean"].append(mean[c, r])
                    rows["peak_y"].append(pos[c, r, 0])
                    rows["peak_x"].append(pos[c, r, 1])
        types = {"image": str, "channel": np.int32, "kind": str, "rank": np.int32, "peak": np.float32,
                 "mean": np.float32, "peak_y": np.int32, "peak_x": np.int32}
        return {c: np.asarray(rows[c], dtype=types[c]) if rows[c] else np.zeros(0, dtype=types[c]) for c in COLUMNS}

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "layer": self.layer, "model_key": self.model_key, "model_name": self.model_name,
            "channels": self.channels, "map_size": list(self.map_size), "input_size": list(self.input_size),
            "k": self.k, "count": self.count, "files": self.files, "failed": [list(f) for f in self.failed],
            "complete": self.complete, "seconds": self.seconds, "collection_label": self.collection_label,
            "collection_key": self.collection_key, "collection_root": self.collection_root,
            "receptive_field": self.receptive_field.to_dict(),
        }

    def npz_bytes(self) -> bytes:
        from ..export import npz_bytes

        arrays = dict(self.table())
        arrays["meta"] = np.asarray(json.dumps(self.meta()))
        return npz_bytes(arrays)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the ``.npz`` (see the module's docstring) and return its path."""
        target = Path(path)
        target.write_bytes(self.npz_bytes())
        return target

    def parquet_bytes(self) -> bytes:
        """The table as Parquet (needs pyarrow); the metadata travels in the schema under ``featviz``."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ExemplarsError("Parquet export needs the pyarrow package; use the .npz file instead.") from None
        table = pa.table(self.table()).replace_schema_metadata({"featviz": json.dumps(self.meta())})
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()

    @classmethod
    def load(cls, source: bytes | str | os.PathLike[str]) -> Exemplars:
        """A result from an ``.npz`` (bytes or a path) written by :meth:`save` or the command line."""
        data = Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) else bytes(source)
        wrong = ExemplarsError(
            "This file is not an exemplars result saved by featviz: choose the .npz file that the Exemplars "
            "page or python -m featviz_core.exemplars wrote."
        )
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if sum(i.file_size for i in archive.infolist()) > _MAX_RESULT_BYTES:
                    raise wrong
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                table = {c: npz[c] for c in COLUMNS}
            if meta.get("format") != FORMAT:
                raise wrong
            return cls._from_table(meta, table)
        except ExemplarsError:
            raise
        except Exception:  # noqa: BLE001 - any malformed file gets the same sentence
            raise wrong from None

    @classmethod
    def _from_table(cls, meta: dict[str, Any], table: dict[str, np.ndarray]) -> Exemplars:
        channels = int(meta["channels"])
        names = tuple(sorted({str(n) for n in table["image"]}))
        lookup = {n: i for i, n in enumerate(names)}
        sides = {}
        for kind in ("top", "bottom"):
            rows = np.flatnonzero(table["kind"] == kind)
            m = len(rows) // channels if channels else 0
            if m * channels != len(rows):
                raise ValueError("ragged table")
            arrays = [np.zeros((channels, m), dt) for dt in (np.int32, np.float32, np.float32, np.int32, np.int32)]
            for row in rows:
                c, r = int(table["channel"][row]), int(table["rank"][row]) - 1
                values = (lookup[str(table["image"][row])], table["peak"][row], table["mean"][row],
                          table["peak_y"][row], table["peak_x"][row])
                for array, value in zip(arrays, values, strict=True):
                    array[c, r] = value
            sides[kind] = tuple(arrays)
        return cls.build(
            top=sides["top"], bottom=sides["bottom"], layer=str(meta["layer"]), model_key=str(meta["model_key"]),
            model_name=str(meta["model_name"]), map_size=tuple(int(v) for v in meta["map_size"]),
            input_size=tuple(int(v) for v in meta["input_size"]), k=int(meta["k"]), count=int(meta["count"]),
            files=int(meta["files"]), failed=tuple((str(a), str(b)) for a, b in meta["failed"]),
            complete=bool(meta["complete"]), seconds=float(meta["seconds"]),
            collection_label=str(meta["collection_label"]), collection_key=str(meta["collection_key"]),
            collection_root=meta.get("collection_root"), receptive_field=ReceptiveField.from_dict(meta["receptive_field"]),
            names=names,
        )

    def contact_sheet(self, channel: int, k: int | None = None) -> Image.Image:
        """One picture of a channel: its strongest images, their patches, its weakest images, with values."""
        top, bottom = self.top(channel, k), self.bottom(channel, k)
        font = ImageFont.load_default(size=13)
        title_font = ImageFont.load_default(size=17)
        cols = max(len(top), len(bottom), 1)
        label_h, caption_h, pad = 22, 18, 8
        rows = [("Strongest images (box: the part the channel reacts to)", top, False, False),
                ("Their strongest patches", top, False, True),
                ("Weakest images (what the channel ignores)", bottom, True, False)]
        width = pad + cols * (_TILE + pad)
        height = 36 + len(rows) * (label_h + _TILE + caption_h + pad)
        sheet = Image.new("RGB", (max(width, 520), height), "white")
        draw = ImageDraw.Draw(sheet)
        draw.text((pad, 8), f"{self.model_name} · layer {self.layer} · channel {channel}", fill="black",
                  font=title_font)
        y = 36
        for label, items, is_bottom, as_patch in rows:
            draw.text((pad, y + 4), label, fill=(60, 60, 60), font=font)
            y += label_h
            for i, item in enumerate(items):
                tile = (self.patch(channel, i, bottom=is_bottom) if as_patch
                        else self.picture(channel, i, bottom=is_bottom))
                tile = fit(tile, _TILE)
                x = pad + i * (_TILE + pad)
                sheet.paste(tile, (x + (_TILE - tile.width) // 2, y + (_TILE - tile.height) // 2))
                draw.text((x, y + _TILE + 2), f"peak {item.peak:.3g}", fill="black", font=font)
            y += _TILE + caption_h + pad
        return sheet

    def contact_sheet_png(self, channel: int, k: int | None = None) -> bytes:
        buffer = io.BytesIO()
        self.contact_sheet(channel, k).save(buffer, format="PNG")
        return buffer.getvalue()
