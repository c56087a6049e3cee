"""featviz_core: look inside a convolutional network. A plain library (no Streamlit).

    >>> from featviz_core import load_demo, load_image, list_layers, extract
    >>> model = load_demo()
    >>> image = load_image(open("photo.jpg", "rb").read(), "photo.jpg")
    >>> layer = default_layer(model)
    >>> maps = extract(model, image, [layer]).activations[layer]        # float32 (C, H, W)
    >>> where = cam(model, image, default_cam_layer(model), method="gradcam++")
    >>> check = sanity_check(model, image, where.layer, original=where)   # does it depend on the model?

``featviz_core.cam`` is the function; import the module's names with ``from featviz_core.cam import ...``.
"""

from .cam import CamError, CamResult, default_cam_layer, gradcam
from .cam import cam as cam
from .cam_methods import CAM_METHODS
from .cam_targets import CamTarget, OutputInfo, describe_outputs, is_classifier
from .class_names import parse_class_names
from .demo import load_demo
from .errors import FeatvizError, ImageLoadError, LayerError, ModelLoadError
from .extract import Extraction, extract
from .hooks import ActivationRecorder, LayerInfo, default_layer, layer_info, list_layers, spatial_layers
from .images import SUPPORTED_EXTENSIONS, image_digest, load_image
from .models import NORMALIZATIONS, LoadedModel, Preprocessing
from .samples import Sample, list_samples, sample_bytes
from .sanity import SanityResult, sanity_check
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
from .visualize import OBJECTIVES, Visualization, VisualizeError, visualize

__version__ = "0.1.0"

__all__ = [
    "CAM_METHODS",
    "NORMALIZATIONS",
    "SUPPORTED_EXTENSIONS",
    "ActivationRecorder",
    "CamError",
    "CamResult",
    "CamTarget",
    "Exemplars",
    "Extraction",
    "FeatvizError",
    "ImageLoadError",
    "LayerError",
    "LayerInfo",
    "LoadedModel",
    "ModelLoadError",
    "OBJECTIVES",
    "OutputInfo",
    "Preprocessing",
    "OnnxInfo",
    "Sample",
    "Visualization",
    "VisualizeError",
    "SanityResult",
    "architecture_info",
    "classification_models",
    "cam",
    "default_cam_layer",
    "describe_outputs",
    "default_layer",
    "download_timm_weights",
    "download_weights",
    "extract",
    "find_exemplars",
    "gradcam",
    "image_digest",
    "inspect_onnx",
    "is_classifier",
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
    "sanity_check",
    "spatial_layers",
    "timm_weights_cached",
    "visualize",
    "weights_are_cached",
]


def __getattr__(name: str) -> object:
    # Exemplars are imported on first use, so that ``python -m featviz_core.exemplars`` runs that module as
    # the program without a second copy of it already imported by the package.
    if name in ("Exemplars", "find_exemplars"):
        from . import exemplars

        return getattr(exemplars, name)
    raise AttributeError(f"module 'featviz_core' has no attribute {name!r}")
