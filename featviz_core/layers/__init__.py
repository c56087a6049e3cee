"""A model's layers: which module calls there are and which give feature maps (:mod:`.discovery`), the one owner
of forward hooks (:mod:`.hooks`), extraction of maps (:mod:`.extract`), the receptive field of a unit
(:mod:`.receptive_field`) and convolution weights (:mod:`.filters`)."""

from .discovery import LayerInfo, as_chw, default_layer, layer_info, list_layers, spatial_layers
from .extract import Extraction, extract, probabilities_from_output
from .hooks import (
    ActivationRecorder,
    StopForward,
    Tap,
    call_name,
    hook_count,
    parse_layer_name,
    trace_forward,
)

__all__ = [
    "ActivationRecorder",
    "Extraction",
    "LayerInfo",
    "StopForward",
    "Tap",
    "as_chw",
    "call_name",
    "default_layer",
    "extract",
    "hook_count",
    "layer_info",
    "list_layers",
    "parse_layer_name",
    "probabilities_from_output",
    "spatial_layers",
    "trace_forward",
]
