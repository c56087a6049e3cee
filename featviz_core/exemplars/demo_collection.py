"""The bundled collection: exemplars with nothing to upload, offline.

The shipped sample images (:mod:`featviz_core.images.samples`: four CC0 photos and four drawn shapes) and
:data:`PER_CLASS` pictures of each of the demo model's six classes (circle, square, triangle, star, stripes,
checkerboard), drawn by :mod:`featviz_core.demo.shapes` from a fixed seed. Only the names are made up front: a
drawn picture is made (as PNG bytes, in memory) when it is read, so opening the collection costs nothing and
nothing is written to disk or fetched. The same name always gives the same pixels.

    >>> from featviz_core.exemplars import demo_collection, find_exemplars
    >>> result = find_exemplars(load_demo(), "block2.relu1", demo_collection())
"""

from __future__ import annotations

import functools
import hashlib
import io
import re

import numpy as np
from PIL import Image

from ..demo.shapes import CLASSES, generate
from ..errors import CollectionError
from ..images.collection import Collection
from ..images.samples import list_samples, sample_bytes

__all__ = [
    "DEMO_COLLECTION_LABEL",
    "DEMO_SEED",
    "PER_CLASS",
    "PICTURE_SIZE",
    "PROVENANCE",
    "demo_collection",
    "demo_picture",
    "provenance",
]

DEMO_SEED = 2222
"""The seed of the drawn pictures (each picture has its own stream: ``[DEMO_SEED, class, number]``)."""
PER_CLASS = 30
"""Drawn pictures per class of the demo model."""
PICTURE_SIZE = 96
"""Height and width of a drawn picture, in pixels."""
DEMO_COLLECTION_LABEL = "the bundled examples"
PROVENANCE = (
    "Pictures that come with featviz: its sample images (CC0 photos of a cat, a retina, a cameraman and a brick "
    "wall, and four drawn shapes) and {drawn} pictures of the demo model's six shapes and textures, drawn from a "
    "fixed seed (CC0). They are made on this computer: nothing is uploaded or downloaded."
)
"""A caption saying where the pictures come from and under which licence (``{drawn}``: how many are drawn)."""

_DRAWN = re.compile(r"^shapes/(?P<cls>[a-z]+)_(?P<number>\d{2,})\.png$")


def _drawn_name(class_name: str, number: int, per_class: int) -> str:
    """``shapes/star_07.png``: short, so that the page's captions show it whole."""
    return f"shapes/{class_name}_{number:0{max(2, len(str(per_class - 1)))}d}.png"


def demo_picture(class_name: str, number: int, size: int = PICTURE_SIZE) -> Image.Image:
    """The drawn picture ``number`` of ``class_name`` (a PIL RGB image), the same every time."""
    if class_name not in CLASSES:
        raise CollectionError(f"The demo model has no class '{class_name}'; choose one of {', '.join(CLASSES)}.")
    rng = np.random.default_rng([DEMO_SEED, CLASSES.index(class_name), number])
    return generate(class_name, rng, size)


class _DemoReader:
    """Reads the samples from the package, and draws the shapes when asked (picklable: it holds only numbers)."""

    def __init__(self, per_class: int, size: int, samples: dict[str, str]) -> None:
        self.per_class, self.size, self.samples = per_class, size, samples

    def read(self, name: str) -> bytes:
        if name in self.samples:
            return sample_bytes(self.samples[name])
        match = _DRAWN.match(name)
        if (match is None or match["cls"] not in CLASSES or int(match["number"]) >= self.per_class
                or name != _drawn_name(match["cls"], int(match["number"]), self.per_class)):
            raise CollectionError(f"{name} is not one of the bundled examples.")
        buffer = io.BytesIO()
        demo_picture(match["cls"], int(match["number"]), self.size).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


@functools.lru_cache(maxsize=4)
def demo_collection(per_class: int = PER_CLASS, size: int = PICTURE_SIZE) -> Collection:
    """The bundled collection: the sample images (``samples/<file>``) then ``per_class`` drawn pictures of each
    demo class (``shapes/<class>_<nn>.png``, ``size`` pixels square, classes interleaved so any first part of
    it holds every class). Its key depends on the samples' bytes, the seed, the size and the count."""
    if per_class < 0 or size < 16:
        raise CollectionError("Ask for at least 0 drawn pictures per class, of at least 16 pixels.")
    samples = {f"samples/{s.filename}": s.name for s in list_samples()}
    drawn = [_drawn_name(c, n, per_class) for n in range(per_class) for c in CLASSES]
    digest = hashlib.sha256(f"demo-collection v1 seed={DEMO_SEED} size={size} per_class={per_class}".encode())
    for name, sample in samples.items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(sample_bytes(sample)).digest())
    return Collection(names=(*samples, *drawn), key="demo:" + digest.hexdigest(), label=DEMO_COLLECTION_LABEL,
                      _reader=_DemoReader(per_class, size, samples))


def provenance(collection: Collection | None = None) -> str:
    """:data:`PROVENANCE` filled in for ``collection`` (default: :func:`demo_collection`)."""
    collection = collection or demo_collection()
    drawn = sum(1 for name in collection.names if name.startswith("shapes/"))
    return PROVENANCE.format(drawn=drawn)
