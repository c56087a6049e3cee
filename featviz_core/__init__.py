"""featviz_core: look inside a convolutional network. A plain library (no Streamlit).

    >>> from featviz_core import load_demo, load_image, list_layers, extract
    >>> model = load_demo()
    >>> image = load_image(open("photo.jpg", "rb").read(), "photo.jpg")
    >>> layer = default_layer(model)
    >>> maps = extract(model, image, [layer]).activations[layer]        # float32 (C, H, W)
"""

from .cam import CamError, CamResult, default_cam_layer, gradcam
from .class_names import parse_class_names
from .demo import load_demo
from .errors import FeatvizError, ImageLoadError, LayerError, ModelLoadError
from .extract import Extraction, extract
from .hooks import ActivationRecorder, LayerInfo, default_layer, layer_info, list_layers, spatial_layers
from .images import SUPPORTED_EXTENSIONS, image_digest, load_image
from .models import NORMALIZATIONS, LoadedModel, Preprocessing
from .samples import Sample, list_samples, sample_bytes
from .sources import (
    OnnxInfo,
    architecture_info,
    classification_models,
    download_timm_weights,
    download_weights,
    inspect_onnx,
    load_checkpoint,
    load_from_code,
    load_onnx,
    load_spec,
    load_timm,
    load_torchvision,
    timm_weights_cached,
    weights_are_cached,
)

__all__ = [
    "NORMALIZATIONS",
    "SUPPORTED_EXTENSIONS",
    "ActivationRecorder",
    "CamError",
    "CamResult",
    "Extraction",
    "FeatvizError",
    "ImageLoadError",
    "LayerError",
    "LayerInfo",
    "LoadedModel",
    "ModelLoadError",
    "Preprocessing",
    "OnnxInfo",
    "Sample",
    "architecture_info",
    "classification_models",
    "default_cam_layer",
    "default_layer",
    "download_timm_weights",
    "download_weights",
    "extract",
    "gradcam",
    "image_digest",
    "inspect_onnx",
    "layer_info",
    "list_layers",
    "list_samples",
    "load_checkpoint",
    "load_demo",
    "load_from_code",
    "load_image",
    "load_spec",
    "load_timm",
    "load_onnx",
    "load_torchvision",
    "parse_class_names",
    "sample_bytes",
    "spatial_layers",
    "timm_weights_cached",
    "weights_are_cached",
]
