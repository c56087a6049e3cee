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
    architecture_info,
    classification_models,
    download_timm_weights,
    download_weights,
    load_checkpoint,
    load_from_code,
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
    "Exemplars",
    "Extraction",
    "FeatvizError",
    "ImageLoadError",
    "LayerError",
    "LayerInfo",
    "LoadedModel",
    "ModelLoadError",
    "Preprocessing",
    "Sample",
    "architecture_info",
    "classification_models",
    "default_cam_layer",
    "default_layer",
    "download_timm_weights",
    "download_weights",
    "extract",
    "find_exemplars",
    "gradcam",
    "image_digest",
    "layer_info",
    "list_layers",
    "list_samples",
    "load_checkpoint",
    "load_demo",
    "load_from_code",
    "load_image",
    "load_spec",
    "load_timm",
    "load_torchvision",
    "parse_class_names",
    "sample_bytes",
    "spatial_layers",
    "timm_weights_cached",
    "weights_are_cached",
]


def __getattr__(name: str) -> object:
    # Exemplars are imported on first use, so that ``python -m featviz_core.exemplars`` runs that module as
    # the program without a second copy of it already imported by the package.
    if name in ("Exemplars", "find_exemplars"):
        from . import exemplars

        return getattr(exemplars, name)
    raise AttributeError(f"module 'featviz_core' has no attribute {name!r}")
