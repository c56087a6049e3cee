"""The public CAM functions: :func:`cam` (any method by name), :func:`gradcam`, and :func:`default_cam_layer`,
the usual layer to explain."""

from __future__ import annotations

import math

from PIL import Image

from ..errors import LayerError
from ..images.volume import Volume
from ..layers.discovery import LayerInfo, list_layers, token_blocks
from ..models.loaded import LoadedModel
from .base import CamResult, Progress
from .methods import method_class
from .targets import CamTarget

__all__ = ["cam", "default_cam_layer", "gradcam"]


def cam(
    model: LoadedModel,
    image: Image.Image | Volume,
    layer: str,
    class_index: int | None = None,
    method: str = "gradcam",
    *,
    target: CamTarget | None = None,
    progress: Progress | None = None,
) -> CamResult:
    """The ``method`` map (a name of :data:`~featviz_core.cam.methods.CAM_METHODS`) of ``class_index``
    (default: the most probable class), or of ``target`` for a model that is not a classifier, at ``layer``.
    A 3-D model takes a :class:`~featviz_core.images.volume.Volume` and gives a (d, h, w) map.

    ``layer`` is a name from :func:`~featviz_core.layers.hooks.list_layers` whose output is a feature map
    (:class:`LayerError` otherwise; :func:`default_cam_layer` gives a good one). No score to explain, a class
    out of range, an unknown method, or a gradient method on a model without gradients raise
    :class:`CamError`. ``progress(done, total, None)`` follows the forward passes of the slow methods
    (Score-CAM); whatever it raises stops the computation cleanly. The model is left exactly as it was: no
    hook, no ``.grad``, same ``requires_grad`` and ``training`` flags, lock released.
    """
    return method_class(method)(model, layer, progress=progress).run(image, class_index, target)


def gradcam(
    model: LoadedModel,
    image: Image.Image | Volume,
    layer: str,
    class_index: int | None = None,
) -> CamResult:
    """Grad-CAM of ``class_index`` (default: the most probable class) at ``layer`` for ``image``:
    ``cam(model, image, layer, class_index, "gradcam")``."""
    return cam(model, image, layer, class_index, "gradcam")


def _is_pooling(info: LayerInfo) -> bool:
    return "Pool" in info.type  # MaxPool2d, AdaptiveAvgPool2d, ...


def _has_area(info: LayerInfo) -> bool:
    """A feature map (C, H, W) or (C, D, H, W) with more than one place."""
    shape = info.shape
    return info.spatial and shape is not None and len(shape) >= 3 and math.prod(shape[1:]) > 1


def _transformer_cam_layer(model: LoadedModel) -> str | None:
    """For a vision transformer: the first normalisation inside its last block (timm's ``blocks.11.norm1``,
    Hugging Face's ``layernorm_before``), the usual choice since the final norm and the class token alone
    carry no gradient for the patches; the block itself when it has none. None for other models."""
    blocks = token_blocks(model)
    if len(blocks) < 2:
        return None
    last = blocks[-1]
    inside = [
        i for i in list_layers(model)
        if i.module_name.startswith(last.module_name + ".") and i.tokens and i.calls > 0
    ]
    norms = [i for i in inside if "Norm" in i.type]
    return norms[0].name if norms else last.name


def default_cam_layer(model: LoadedModel) -> str:
    """The usual Grad-CAM layer: the output of the feature extractor, the last feature map before pooling.

    Among the layers whose output is a feature map larger than 1×1 and that are not pooling layers, take the
    one that starts last in the forward pass, then its outermost enclosing module whose output is still such
    a feature map (that module finishes last): ``layer4`` for ResNets, ``features`` for VGG, MobileNet,
    EfficientNet and DenseNet, ``Mixed_7c`` for Inception v3. For a vision transformer (token maps) the
    first norm of its last block, ``blocks.11.norm1`` (as pytorch-grad-cam's documentation suggests). Raises
    :class:`LayerError` when the model has no feature map at all.
    """
    transformer = _transformer_cam_layer(model)
    if transformer is not None:
        return transformer
    infos = [i for i in list_layers(model) if i.spatial and i.calls > 0]
    if not infos:
        raise LayerError(f"{model.name} has no layer that outputs feature maps (channels × height × width).")
    candidates = [i for i in infos if _has_area(i) and not _is_pooling(i)] or [
        i for i in infos if _has_area(i)
    ]
    if not candidates:
        return infos[-1].name
    order = {info.name: position for position, info in enumerate(list_layers(model))}
    last = candidates[-1]
    best = last
    ancestors: set[str] = set()
    parts = last.module_name.split(".")
    for depth in range(1, len(parts)):
        ancestors.add(".".join(parts[:depth]))
    # The enclosing call of an ancestor is its last call that starts before ``last``.
    enclosing: dict[str, LayerInfo] = {}
    for info in candidates:
        if info.module_name in ancestors and order[info.name] < order[last.name]:
            enclosing[info.module_name] = info
    if enclosing:
        best = min(enclosing.values(), key=lambda info: info.depth)
    return best.name
