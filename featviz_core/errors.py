"""The one error family of featviz_core.

Every error a user can cause (a bad image, a checkpoint that does not fit, an unknown layer) is a
:class:`FeatvizError`. Its message is one or two plain sentences that say what happened and what to do
next, so the UI can show ``str(error)`` as it is.
"""

from __future__ import annotations

__all__ = [
    "FeatvizError",
    "ImageLoadError",
    "ModelLoadError",
    "LayerError",
]


class FeatvizError(Exception):
    """Base class: something the user can fix. ``str(error)`` is meant to be shown to them."""


class ImageLoadError(FeatvizError):
    """The bytes given as an image could not be turned into a picture featviz can use."""


class ModelLoadError(FeatvizError):
    """A model, its pretrained weights or an uploaded checkpoint could not be loaded."""


class LayerError(FeatvizError):
    """A layer name that the model does not have, or whose output is not a spatial feature map."""
