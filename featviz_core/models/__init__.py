"""Models: :class:`LoadedModel` (what every source produces and every page, job and method takes), its exact
preprocessing (:mod:`.loaded`), where it runs (:mod:`.device`), class names (:mod:`.class_names`) and the
sources that build it (:mod:`.sources`: torchvision, timm, checkpoints, ONNX, code; one model string for all)."""

from .class_names import parse_class_names
from .device import choose_device, describe_device, place
from .loaded import (
    NORMALIZATION_LABELS,
    NORMALIZATIONS,
    LoadedModel,
    Normalizer,
    Preprocessing,
    cover_view,
    standard_preprocessing,
    view_transform,
)

__all__ = [
    "NORMALIZATIONS",
    "NORMALIZATION_LABELS",
    "LoadedModel",
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
