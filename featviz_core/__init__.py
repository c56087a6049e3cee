"""featviz_core: look inside a convolutional network. A plain library (no Streamlit).

    >>> from featviz_core import load_demo, load_image, list_layers, extract
    >>> model = load_demo()
    >>> maps = extract(model, image, ["block2.relu2"]).activations["block2.relu2"]   # float32 (C, H, W)
"""

from .errors import FeatvizError, ImageLoadError, LayerError, ModelLoadError
from .extract import Extraction, extract
from .hooks import ActivationRecorder, LayerInfo, default_layer, layer_info, list_layers, spatial_layers
from .models import LoadedModel, classification_models, load_torchvision, weights_are_cached

__all__ = [
    "ActivationRecorder",
    "Extraction",
    "FeatvizError",
    "ImageLoadError",
    "LayerError",
    "LayerInfo",
    "LoadedModel",
    "ModelLoadError",
    "classification_models",
    "default_layer",
    "extract",
    "layer_info",
    "list_layers",
    "load_torchvision",
    "spatial_layers",
    "weights_are_cached",
]
