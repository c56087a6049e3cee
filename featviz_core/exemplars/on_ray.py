"""Exemplars beyond one machine: the same batch function on Ray Data, then the same top-k merge.

    python -m featviz_core.exemplars --model tv:resnet18 --layer layer3.1.relu#2 --images /shared/xrays \\
        --out ex.npz --ray --ray-workers 8

``ray.data.from_items`` over the collection's file list, cut into the batches the one-machine path uses ->
``map_batches`` with an actor class that loads the model once per worker (``load_spec``, the same model
strings as the app) and runs :func:`~featviz_core.exemplars.search.batch_stats` on each batch, with
``compute=ActorPoolStrategy(size=n)`` -> the driver merges the per-image peaks into the running top-k as they
stream in. Convolutions give slightly different last bits for different batch compositions, so each model
call sees exactly the batch the DataLoader path would form: both paths give identical results.

The images must be in a folder every worker can read (a shared disk). Ray is an optional extra
(``pip install -r requirements-ray.txt``); the app never imports this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..images.collection import CollectionError, folder_collection, folder_reader
from ..layers.discovery import layer_info
from ..models.sources import load_spec
from .result import Exemplars, ExemplarsError
from .search import (
    BatchStats,
    EmptyCollectionError,
    ExemplarsProgress,
    batch_stats,
    decode_safely,
    prepare_search,
)

__all__ = ["find_exemplars_ray"]

Progress = Callable[[int, int, Any], None]


def _require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ExemplarsError(
            "Running on Ray needs the ray package: pip install -r requirements-ray.txt (or leave out --ray)."
        ) from None
    return ray


class ExemplarWorker:
    """A Ray actor: loads the model once, then turns batches of file names into per-image statistics."""

    def __init__(self, spec: str, load_kwargs: Mapping[str, Any], layer: str, root: str) -> None:
        self.model = load_spec(spec, **dict(load_kwargs))
        self.info = layer_info(self.model, layer, spatial=True)
        self.files = folder_reader(root)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        channels = int(self.info.shape[0]) if self.info.shape else 0
        rows: list[tuple[int, str | None]] = []
        good = []
        for start, names in zip(batch["start"], batch["names"], strict=True):
            for j, name in enumerate(names):
                tensor, reason = decode_safely(self.files, str(name), self.model)
                rows.append((int(start) + j, reason))
                if tensor is not None:
                    good.append((int(start) + j, tensor))
        stats = batch_stats(self.model, self.info, good)
        where = {int(i): r for r, i in enumerate(stats.index)}
        n = len(rows)
        out = {"index": np.array([i for i, _ in rows], np.int64), "ok": np.zeros(n, bool),
               "reason": np.array([reason or "" for _, reason in rows], dtype=object),
               "peak": np.zeros((n, channels), np.float32), "mean": np.zeros((n, channels), np.float32),
               "y": np.zeros((n, channels), np.int32), "x": np.zeros((n, channels), np.int32)}
        for r, (index, _reason) in enumerate(rows):
            s = where.get(index)
            if s is not None:
                out["ok"][r] = True
                for key in ("peak", "mean", "y", "x"):
                    out[key][r] = getattr(stats, key)[s]
        return out


def find_exemplars_ray(
    spec: str,
    layer: str,
    folder: str | Path,
    *,
    k: int = 9,
    batch_size: int = 32,
    workers: int = 2,
    progress: Progress | None = None,
    load_kwargs: Mapping[str, Any] | None = None,
    address: str | None = None,
) -> Exemplars:
    """:func:`~featviz_core.exemplars.search.find_exemplars` for the model ``spec`` on Ray Data, with ``workers``
    actors (each loads the model once). Connects to the running Ray cluster (``address``, or a local one
    started here when none is running)."""
    ray = _require_ray()
    if k < 1 or batch_size < 1 or workers < 1:
        raise ExemplarsError("Ask for at least one exemplar, a batch of at least one image and one worker.")
    kwargs = dict(load_kwargs or {})
    model = load_spec(spec, **kwargs)
    info = layer_info(model, layer, spatial=True)
    if not Path(folder).expanduser().is_dir():
        raise CollectionError(f"Ray reads the images from a folder every worker can see; {folder} is not a folder.")
    collection = folder_collection(folder)
    failed, started, field, running = prepare_search(model, info, collection, k)
    names = collection.names
    items = [{"start": s, "names": list(names[s:s + batch_size])} for s in range(0, len(names), batch_size)]
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress is None  # ours replaces Ray's
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), max(1, 4 * workers)))
    results = dataset.map_batches(
        ExemplarWorker,
        fn_constructor_kwargs={"spec": spec, "load_kwargs": kwargs, "layer": layer, "root": collection.root},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    done, total = 0, len(names)
    broken: list[tuple[int, str]] = []  # (index, reason): sorted at the end, as the one-machine path lists them
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        ok = np.asarray(batch["ok"], bool)
        index = np.asarray(batch["index"], np.int64)
        broken.extend((int(i), str(r)) for i, r in zip(index[~ok], batch["reason"][~ok], strict=True))
        running.add(BatchStats(index[ok], *(np.asarray(batch[key])[ok] for key in ("peak", "mean", "y", "x"))))
        done += len(index)
        if progress is not None:
            partial = running.result(collection=collection, model=model, info=info, field=field, k=k,
                                     failed=failed + [(names[i], r) for i, r in sorted(broken)], complete=False,
                                     seconds=time.monotonic() - started)
            progress(done, total, ExemplarsProgress(done, total, len(failed) + len(broken), names[int(index[-1])],
                                                    partial))
    failed += [(names[i], reason) for i, reason in sorted(broken)]
    if running.count == 0:
        raise EmptyCollectionError(
            f"None of the {total} files in {collection.label} could be read as a picture: each one's reason "
            "is listed with it.", failed)
    return running.result(collection=collection, model=model, info=info, field=field, k=k, failed=failed,
                          complete=True, seconds=time.monotonic() - started)
