"""Models: :class:`LoadedModel` (what every source produces and every page, job and method takes), its exact
preprocessing and its :class:`ModelSource` (:mod:`.loaded`), where it runs (:mod:`.device`), class names
(:mod:`.class_names`), the one model string for all sources (:class:`ModelSpec`, :mod:`.spec`), the models' cache
keys (:mod:`.keys`) and the sources that build them (:mod:`.sources`: torchvision, timm, checkpoints, ONNX, code)."""

from .class_names import parse_class_names
from .device import choose_device, describe_device, place
from .loaded import (
    NORMALIZATION_LABELS,
    NORMALIZATIONS,
    LoadedModel,
    ModelSource,
    Normalizer,
    Preprocessing,
    cover_view,
    standard_preprocessing,
    view_transform,
)
from .spec import ModelSpec

__all__ = [
    "NORMALIZATIONS",
    "NORMALIZATION_LABELS",
    "LoadedModel",
    "ModelSource",
    "ModelSpec",
    "Normalizer",
    "Preprocessing",
    "choose_device",
    "cover_view",
    "describe_device",
    "parse_class_names",
    "place",
    "standard_preprocessing",
    "view_transform",
]
