"""The sample images shipped with featviz, so there is always something to look at.

Four CC0 photos (from scikit-image's data folder) for the ImageNet models, and generated shapes (drawn by
:mod:`featviz_core.demo.shapes`, CC0) for the offline demo model. Their provenance is in
``featviz_core/images/assets/samples/LICENSES.md``.

    >>> from featviz_core.images.samples import default_sample, sample_bytes
    >>> data = sample_bytes(default_sample(for_demo=True))   # PNG bytes of a generated star
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ImageLoadError

__all__ = [
    "SAMPLES_DIR",
    "Sample",
    "default_sample",
    "list_samples",
    "sample_bytes",
    "sample_path",
]

SAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "samples"
"""Where the sample files and their ``LICENSES.md`` live."""


@dataclass(frozen=True)
class Sample:
    """One shipped sample image. ``name`` is a stable id (``"chelsea"``), ``title`` is for people."""

    name: str
    title: str
    filename: str
    description: str
    kind: Literal["photo", "demo"]


def _shape(name: str, what: str) -> Sample:
    return Sample(
        name=name,
        title=f"{name.capitalize()} (generated)",
        filename=f"{name}.png",
        description=f"A generated {what}, one of the demo model's classes — CC0, made by featviz.",
        kind="demo",
    )


_SAMPLES: tuple[Sample, ...] = (
    Sample(
        "chelsea", "Cat (Chelsea)", "chelsea.png", "A photo of a cat — CC0, Stefan van der Walt.", "photo"
    ),
    Sample(
        "retina",
        "Retina (fundus photo)",
        "retina.jpg",
        "A fundus photograph of a normal left eye — CC0, Mikael Häggström.",
        "photo",
    ),
    Sample(
        "camera",
        "Cameraman (grey photo)",
        "camera.png",
        "A grey-level photo of a man with a camera — CC0, Lav Varshney.",
        "photo",
    ),
    Sample(
        "brick",
        "Brick wall (texture)",
        "brick.png",
        "A grey photo of a brick wall — CC0, CC0Textures.",
        "photo",
    ),
    _shape("star", "star"),
    _shape("stripes", "striped pattern"),
    _shape("checkerboard", "checkerboard pattern"),
    _shape("circle", "circle"),
)
_BY_NAME = {s.name: s for s in _SAMPLES}


def list_samples() -> list[Sample]:
    """Every shipped sample: the photos first, then the generated shapes."""
    return list(_SAMPLES)


def _get(name: str) -> Sample:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ImageLoadError(
            f"There is no sample image called '{name}'. Choose one of: {', '.join(_BY_NAME)}."
        ) from None


def sample_path(name: str) -> Path:
    """The file of sample ``name``. Unknown name -> :class:`ImageLoadError` listing the names."""
    return SAMPLES_DIR / _get(name).filename


def sample_bytes(name: str) -> bytes:
    """The bytes of sample ``name`` (as an upload would give them, for ``load_image``)."""
    path = sample_path(name)
    try:
        return path.read_bytes()
    except OSError:
        raise ImageLoadError(
            f"The sample image '{name}' is missing from this installation ({path}). Reinstall featviz."
        ) from None


def default_sample(for_demo: bool) -> str:
    """The sample to show first: a generated star for the demo model, the cat photo for ImageNet models."""
    return "star" if for_demo else "chelsea"
