"""Grad-CAM: which places of a layer's feature maps drive one class score.

Standard Grad-CAM (Selvaraju et al., 2017): with ``A`` the layer's activation (C, h, w) and ``y_c`` the
class *logit* (before softmax), the weight of channel ``k`` is ``alpha_k = mean_ij d y_c / d A_k[i, j]`` and
the map is ``ReLU(sum_k alpha_k A_k)``, at the layer's resolution.

How it is computed, and why:

* under the model's lock, in eval mode, inside an :class:`~featviz_core.hooks.ActivationRecorder` that
  restores every ``training`` flag and releases the lock whatever happens;
* one forward hook on the chosen call of the layer (removed in ``finally``). It keeps ``A`` as a fresh leaf
  tensor that requires grad and *returns a copy of it* as the layer's output: the rest of the network
  computes on the copy, so an in-place operation after the layer (torchvision's ``ReLU(inplace=True)``
  right after a ``bn``) can neither change the recorded ``A`` nor break autograd;
* the part of the forward pass before the layer runs without autograd (nothing before the layer is needed
  for ``d y_c / d A``); the hook switches autograd on for the rest, and the ``no_grad`` context restores the
  caller's mode on exit;
* the gradient is ``torch.autograd.grad(y_c, A)``: nothing is accumulated into any parameter's ``.grad``,
  and no parameter's ``requires_grad`` is touched. This also works for a model whose parameters are all
  frozen.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .errors import FeatvizError, LayerError
from .hooks import ActivationRecorder, LayerInfo, as_chw, layer_info, list_layers, parse_layer_name
from .models import LoadedModel

__all__ = ["CamError", "CamResult", "default_cam_layer", "gradcam", "upsample"]


class CamError(FeatvizError):
    """Grad-CAM cannot be computed as asked: the model is not a classifier, or the class does not exist."""


@dataclass(frozen=True, eq=False)
class CamResult:
    """One Grad-CAM map and what it was computed for. Arrays are float32 and read-only.

    ``cam`` is the raw map ``ReLU(sum_k alpha_k A_k)`` (h, w) at the layer's resolution, not normalised, so
    maps of different classes or images can be compared on one scale. ``normalized`` is ``cam / cam.max()``
    (all zeros when the map is zero everywhere, i.e. no place of this layer speaks for the class).
    ``weights`` are the channel weights ``alpha_k`` (C,). ``activations_mean`` is the layer's activation
    averaged over channels (h, w): "what fires", beside the map's "what drives this class".
    ``score`` is the class logit ``y_c``; ``probability`` its softmax probability.
    """

    cam: np.ndarray
    normalized: np.ndarray
    class_index: int
    class_name: str
    probability: float
    probabilities: np.ndarray
    layer: str
    activations_mean: np.ndarray
    weights: np.ndarray
    score: float

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the map: the layer's spatial resolution."""
        return (int(self.cam.shape[0]), int(self.cam.shape[1]))


# ---------------------------------------------------------------------------------------------------
# The hook


class _Tap:
    """What the hook saw: the layer's activation as a leaf tensor that requires grad."""

    def __init__(self) -> None:
        self.activation: torch.Tensor | None = None
        self.calls = 0


@contextmanager
def _tap_layer(module: nn.Module, layer: str) -> Iterator[_Tap]:
    """Register the Grad-CAM hook on call ``#n`` of ``layer`` and remove it in ``finally``.

    The hook detaches the layer's output into a leaf that requires grad (kept in the tap), switches autograd
    on for the rest of the forward pass, and returns a copy of the leaf as the layer's output, so later
    in-place operations change the copy, never the recorded activation.
    """
    module_name, call = parse_layer_name(layer)
    target = dict(module.named_modules())[module_name]
    tap = _Tap()

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        tap.calls += 1
        if tap.calls != call or not isinstance(output, torch.Tensor):
            return None
        leaf = output.detach().requires_grad_(True)
        tap.activation = leaf
        torch.set_grad_enabled(True)  # restored by the caller's ``torch.no_grad()`` on exit
        return leaf.clone()

    handle = target.register_forward_hook(hook)
    try:
        yield tap
    finally:
        handle.remove()


# ---------------------------------------------------------------------------------------------------
# Public functions


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    array.flags.writeable = False
    return array


def _check_logits(model: LoadedModel, output: Any) -> torch.Tensor:
    if not (
        isinstance(output, torch.Tensor) and output.ndim == 2 and output.shape[0] == 1 and output.shape[1] > 1
    ):
        what = (
            f"a tensor of shape {tuple(output.shape)}"
            if isinstance(output, torch.Tensor)
            else f"a {type(output).__name__}"
        )
        raise CamError(
            f"Grad-CAM needs a classifier whose output is one vector of class scores (1, K); {model.name} "
            f"gives {what}. Use the feature-map view for this model instead."
        )
    return output


def _check_class(index: Any, classes: int) -> int:
    try:
        if isinstance(index, bool):
            raise TypeError
        value = operator.index(index)
    except TypeError:
        raise CamError(f"The class must be a whole number from 0 to {classes - 1}, not {index!r}.") from None
    if not 0 <= value < classes:
        raise CamError(
            f"Class {value} does not exist: this model has {classes} classes, numbered 0 to {classes - 1}."
        )
    return value


def gradcam(
    model: LoadedModel,
    image: Image.Image,
    layer: str,
    class_index: int | None = None,
) -> CamResult:
    """Grad-CAM of ``class_index`` (default: the most probable class) at ``layer`` for ``image``.

    ``layer`` is a name from :func:`~featviz_core.hooks.list_layers` whose output is a feature map
    (:class:`LayerError` otherwise; :func:`default_cam_layer` gives a good one). A model whose output is not
    one vector of class logits, or a class index out of range, raises :class:`CamError`. The model is left
    exactly as it was: no hook, no ``.grad``, same ``requires_grad`` and ``training`` flags, lock released.
    """
    if not model.supports_gradients:
        raise CamError(
            f"Grad-CAM needs gradients, and {model.name} runs outside PyTorch's autograd (its description "
            "says why); the feature-map pages work for this model."
        )
    info = layer_info(model, layer, spatial=True)
    # ``inference_mode(False)``: this also works when the caller is inside ``torch.inference_mode()``.
    with torch.inference_mode(False), torch.no_grad():
        tensor = model.preprocess(image).detach()
        with (
            ActivationRecorder(model.module, [], lock=model.lock),  # lock, eval mode, flags restored
            _tap_layer(model.module, layer) as tap,
        ):
            output = model.module(tensor)
        # The backward pass below runs outside the lock: it only reads the graph and the parameters, so
        # another session can already run its forward pass.
        activation = tap.activation
        if activation is None:
            raise LayerError(
                f"Layer '{layer}' did not run for this image; choose another from list_layers(model)."
            )
        logits = _check_logits(model, output)
        classes = int(logits.shape[1])
        index = (
            int(torch.argmax(logits[0]).item()) if class_index is None else _check_class(class_index, classes)
        )
        score = logits[0, index]
        if not score.requires_grad:
            raise CamError(
                f"The score of class {index} does not depend on layer '{layer}' through operations autograd "
                "can follow; choose a layer nearer the output from list_layers(model)."
            )
        (grad,) = torch.autograd.grad(score, activation, allow_unused=True)
        if grad is None:
            raise CamError(
                f"The class scores of {model.name} do not depend on layer '{layer}'; choose a layer that "
                "feeds the classifier from list_layers(model)."
            )
        score_value = float(score.detach())
        # The same softmax as extract(), so both pages show the same probabilities.
        probabilities = torch.softmax(logits.detach().to(torch.float32), dim=1)[0].numpy()
        a = as_chw(activation.detach(), info)[0].to(torch.float64)
        alphas = as_chw(grad.detach(), info)[0].to(torch.float64).mean(dim=(1, 2))
        cam = torch.relu(torch.einsum("k,khw->hw", alphas, a)).numpy()
        activations_mean = a.mean(dim=0).numpy()
        del output, logits, score, grad, activation, tap
    peak = float(cam.max()) if cam.size else 0.0
    normalized = cam / peak if peak > 0 else np.zeros_like(cam)
    return CamResult(
        cam=_readonly(cam),
        normalized=_readonly(normalized),
        class_index=index,
        class_name=model.category(index),
        probability=float(probabilities[index]),
        probabilities=_readonly(probabilities),
        layer=layer,
        activations_mean=_readonly(activations_mean),
        weights=_readonly(alphas.numpy()),
        score=score_value,
    )


def _is_pooling(info: LayerInfo) -> bool:
    return "Pool" in info.type  # MaxPool2d, AdaptiveAvgPool2d, ...


def _has_area(info: LayerInfo) -> bool:
    return (
        info.spatial and info.shape is not None and len(info.shape) == 3 and info.shape[1] * info.shape[2] > 1
    )


def default_cam_layer(model: LoadedModel) -> str:
    """The usual Grad-CAM layer: the output of the feature extractor, the last feature map before pooling.

    Among the layers whose output is a feature map larger than 1×1 and that are not pooling layers, take the
    one that starts last in the forward pass, then its outermost enclosing module whose output is still such
    a feature map (that module finishes last): ``layer4`` for ResNets, ``features`` for VGG, MobileNet,
    EfficientNet and DenseNet, ``Mixed_7c`` for Inception v3. Raises :class:`LayerError` when the model has
    no feature map at all.
    """
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


def upsample(map2d: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``map2d`` (h, w) resized to ``size`` = (H, W) bilinearly (``align_corners=False``), as float32.

    For overlays and exports: the map is stretched over the image the model saw (``model.model_view``).
    """
    array = np.asarray(map2d, dtype=np.float32)
    if array.ndim != 2:
        raise FeatvizError(
            f"upsample takes one 2-D map (height × width), not an array of shape {array.shape}."
        )
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise FeatvizError(f"The size to upsample to must be positive, not {tuple(size)}.")
    tensor = torch.tensor(array)[None, None]  # a copy: CamResult arrays are read-only
    with torch.inference_mode():
        resized = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)
    return resized[0, 0].numpy().copy()
