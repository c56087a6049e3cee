"""Generated volumes for the 3-D demo model: a sphere, a cube, a hollow shell or a rod, at a random place, size and
brightness, in noise — and a deterministic "phantom" of each class for the offline demo.

Values are 0..1 (the model's preprocessing normalises with :data:`~featviz_core.demo.volume_net.VOLUME_MEAN` and
``VOLUME_STD``). ``volumes(n, seed)`` gives (n, 1, D, H, W) float32 and the labels; the same seed, the same data.
"""

from __future__ import annotations

import numpy as np

from .volume_net import VOLUME_CLASSES, VOLUME_SIZE

__all__ = ["draw", "volumes"]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axis = np.arange(size, dtype=np.float32)
    return np.meshgrid(axis, axis, axis, indexing="ij")  # z, y, x


def draw(kind: str, size: int = VOLUME_SIZE, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """One (D, H, W) float32 volume of ``kind`` (a name of VOLUME_CLASSES); centred and noiseless without ``rng``."""
    z, y, x = _grid(size)
    if rng is None:
        centre, radius, brightness = np.full(3, (size - 1) / 2, dtype=np.float32), size * 0.28, 1.0
        axis = 2
    else:
        radius = float(rng.uniform(0.18, 0.32)) * size
        centre = rng.uniform(radius + 1, size - radius - 2, 3).astype(np.float32)
        brightness = float(rng.uniform(0.6, 1.0))
        axis = int(rng.integers(0, 3))
    dz, dy, dx = z - centre[0], y - centre[1], x - centre[2]
    if kind == "sphere":
        inside = dz**2 + dy**2 + dx**2 <= radius**2
    elif kind == "cube":
        half = radius * 0.85
        inside = (np.abs(dz) <= half) & (np.abs(dy) <= half) & (np.abs(dx) <= half)
    elif kind == "shell":
        r2 = dz**2 + dy**2 + dx**2
        inside = (r2 <= radius**2) & (r2 >= (radius * 0.65) ** 2)
    elif kind == "rod":
        along = (dz, dy, dx)[axis]
        across = [d for i, d in enumerate((dz, dy, dx)) if i != axis]
        inside = (np.abs(along) <= radius * 1.4) & (across[0] ** 2 + across[1] ** 2 <= (radius * 0.4) ** 2)
    else:
        raise ValueError(f"unknown shape {kind!r}; one of {VOLUME_CLASSES}")
    volume = inside.astype(np.float32) * brightness
    if rng is not None:
        volume += rng.normal(0.0, 0.08, volume.shape).astype(np.float32)
    return volume


def volumes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random volumes (n, 1, D, H, W) float32 and their labels (n,) int64, balanced over the classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(VOLUME_CLASSES)
    rng.shuffle(labels)
    data = np.stack([draw(VOLUME_CLASSES[int(label)], rng=rng) for label in labels])[:, None]
    return data.astype(np.float32), labels.astype(np.int64)
