"""Exemplars throughput against the physical limit: a bare DataLoader + forward pass over the same files.

A folder of ``images`` photo-like JPEGs (500×375, decoded and resized to 224 like a real collection) and
resnet18 with seeded random weights. Per round, in rotating order:

- ``bare``      a ``torch.utils.data.DataLoader`` over the same files with the same batch size and worker
  processes: read the file, ``load_image``, ``model.preprocess``, stack, then the full forward pass under
  ``inference_mode`` (nothing kept): what any pass over the collection must cost;
- ``featviz``   ``find_exemplars(model, layer, folder, k=9)`` with a progress callback (as the page runs it):
  the same plus the hook, the per-image peaks, means and positions, the running top-k / bottom-k and a
  partial result after every batch.

Layers: the last spatial layer (``layer4.1.relu#2``: the whole network runs, the headline, target ≥ 0.9×
the bare throughput) and the default mid-level layer (featviz stops the forward pass once the layer has run,
so it may be faster than the bare pass). The receptive field is measured once per model and layer and
remembered; its first measurement is timed separately. Medians of interleaved rounds, and the ratio of the
fastest rounds (on a shared machine the other work only ever adds time).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from featviz_core import default_layer, load_image, load_torchvision
from featviz_core.exemplars import find_exemplars
from featviz_core.exemplars.search import default_workers
from featviz_core.layers.receptive_field import receptive_field
from featviz_core.models import LoadedModel

from .common import clock, interleaved, ratio, summary

__all__ = ["TARGET", "run", "write_collection"]

TARGET = 0.9
LAST_LAYER = "layer4.1.relu#2"


def write_collection(folder: Path, images: int, size: tuple[int, int] = (500, 375)) -> list[Path]:
    """``images`` distinct smooth-plus-noise JPEGs (photo-like sizes and compression) in ``folder``."""
    rng = np.random.default_rng(0)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(images):
        phase = rng.uniform(0, 2 * np.pi, 3)
        pixels = np.stack([127 + 90 * np.sin(xx / (20 + 7 * c) + yy / (31 + 5 * c) + phase[c]) for c in range(3)], -1)
        pixels += rng.normal(0, 10, pixels.shape)
        path = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path, quality=88)
        paths.append(path)
    return paths


class _Bare(Dataset):
    def __init__(self, paths: list[Path], model: LoadedModel) -> None:
        self.paths, self.model = paths, model

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        path = self.paths[i]
        return self.model.preprocess(load_image(path.read_bytes(), path.name))[0]


def _bare_pass(model: LoadedModel, paths: list[Path], batch_size: int, workers: int) -> None:
    loader = DataLoader(_Bare(paths, model), batch_size=batch_size, num_workers=workers,
                        multiprocessing_context="fork" if workers else None)
    with torch.inference_mode():
        for batch in loader:
            model.module(batch)


def run(images: int = 128, rounds: int = 7, warmup: int = 1, batch_size: int = 32,
        workers: int | None = None) -> dict[str, Any]:
    workers = default_workers() if workers is None else workers
    model = load_torchvision("resnet18", weights=None)
    layers = {"last spatial layer": LAST_LAYER, "default layer": default_layer(model)}
    folder = Path(tempfile.mkdtemp(prefix="featviz-bench-exemplars-"))
    try:
        paths = write_collection(folder, images)
        field_s = {}
        for label, layer in layers.items():
            t0 = clock()
            receptive_field(model, layer)
            field_s[label] = clock() - t0
        variants = {"bare": lambda: _bare_pass(model, paths, batch_size, workers)}
        for label, layer in layers.items():
            variants[f"featviz · {label}"] = (
                lambda layer=layer: find_exemplars(model, layer, folder, k=9, batch_size=batch_size,
                                                   num_workers=workers, progress=lambda *_: None))
        times = interleaved(variants, rounds=rounds, warmup=warmup)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    bare = summary(times["bare"])
    result: dict[str, Any] = {
        "target": f"featviz throughput ≥ {TARGET}× the bare DataLoader + forward (last spatial layer)",
        "model": "resnet18 (random weights), 224 px", "images": images, "image_size": [500, 375],
        "batch_size": batch_size, "workers": workers, "rounds": rounds, "torch_threads": torch.get_num_threads(),
        "bare": {"seconds": bare, "images_per_s": images / bare["median"] if bare["median"] else None},
        "layers": {},
    }
    for label, layer in layers.items():
        s = summary(times[f"featviz · {label}"])
        throughput = ratio(bare["median"], s["median"])  # (images / featviz s) / (images / bare s)
        result["layers"][label] = {
            "layer": layer, "seconds": s, "images_per_s": images / s["median"] if s["median"] else None,
            "throughput_over_bare": throughput, "throughput_over_bare_fastest": ratio(bare["min"], s["min"]),
            "receptive_field_first_s": field_s[label],
            "pass": None if throughput is None else throughput >= TARGET if label == "last spatial layer" else None,
        }
    return result
