"""featviz_core: look inside a convolutional network. A plain library (no Streamlit).

    >>> from featviz_core import load_demo, load_image, list_layers, extract
    >>> model = load_demo()
    >>> image = load_image(open("photo.jpg", "rb").read(), "photo.jpg")
    >>> layer = default_layer(model)
    >>> maps = extract(model, image, [layer]).activations[layer]        # float32 (C, H, W)
    >>> where = cam(model, image, default_cam_layer(model), method="gradcam++")
    >>> check = sanity_check(model, image, where.layer, original=where)   # does it depend on the model?

``featviz_core.cam`` is the CAM package and, called, the function ``cam``. The library is a package per
concern: ``images``, ``models`` (with ``models.sources``), ``layers``, ``cam``, ``visualize``, ``exemplars``,
``figures``, ``report``, ``demo``; each package's ``__init__`` lists its public API.
"""

from . import cam
from .attention import AttentionResult, attention
from .cam import (
    CAM_METHODS,
    CamResult,
    CamTarget,
    OutputInfo,
    SanityResult,
    default_cam_layer,
    describe_outputs,
    gradcam,
    is_classifier,
    sanity_check,
)
from .demo import load_demo, load_demo_volume
from .errors import (
    CamError,
    FeatvizError,
    ImageLoadError,
    InputKindError,
    LayerError,
    ModelLoadError,
    VisualizeError,
)
from .exemplars import Exemplars, find_exemplars
from .images import SUPPORTED_EXTENSIONS, Sample, image_digest, list_samples, load_image, sample_bytes
from .layers import (
    ActivationRecorder,
    Extraction,
    LayerInfo,
    default_layer,
    extract,
    layer_info,
    list_layers,
    spatial_layers,
)
from .models import NORMALIZATIONS, LoadedModel, Preprocessing, parse_class_names
from .models.sources import (
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
    video_models,
    weights_are_cached,
)
from .visualize import OBJECTIVES, Visualization, visualize

__version__ = "0.1.0"

__all__ = [
    "CAM_METHODS",
    "NORMALIZATIONS",
    "SUPPORTED_EXTENSIONS",
    "ActivationRecorder",
    "AttentionResult",
    "CamError",
    "CamResult",
    "CamTarget",
    "Exemplars",
    "Extraction",
    "FeatvizError",
    "ImageLoadError",
    "InputKindError",
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
    "attention",
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
    "load_demo_volume",
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
    "video_models",
    "visualize",
    "weights_are_cached",
]

