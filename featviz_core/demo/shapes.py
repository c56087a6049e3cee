"""Synthetic training images for the demo model: simple shapes and textures, drawn from a seed.

Six classes: four filled shapes (circle, square, triangle, star) with a random colour, size, position
and rotation, and two full-frame textures (stripes, checkerboard) with a random period, phase and angle.
The background is a solid colour or a linear gradient; the foreground colour always differs clearly from
it. Images are drawn at 4x the output size and downsampled (anti-aliasing), then may get a slight blur and
Gaussian noise. Everything comes from the ``numpy.random.Generator`` passed in, so the same seed gives the
same pixels.

``python -m featviz_core.demo.shapes --write-samples`` regenerates the shipped sample images in
``featviz_core/images/assets/samples/`` (CC0, see LICENSES.md there).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from ..images.samples import SAMPLES_DIR
from .net import CLASSES

__all__ = [
    "CLASSES",
    "SAMPLE_CLASSES",
    "SAMPLE_SEED",
    "SAMPLE_SIZE",
    "dataset",
    "generate",
    "write_samples",
]

SAMPLE_CLASSES: tuple[str, ...] = ("star", "stripes", "checkerboard", "circle")
"""The classes shipped as sample images (``<class>.png``)."""
SAMPLE_SIZE = 256
SAMPLE_SEED = 2024

_SUPERSAMPLE = 4
_MIN_COLOUR_DISTANCE = 110.0  # Euclidean, in 0..255 RGB, between the foreground and every background colour
_SAMPLES_DIR = SAMPLES_DIR


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 255.0, size=3)


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A (size, size, 3) float background, solid or a linear gradient, and its end colours."""
    c0 = _random_colour(rng)
    if rng.random() < 0.5:
        return np.broadcast_to(c0, (size, size, 3)), [c0]
    c1 = c0 + rng.uniform(-90.0, 90.0, size=3)
    c1 = np.clip(c1, 0.0, 255.0)
    angle = rng.uniform(0.0, 2 * math.pi)
    coords = (np.arange(size) + 0.5) / size - 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    t = np.clip(xx * math.cos(angle) + yy * math.sin(angle) + 0.5, 0.0, 1.0)[..., None]
    return c0 * (1.0 - t) + c1 * t, [c0, c1]


def _foreground_colour(rng: np.random.Generator, avoid: Sequence[np.ndarray]) -> np.ndarray:
    for _ in range(1000):
        colour = _random_colour(rng)
        if all(float(np.linalg.norm(colour - a)) >= _MIN_COLOUR_DISTANCE for a in avoid):
            return colour
    # Practically unreachable; the colour opposite to the first background colour is always far enough.
    return 255.0 - np.round(avoid[0] / 255.0) * 255.0


def _polygon(
    cx: float, cy: float, radii: Sequence[float], angles: Sequence[float]
) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]


def _shape_mask(name: str, rng: np.random.Generator, canvas: int) -> Image.Image:
    """A (canvas, canvas) mask: 255 inside the shape."""
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    radius = rng.uniform(0.22, 0.42) * canvas  # circumradius
    margin = radius * 1.02
    cx = rng.uniform(margin, canvas - margin)
    cy = rng.uniform(margin, canvas - margin)
    rot = rng.uniform(0.0, 2 * math.pi)
    if name == "circle":
        r = radius * 0.9
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif name == "square":
        angles = [rot + k * math.pi / 2 for k in range(4)]
        draw.polygon(_polygon(cx, cy, [radius] * 4, angles), fill=255)
    elif name == "triangle":
        angles = [rot + k * 2 * math.pi / 3 + rng.uniform(-0.15, 0.15) for k in range(3)]
        draw.polygon(_polygon(cx, cy, [radius] * 3, angles), fill=255)
    elif name == "star":
        inner = rng.uniform(0.38, 0.5)
        angles = [rot + k * math.pi / 5 for k in range(10)]
        radii = [radius if k % 2 == 0 else radius * inner for k in range(10)]
        draw.polygon(_polygon(cx, cy, radii, angles), fill=255)
    else:  # pragma: no cover - guarded by generate()
        raise ValueError(name)
    return mask


def _texture_mask(name: str, rng: np.random.Generator, canvas: int) -> Image.Image:
    """A (canvas, canvas) mask of a full-frame texture: 255 on the foreground parts."""
    angle = rng.uniform(0.0, math.pi)
    coords = np.arange(canvas, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    if name == "stripes":
        period = rng.uniform(0.12, 0.3) * canvas
        duty = rng.uniform(0.35, 0.65)
        phase = rng.uniform(0.0, period)
        on = ((u + phase) % period) < duty * period
    elif name == "checkerboard":
        cell = rng.uniform(0.09, 0.22) * canvas
        pu, pv = rng.uniform(0.0, cell, size=2)
        on = (np.floor((u + pu) / cell) + np.floor((v + pv) / cell)) % 2 == 1
    else:  # pragma: no cover - guarded by generate()
        raise ValueError(name)
    return Image.fromarray(on.astype(np.uint8) * 255, "L")


def generate(class_name: str, rng: np.random.Generator, size: int = 64, clean: bool = False) -> Image.Image:
    """One RGB image of ``class_name``, ``size`` x ``size`` pixels, drawn from ``rng``.

    ``clean=True`` skips the blur and noise (for the shipped sample images).
    """
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; choose one of {', '.join(CLASSES)}")
    canvas = size * _SUPERSAMPLE
    background, ends = _background(rng, size)
    colour = _foreground_colour(rng, ends)
    if class_name in ("stripes", "checkerboard"):
        mask = _texture_mask(class_name, rng, canvas)
    else:
        mask = _shape_mask(class_name, rng, canvas)
    # Anti-aliasing: the mask is drawn at 4x and box-filtered down to a coverage (alpha) map.
    alpha = np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float64)[..., None] / 255.0
    pixels = background * (1.0 - alpha) + colour * alpha
    image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), "RGB")
    blur = rng.random() < 0.25
    blur_radius = rng.uniform(0.3, 1.0) * size / 64
    noise_sigma = rng.uniform(0.0, 12.0) if rng.random() < 0.6 else 0.0
    if clean:
        return image
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur_radius))
    if noise_sigma > 0:
        noisy = np.asarray(image, dtype=np.float64) + rng.normal(0.0, noise_sigma, size=(size, size, 3))
        image = Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8), "RGB")
    return image


def dataset(n_per_class: int, seed: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_per_class`` images of every class: float32 (N, 3, size, size) in [0, 1] and int64 labels.

    Classes are interleaved (circle, square, ..., circle, ...). Not normalised: apply
    :data:`featviz_core.demo.net.MEAN` / ``STD`` as the model's preprocessing does.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n_per_class * len(CLASSES), size, size, 3), dtype=np.uint8)
    labels = np.empty(n_per_class * len(CLASSES), dtype=np.int64)
    i = 0
    for _ in range(n_per_class):
        for label, name in enumerate(CLASSES):
            images[i] = np.asarray(generate(name, rng, size))
            labels[i] = label
            i += 1
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return tensor, torch.from_numpy(labels)


def write_samples(directory: Path = _SAMPLES_DIR) -> list[Path]:
    """Write ``<class>.png`` for each of :data:`SAMPLE_CLASSES` (256 x 256, fixed seed) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for k, name in enumerate(SAMPLE_CLASSES):
        image = generate(name, np.random.default_rng([SAMPLE_SEED, k]), size=SAMPLE_SIZE, clean=True)
        path = directory / f"{name}.png"
        image.save(path, optimize=True)
        written.append(path)
    return written


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-samples", action="store_true", help="regenerate the shipped sample PNGs")
    parser.add_argument("--out", type=Path, default=_SAMPLES_DIR, help="where to write them")
    args = parser.parse_args(argv)
    if not args.write_samples:
        parser.print_help()
        return
    for path in write_samples(args.out):
        print(path)


if __name__ == "__main__":
    _main()
