"""The one error family of featviz_core.

Every error a user can cause (a bad image, a checkpoint that does not fit, an unknown layer) is a
:class:`FeatvizError`. Its message is one or two plain sentences that say what happened and what to do
next, so the UI can show ``str(error)`` as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "FeatvizError",
    "ImageLoadError",
    "ModelLoadError",
    "LayerError",
    "StopForward",
    "CamError",
    "VisualizeError",
    "CollectionError",
    "ExemplarsError",
    "EmptyCollectionError",
    "SeriesChoiceError",
    "InputKindError",
]


class FeatvizError(Exception):
    """Base class: something the user can fix. ``str(error)`` is meant to be shown to them."""


class ImageLoadError(FeatvizError):
    """The bytes given as an image could not be turned into a picture featviz can use."""


class ModelLoadError(FeatvizError):
    """A model, its pretrained weights or an uploaded checkpoint could not be loaded."""


class LayerError(FeatvizError):
    """A layer name that the model does not have, or whose output is not a spatial feature map."""


class InputKindError(FeatvizError):
    """A picture given to a 3-D model, or a volume or clip given to a 2-D one; the message says what to pick."""


class CamError(FeatvizError):
    """A CAM cannot be computed as asked: no score to explain, a class that does not exist, a method the
    model cannot run."""

class VisualizeError(FeatvizError):
    """A feature visualization cannot be computed as asked (model, channel or settings)."""

class CollectionError(FeatvizError):
    """A collection that cannot be read at all (not a zip, too big, a folder outside the allowed one)."""

class ExemplarsError(FeatvizError):
    """Exemplars that cannot be computed, shown or read (with a sentence saying what to do)."""

class EmptyCollectionError(ExemplarsError):
    """The collection holds no image featviz could read. ``failed`` lists (file, reason) when there were files."""

    def __init__(self, message: str, failed: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.failed = tuple(failed)


class SeriesChoiceError(ImageLoadError):
    """A zip holds several DICOM series and none was chosen: ``series`` lists them (``SeriesInfo``: pass one's
    ``uid`` as ``load_volume(..., series=uid)``)."""

    def __init__(self, message: str, series: Sequence[Any]) -> None:
        super().__init__(message)
        self.series: tuple[Any, ...] = tuple(series)


class StopForward(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by a hook once everything wanted from a forward pass is recorded: the rest of the network is not
    run. A ``BaseException``, so a model's own ``except Exception`` cannot swallow it; never shown to a user."""
