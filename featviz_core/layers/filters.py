"""Convolution weights, for a "Filters" page: what each output channel of a convolution looks for.

* :func:`conv_layers` lists every ``nn.Conv2d`` in forward order (the discovery function);
* :func:`filter_weights` copies one convolution's kernels;
* :func:`rgb_tiles` draws the kernels of a first convolution on RGB input as colour tiles, with ONE
  symmetric scale for all kernels (0 is mid-grey; the caller should say so in words);
* :func:`reduce_inputs` gives one (kh, kw) map per filter for any other convolution;
* :func:`conv_for_layer` links a feature map's channel with the filter that produced it: output channel
  ``k`` of a convolution is made by filter ``k``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..errors import FeatvizError, LayerError
from ..models.loaded import LoadedModel
from .discovery import LayerInfo, layer_info, list_layers
from .hooks import parse_layer_name

__all__ = [
    "ConvInfo",
    "FilterWeights",
    "conv_for_layer",
    "conv_layers",
    "filter_weights",
    "reduce_inputs",
    "rgb_tiles",
]


@dataclass(frozen=True)
class ConvInfo:
    """One ``nn.Conv2d`` of a model. ``name`` is its module name (a layer name for :func:`filter_weights`).

    ``is_first`` marks the first convolution of the forward pass: the one that looks at the image itself.
    """

    name: str
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    groups: int
    is_first: bool
    stride: tuple[int, int] = (1, 1)
    has_bias: bool = False

    @property
    def label(self) -> str:
        """``"layer1.0.conv1 · 64 filters of 64×3×3"``."""
        kh, kw = self.kernel_size
        per_filter = self.in_channels // self.groups
        return f"{self.name} · {self.out_channels} filters of {per_filter}×{kh}×{kw}"


@dataclass(frozen=True, eq=False)
class FilterWeights:
    """The kernels of one convolution, copied from the module.

    ``weights`` is float32 (O, I/groups, kh, kw) and read-only; ``weights[k]`` is the filter that makes
    output channel ``k``. ``is_rgb_input`` is True for the first convolution of a model whose input has 3
    channels (and ``groups == 1``): its kernels can be drawn as RGB tiles with :func:`rgb_tiles`.
    ``bias`` is float32 (O,) or None.
    """

    weights: np.ndarray
    layer: str
    is_rgb_input: bool
    in_channels: int
    groups: int
    bias: np.ndarray | None = None

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def kernel_size(self) -> tuple[int, int]:
        return (int(self.weights.shape[2]), int(self.weights.shape[3]))


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[-1]))


def _named_convs(model: LoadedModel) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in model.module.named_modules() if name and isinstance(m, nn.Conv2d)}


def conv_layers(model: LoadedModel) -> list[ConvInfo]:
    """Every ``nn.Conv2d`` of ``model``, in the order the forward pass first calls it (as
    :func:`~featviz_core.layers.hooks.list_layers`), then any that never run. A convolution called several times
    is listed once. The first one is flagged ``is_first``."""
    convs = _named_convs(model)
    ordered: list[str] = []
    seen: set[str] = set()
    for info in list_layers(model):
        if info.module_name in convs and info.module_name not in seen:
            seen.add(info.module_name)
            ordered.append(info.module_name)
    ordered += [name for name in convs if name not in seen]
    result = []
    for position, name in enumerate(ordered):
        conv = convs[name]
        result.append(
            ConvInfo(
                name=name,
                in_channels=int(conv.in_channels),
                out_channels=int(conv.out_channels),
                kernel_size=_pair(conv.kernel_size),
                groups=int(conv.groups),
                is_first=position == 0,
                stride=_pair(conv.stride),
                has_bias=conv.bias is not None,
            )
        )
    return result


def _conv_module(model: LoadedModel, layer: str) -> tuple[str, nn.Conv2d]:
    module_name, _call = parse_layer_name(layer)
    modules = dict(model.module.named_modules())
    found = modules.get(module_name) if module_name else None
    if found is None:
        raise LayerError(
            f"Layer '{layer}' is not in {model.name}; choose a convolution from conv_layers(model)."
        )
    if not isinstance(found, nn.Conv2d):
        raise LayerError(
            f"Layer '{layer}' of {model.name} is a {type(found).__name__}, not a convolution, so it has no "
            "filters; choose a convolution from conv_layers(model)."
        )
    return module_name, found


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    array.flags.writeable = False
    return array


def filter_weights(model: LoadedModel, layer: str) -> FilterWeights:
    """A copy of the kernels of convolution ``layer`` (a name from :func:`conv_layers`; ``"conv#2"``, the
    second call of a reused convolution, names the same kernels). Any other layer -> :class:`LayerError`."""
    module_name, conv = _conv_module(model, layer)
    with model.lock, torch.no_grad():  # a consistent copy, even if someone loads weights meanwhile
        weights = conv.weight.detach().to(device="cpu", dtype=torch.float32).numpy().copy()
        bias = None if conv.bias is None else conv.bias.detach().to("cpu", torch.float32).numpy().copy()
    first = conv_layers(model)[0].name == module_name
    in_channels = int(conv.in_channels)
    return FilterWeights(
        weights=_readonly(weights),
        layer=module_name,
        is_rgb_input=bool(first and in_channels == 3 and conv.groups == 1),
        in_channels=in_channels,
        groups=int(conv.groups),
        bias=None if bias is None else _readonly(bias),
    )


def _as_kernels(weights: FilterWeights | np.ndarray) -> np.ndarray:
    array = weights.weights if isinstance(weights, FilterWeights) else np.asarray(weights)
    if array.ndim != 4:
        raise FeatvizError(
            "Convolution weights have 4 dimensions (filters × input channels × height × width); "
            f"got an array of shape {array.shape}."
        )
    return array


def rgb_tiles(weights: FilterWeights | np.ndarray) -> tuple[np.ndarray, float]:
    """Kernels (O, 3, kh, kw) as RGB tiles: uint8 (O, kh, kw, 3), and the scale ``s``.

    ONE symmetric scale for all kernels, ``s = max |w|`` over the whole layer: a weight ``v`` is drawn as
    ``127.5 + 127.5 * v / s``, rounded half up, so 0 is mid-grey (128), ``+s`` is 255 and ``-s`` is 0 in
    that colour channel. Tiles of different filters are comparable. All-zero weights give grey tiles and
    ``s = 0``.
    """
    array = _as_kernels(weights)
    if array.shape[1] != 3:
        raise FeatvizError(
            f"RGB tiles need filters with 3 input channels (red, green, blue); these have {array.shape[1]}. "
            "Use reduce_inputs() to draw them as single-channel maps."
        )
    values = array.astype(np.float64)
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    if not np.isfinite(scale):
        raise FeatvizError("These filters contain infinite or NaN weights, which cannot be drawn.")
    scaled = 127.5 + 127.5 * values / scale if scale > 0 else np.full(values.shape, 127.5)
    tiles = np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(tiles.transpose(0, 2, 3, 1)), scale


def reduce_inputs(
    weights: FilterWeights | np.ndarray,
    how: Literal["mean"] | int = "mean",
) -> np.ndarray:
    """One (kh, kw) map per filter: float32 (O, kh, kw).

    ``how="mean"`` averages each filter over its input channels; an integer ``i`` takes input channel ``i``
    of every filter (0 <= i < I/groups; for a grouped convolution it is the ``i``-th channel of each
    filter's own group). Anything else -> :class:`FeatvizError` saying the valid range.
    """
    array = _as_kernels(weights)
    inputs = int(array.shape[1])
    if isinstance(how, str):
        if how != "mean":
            raise FeatvizError(f"Choose 'mean' or an input channel from 0 to {inputs - 1}, not '{how}'.")
        return array.astype(np.float64).mean(axis=1).astype(np.float32)
    try:
        if isinstance(how, bool):
            raise TypeError
        channel = operator.index(how)
    except TypeError:
        raise FeatvizError(
            f"Choose 'mean' or an input channel from 0 to {inputs - 1}, not {how!r}."
        ) from None
    if not 0 <= channel < inputs:
        raise FeatvizError(
            f"Input channel {channel} does not exist: these filters have {inputs} input channel(s), "
            f"numbered 0 to {inputs - 1}."
        )
    return np.ascontiguousarray(array[:, channel], dtype=np.float32)


def _call_end(infos: list[LayerInfo], position: int) -> int:
    """Index of the last module call inside call ``position`` (itself for a leaf): where its output is made."""
    prefix = infos[position].module_name + "."
    end = position
    while end + 1 < len(infos) and infos[end + 1].module_name.startswith(prefix):
        end += 1
    return end


def conv_for_layer(model: LoadedModel, layer_name: str) -> str | None:
    """The convolution whose filter ``k`` makes channel ``k`` of ``layer_name``'s feature maps, or None.

    For a convolution, itself. Otherwise, walking back from where the layer's output is made: the nearest
    convolution with as many output channels as the layer has channels (``"layer1.0.bn1"`` ->
    ``"layer1.0.conv1"``). Convolutions whose output is smaller than the layer's maps (squeeze-and-excitation
    gates) are stepped over; a convolution with another channel count on the way means the channels come
    from something else (a concatenation...), and the answer is None, as it is for non-spatial layers.
    When a residual sum adds two convolutions' outputs, the later one in the forward pass is given (for a
    ResNet block with a shortcut convolution: ``downsample.0``). Unknown names -> :class:`LayerError`.
    """
    info = layer_info(model, layer_name, spatial=False)
    convs = _named_convs(model)
    if info.module_name in convs:
        return info.module_name
    if not info.spatial or info.shape is None or len(info.shape) != 3:
        return None
    channels, height, width = info.shape
    infos = [i for i in list_layers(model) if i.calls > 0]
    position = next((n for n, i in enumerate(infos) if i.name == info.name), None)
    if position is None:
        return None
    for candidate in reversed(infos[: _call_end(infos, position) + 1]):
        if candidate.module_name not in convs or candidate.shape is None or len(candidate.shape) != 3:
            continue
        out_channels, conv_height, conv_width = candidate.shape
        if conv_height < height or conv_width < width:
            continue  # a gate or a side branch at lower resolution
        return candidate.module_name if out_channels == channels else None
    return None
