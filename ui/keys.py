"""Every key the app's caches and long jobs are found by, built here (and only here) from their inputs.

Keys are strings of the inputs (never arrays or tensors), joined by ``|``; a model is its ``LoadedModel.key``
(built in :mod:`featviz_core.models.keys`), an image the SHA-256 of its bytes. Two calls with the same inputs give
the same key, so a rerun, another page or the report finds the same cached result or job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from featviz_core.cam import CamTarget
from featviz_core.visualize.optimize import settings_key

__all__ = [
    "cam_key",
    "exemplars_key",
    "exemplars_tiles_key",
    "gallery_key",
    "names_key",
    "sanity_key",
    "visualize_key",
]

def _join(*parts: object) -> str:
    return "|".join(str(part) for part in parts)


def names_key(names: Sequence[str]) -> str:
    """Class names uploaded with a model (cache keys of checkpoint and ONNX models)."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def cam_key(
    digest: str, model_key: str, layer: str, class_index: int | None, method: str, target: CamTarget | None
) -> str:
    """A class activation map's inputs: image digest, model, layer, class or target, method."""
    what = f"class={class_index}" if target is None else f"target={target.key}"
    return _join(digest, model_key, layer, what, method)


def sanity_key(map_key: str) -> str:
    """The sanity check of the map whose key is ``map_key``."""
    return _join("sanity", map_key)


def visualize_key(model_key: str, layer: str, channel: int, objective: str, size: int, steps: int, seed: int) -> str:
    """A feature visualization's inputs (the key :class:`~featviz_core.visualize.Visualization` carries too)."""
    return settings_key(model_key, layer, channel, objective, size, steps, seed)


def gallery_key(model_key: str, layer: str, channels: Sequence[int], size: int, steps: int, seed: int) -> str:
    """A gallery of pictures, one for each of ``channels`` (in their order)."""
    return _join("gallery", model_key, layer, ",".join(map(str, channels)), size, steps, seed)


def exemplars_key(model_key: str, layer: str, collection_key: str, k: int) -> str:
    """A search for the ``k`` strongest images of a collection."""
    return _join("exemplars", model_key, layer, collection_key, f"k{k}")


def exemplars_tiles_key(collection_key: str, model_key: str, layer: str, count: int) -> str:
    """The pictures drawn from one exemplars result (``count``: images read, which a stopped run has fewer of)."""
    return _join(collection_key, model_key, layer, count)
