"""Dataset exemplars: the images (and patches) of a collection that excite each channel of a layer most.

    >>> from featviz_core import find_exemplars, load_demo
    >>> result = find_exemplars(load_demo(), "block2.relu1", "~/shapes", k=9)
    >>> result.top(3)          # [(name, peak, (y, x)), ...] strongest first
    >>> result.patch(3, 0)     # the region of the best image around its peak, as a PIL image

One pass over the collection with a PyTorch ``DataLoader`` (files read and decoded, and the model's
preprocessing done, in worker processes where the platform allows), one forward pass per batch under
``inference_mode`` with the model's lock held for that batch only, and per channel a running top-k and
bottom-k of the image's peak (the largest value over the map's positions), with the image's mean and the
peak's position (y, x) in the map. Nothing per image is kept besides the list of file names, so memory stays
flat for any number of images. Files that cannot be read are counted and listed with their one-sentence
reason; they never stop the run. The same batch function runs on Ray Data (:mod:`.exemplars_ray`).

Command line for large collections (same model specs as the app)::

    python -m featviz_core.exemplars --model tv:resnet18 --layer layer3.1.relu#2 --images DIR --out ex.npz
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import EmptyCollectionError, FeatvizError, LayerError
from ..images.collection import Collection, open_collection
from ..images.load import load_image
from ..layers.discovery import LayerInfo, as_chw, layer_info
from ..layers.hooks import ActivationRecorder, Tap
from ..layers.receptive_field import ReceptiveField, receptive_field
from ..models.loaded import LoadedModel
from .result import Exemplar, Exemplars, ExemplarsError

__all__ = [
    "BatchStats",
    "EmptyCollectionError",
    "Exemplar",
    "Exemplars",
    "ExemplarsError",
    "ExemplarsProgress",
    "batch_stats",
    "group_batch",
    "group_stats",
    "default_workers",
    "find_exemplars",
]

Progress = Callable[[int, int, Any], None]


@dataclass(frozen=True)
class ExemplarsProgress:
    """What ``progress(done, total, preview)`` gets as ``preview`` after each batch."""

    done: int
    total: int
    failed: int
    last: str
    partial: Exemplars
    rate: float | None = None
    """Files per second since the first batch (start-up left out); None after the first batch."""

    @property
    def seconds_left(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate else None


# ---------------------------------------------------------------------------------------------------
# The batch function (shared with the Ray path)


@dataclass(frozen=True)
class BatchStats:
    """Per image of a batch (rows) and channel (columns): peak, mean, and the peak's (y, x) in the map."""

    index: np.ndarray  # (n,) int64: the images' positions in the collection
    peak: np.ndarray  # (n, C) float32
    mean: np.ndarray  # (n, C) float32
    y: np.ndarray  # (n, C) int32
    x: np.ndarray  # (n, C) int32

    @classmethod
    def empty(cls, channels: int) -> BatchStats:
        z = np.zeros((0, channels))
        return cls(np.zeros(0, np.int64), z.astype(np.float32), z.astype(np.float32), z.astype(np.int32),
                   z.astype(np.int32))


def _forward(model: LoadedModel, info: LayerInfo, batch: torch.Tensor) -> torch.Tensor:
    """The layer's output (N, C, H, W) for a batch; one image at a time for a graph that only takes a batch
    of one (some ONNX exports fix the batch size)."""
    try:
        return _forward_once(model, info, batch)
    except FeatvizError:
        raise
    except Exception:
        if len(batch) == 1:
            raise
        return torch.cat([_forward_once(model, info, batch[i:i + 1]) for i in range(len(batch))])


def _forward_once(model: LoadedModel, info: LayerInfo, batch: torch.Tensor) -> torch.Tensor:
    """The layer's output (N, C, H, W) for a batch: one forward pass, the lock held for it only."""
    # The pass stops at the layer (nothing after it is needed), except in a graph run outside PyTorch.
    tap = Tap(info.name, clone=info.overwritten, stop=model.supports_gradients)
    with ActivationRecorder(model.module, taps=[tap], lock=model.lock) as recorder, torch.inference_mode():
        recorder.run(batch.to(model.device))
        out = recorder.outputs.get(info.name)
    if out is None:
        raise LayerError(f"Layer '{info.name}' did not run for these images; choose another from list_layers(model).")
    return as_chw(out, info)


Group = tuple[np.ndarray, torch.Tensor]
"""(positions in the collection, the stacked model inputs (n, C, H, W)) of images of one size."""


def group_batch(items: Sequence[tuple[int, torch.Tensor]]) -> list[Group]:
    """(index, preprocessed (C, H, W) tensor) items stacked into one batch per input size, in the order given.

    The exact batches decide the last bits of a convolution's values, so the DataLoader path (which does
    this in its worker processes) and the Ray path form the same batches from the same items."""
    groups: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for index, tensor in items:
        groups.setdefault(tuple(tensor.shape), []).append((index, tensor))
    return [(np.array([i for i, _ in group], dtype=np.int64), torch.stack([t for _, t in group]))
            for group in groups.values()]


def group_stats(model: LoadedModel, info: LayerInfo, groups: Sequence[Group]) -> BatchStats:
    """Peaks, means and peak positions of layer ``info`` for stacked batches (one forward pass each)."""
    channels = int(info.shape[0]) if info.shape else 0
    if not groups:
        return BatchStats.empty(channels)
    parts = []
    for indices, batch in groups:
        out = _forward(model, info, batch)
        flat = out.reshape(out.shape[0], out.shape[1], -1)
        peak, where = flat.max(dim=2)  # the first position of the maximum
        mean = flat.mean(dim=2, dtype=torch.float32)
        width = out.shape[3]
        where = where.cpu()
        parts.append((
            indices, peak.to(torch.float32).cpu().numpy(), mean.cpu().numpy(),
            (where // width).to(torch.int32).numpy(), (where % width).to(torch.int32).numpy(),
        ))
    return BatchStats(*(np.concatenate([p[j] for p in parts]) for j in range(5)))


def batch_stats(model: LoadedModel, info: LayerInfo, items: Sequence[tuple[int, torch.Tensor]]) -> BatchStats:
    """Peaks, means and peak positions of layer ``info`` for (index, preprocessed (C, H, W) tensor) items:
    :func:`group_batch` then :func:`group_stats`. The one batch function of both paths."""
    return group_stats(model, info, group_batch(items))


class ModelInput:
    """The part of a LoadedModel that turns a picture into its input (no module, no lock: it travels to worker
    processes on any platform). Uses LoadedModel's own code, so the tensors are the same."""

    def __init__(self, model: LoadedModel) -> None:
        self.transform = model.transform
        self.input_channels = model.input_channels
        self.name = model.name
        self.is_volumetric = model.is_volumetric
        self.volume_transform = model.volume_transform

    prepare_image = LoadedModel.prepare_image
    preprocess = LoadedModel.preprocess
    _check_kind = LoadedModel._check_kind  # a picture for a 2-D model: the same refusal as LoadedModel


def decode(collection: Collection, name: str, model: LoadedModel | ModelInput) -> torch.Tensor:
    """One file of the collection as the model's input (C, H, W); FeatvizError with one sentence otherwise."""
    image = load_image(collection.read(name), name)
    return model.preprocess(image)[0]


def decode_safely(collection: Collection, name: str,
                  model: LoadedModel | ModelInput) -> tuple[torch.Tensor | None, str | None]:
    try:
        return decode(collection, name, model), None
    except FeatvizError as exc:
        return None, str(exc)
    except Exception:  # noqa: BLE001 - one bad file must not stop the run
        return None, f"Could not prepare {name} for the model: the file could not be converted to its input."


# ---------------------------------------------------------------------------------------------------
# Running top-k


class _Side:
    """The k best entries per channel, kept sorted: largest (or smallest) peak first, ties by image order."""

    def __init__(self, channels: int, k: int, largest: bool) -> None:
        self.k, self.largest = k, largest
        self.index = np.zeros((channels, 0), np.int64)
        self.peak = np.zeros((channels, 0), np.float32)
        self.mean = np.zeros((channels, 0), np.float32)
        self.y = np.zeros((channels, 0), np.int32)
        self.x = np.zeros((channels, 0), np.int32)

    def add(self, stats: BatchStats) -> None:
        channels = self.peak.shape[0]
        index = np.concatenate([self.index, np.broadcast_to(stats.index, (channels, len(stats.index)))], axis=1)
        peak = np.concatenate([self.peak, stats.peak.T], axis=1)
        key = np.where(np.isnan(peak), np.inf, -peak if self.largest else peak)  # NaN never ranks first
        order = np.lexsort((index, key), axis=1)[:, : self.k]
        self.index = np.take_along_axis(index, order, axis=1)
        self.peak = np.take_along_axis(peak, order, axis=1)
        for field in ("mean", "y", "x"):
            both = np.concatenate([getattr(self, field), getattr(stats, field).T], axis=1)
            setattr(self, field, np.take_along_axis(both, order, axis=1))


class RunningExemplars:
    def __init__(self, channels: int, k: int) -> None:
        self.top = _Side(channels, k, largest=True)
        self.bottom = _Side(channels, k, largest=False)
        self.count = 0

    def add(self, stats: BatchStats) -> None:
        if len(stats.index):
            self.top.add(stats)
            self.bottom.add(stats)
            self.count += len(stats.index)

    def result(self, *, collection: Collection, model: LoadedModel, info: LayerInfo, field: ReceptiveField,
               k: int, failed: Sequence[tuple[str, str]], complete: bool, seconds: float) -> Exemplars:
        used = np.unique(np.concatenate([self.top.index.ravel(), self.bottom.index.ravel()]))
        names = tuple(collection.names[int(i)] for i in used)

        def compact(index: np.ndarray) -> np.ndarray:
            return np.searchsorted(used, index).astype(np.int32)

        assert info.shape is not None
        return Exemplars.build(
            layer=info.name, model_key=model.key, model_name=model.name,
            map_size=(int(info.shape[1]), int(info.shape[2])), input_size=tuple(model.input_size), k=k,
            count=self.count, files=len(collection.names) + len(collection.refused), failed=tuple(failed),
            complete=complete, seconds=seconds, collection_label=collection.label, collection_key=collection.key,
            receptive_field=field, names=names,
            top=(compact(self.top.index), self.top.peak, self.top.mean, self.top.y, self.top.x),
            bottom=(compact(self.bottom.index), self.bottom.peak, self.bottom.mean, self.bottom.y, self.bottom.x),
            collection=collection, view=model.model_view,
        )


# ---------------------------------------------------------------------------------------------------
# The DataLoader path


class _Files(Dataset):
    """Item i: (i, the model's input for file i or None, the reason it failed or None)."""

    def __init__(self, collection: Collection, model: LoadedModel) -> None:
        self.collection = collection
        self.model_input = ModelInput(model)

    def __len__(self) -> int:
        return len(self.collection.names)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        tensor, reason = decode_safely(self.collection, self.collection.names[i], self.model_input)
        return i, tensor, reason


def _collate(batch: list[tuple[int, torch.Tensor | None, str | None]]) -> tuple[list[Group], list[tuple[int, str]], int]:
    """In the worker: the batch's inputs stacked (one tensor per size crosses to the main process), the
    failures, and how many files the batch held."""
    good = [(i, tensor) for i, tensor, _ in batch if tensor is not None]
    broken = [(i, reason or "") for i, tensor, reason in batch if tensor is None]
    return group_batch(good), broken, len(batch)


def default_workers() -> int:
    """Worker processes for decoding: none on one core, one on two (the model needs the other), else up to 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(4, max(1, cores - 1))


def _context(dataset: _Files, workers: int) -> tuple[int, Any]:
    """(workers, multiprocessing context): fork where the platform has it; elsewhere only when the dataset
    pickles (a model's preprocessing may be a closure); else decoding stays in this process."""
    if workers <= 0:
        return 0, None
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods:
        return workers, multiprocessing.get_context("fork")
    try:
        pickle.dumps(dataset)
    except Exception:  # noqa: BLE001 - not picklable: decode here
        return 0, None
    return workers, multiprocessing.get_context(methods[0])


def prepare_search(model: LoadedModel, info: LayerInfo, collection: Collection,
             k: int) -> tuple[list[tuple[str, str]], float, ReceptiveField, RunningExemplars]:
    """What both paths (this one and Ray's) set up once the collection is open: the failure list (starting
    with the files the collection refused), the start time, the layer's receptive field and an empty running
    top-k. Raises :class:`EmptyCollectionError` when the collection holds no file to read."""
    failed: list[tuple[str, str]] = list(collection.refused)
    if not collection.names:
        raise EmptyCollectionError(collection.empty_message(), failed)
    started = time.monotonic()
    field = receptive_field(model, info.name)
    channels = int(info.shape[0]) if info.shape else 0
    return failed, started, field, RunningExemplars(channels, k)


def find_exemplars(
    model: LoadedModel,
    layer: str,
    images: Any,
    *,
    k: int = 9,
    batch_size: int = 32,
    progress: Progress | None = None,
    num_workers: int | None = None,
) -> Exemplars:
    """The ``k`` images of ``images`` whose peak at each channel of ``layer`` is highest (and lowest).

    ``images``: a folder path (nested folders included), a ``.zip`` file path, a
    :class:`~featviz_core.images.collection.Collection`, or an iterable of (name, bytes). ``progress(done, total,
    preview)`` is called after every batch with an :class:`ExemplarsProgress` (its ``partial`` result is what
    a stopped run shows); an exception it raises stops the run (workers are shut down, the model is left as
    it was). ``num_workers``: decoding processes (default :func:`default_workers`).
    Raises :class:`EmptyCollectionError` (one sentence) when no file could be read.
    """
    if k < 1 or batch_size < 1:
        raise ExemplarsError("Ask for at least one exemplar per channel and a batch of at least one image.")
    info = layer_info(model, layer, spatial=True)
    collection = open_collection(images)
    failed, started, field, running = prepare_search(model, info, collection, k)
    dataset = _Files(collection, model)
    workers, context = _context(dataset, default_workers() if num_workers is None else num_workers)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
                        multiprocessing_context=context, prefetch_factor=2 if workers else None)
    total, done = len(dataset), 0

    def snapshot(complete: bool) -> Exemplars:
        return running.result(collection=collection, model=model, info=info, field=field, k=k, failed=failed,
                              complete=complete, seconds=time.monotonic() - started)

    iterator = iter(loader)
    first: tuple[float, int] | None = None  # (time, files done) after the first batch: the rate counts from there
    try:
        for groups, broken, count in iterator:
            failed.extend((collection.names[i], reason) for i, reason in broken)
            running.add(group_stats(model, info, groups))
            done += count
            if progress is not None:
                now = time.monotonic()
                first = first or (now, done)
                rate = (done - first[1]) / (now - first[0]) if done > first[1] and now > first[0] else None
                last = collection.names[done - 1]
                progress(done, total, ExemplarsProgress(done, total, len(failed), last, snapshot(False), rate))
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
    if running.count == 0:
        raise EmptyCollectionError(
            f"None of the {total} files in {collection.label} could be read as a picture: each one's reason "
            "is listed with it.", failed)
    return snapshot(True)


def load_exemplars(source: Any) -> Exemplars:
    """A result written by :meth:`Exemplars.save` or the command line (``.npz`` path or bytes)."""
    return Exemplars.load(source)
