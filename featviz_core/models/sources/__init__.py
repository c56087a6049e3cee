"""Model sources: each turns something a user has into a :class:`~featviz_core.models.loaded.LoadedModel`.

| source        | function                 | what it takes                                                        |
|---------------|--------------------------|----------------------------------------------------------------------|
| torchvision   | :func:`load_torchvision` | an architecture name, pretrained weights from download.pytorch.org   |
| timm          | :func:`load_timm`        | an architecture or weight tag, pretrained weights from Hugging Face  |
| checkpoint    | :func:`load_checkpoint`  | a state dict / training checkpoint / safetensors file's bytes        |
| onnx          | :func:`load_onnx`        | an ONNX file's bytes (PyTorch, Keras/tf2onnx, Paddle exports)        |
| hf            | :func:`load_hf`          | a transformers image model: a hub id, or a zip of its saved folder   |
| code          | :func:`load_from_code`   | ``package.module:factory`` (command line of a local run only)        |
|               | :func:`load_module`      | an ``nn.Module`` in memory (``featviz.show(model)`` in a notebook)   |
| demo          | :func:`~featviz_core.demo.load_demo` | nothing: the bundled offline model                       |
|               | :func:`~featviz_core.demo.load_demo_volume` | nothing: the bundled offline 3-D model (volumes)  |

Nothing downstream asks which source a model came from: ``LoadedModel.source`` (a :class:`~featviz_core.models.ModelSource`)
says it for display, and pages read capabilities (``has_random_weights``, ``takes_class_names``, ``supports_gradients``).
"""

from .checkpoint import load_checkpoint
from .code import load_from_code, load_module
from .hf import download_hf, hf_cached, load_hf
from .onnx import OnnxInfo, inspect_onnx, load_onnx
from .spec import load_spec
from .timm import download_timm_weights, load_timm, timm_weights_cached
from .torchvision import (
    architecture_info,
    classification_models,
    download_weights,
    is_convolutional,
    load_torchvision,
    video_models,
    weights_are_cached,
    weights_cache_path,
)

__all__ = [
    "OnnxInfo",
    "architecture_info",
    "classification_models",
    "download_timm_weights",
    "download_hf",
    "download_weights",
    "hf_cached",
    "inspect_onnx",
    "is_convolutional",
    "load_checkpoint",
    "load_from_code",
    "load_hf",
    "load_module",
    "load_onnx",
    "load_spec",
    "load_timm",
    "load_torchvision",
    "timm_weights_cached",
    "video_models",
    "weights_are_cached",
    "weights_cache_path",
]
