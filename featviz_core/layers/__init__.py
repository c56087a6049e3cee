"""A model's layers: which module calls there are and which give feature maps (:mod:`.discovery`), how an output
becomes a map (:mod:`.layout`: channels-first, channels-last, a vision transformer's tokens on its patch grid, read
from what the model says in :mod:`.patch_grid`), the one owner of forward hooks (:mod:`.hooks`), extraction of
maps (:mod:`.extract`), the receptive field of a unit (:mod:`.receptive_field`) and convolution weights
(:mod:`.filters`)."""

from .discovery import LayerInfo, as_chw, default_layer, layer_info, list_layers, spatial_layers, token_blocks
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
from .layout import MapLayout, from_chw, prefix_tokens, to_chw
from .patch_grid import TokenGrid, token_grid

__all__ = [
    "ActivationRecorder",
    "Extraction",
    "LayerInfo",
    "MapLayout",
    "StopForward",
    "Tap",
    "TokenGrid",
    "as_chw",
    "call_name",
    "default_layer",
    "extract",
    "from_chw",
    "hook_count",
    "layer_info",
    "list_layers",
    "parse_layer_name",
    "prefix_tokens",
    "probabilities_from_output",
    "spatial_layers",
    "to_chw",
    "token_blocks",
    "token_grid",
    "trace_forward",
]
