"""Layer discovery: every module call of one forward pass, what its output is, and which ones are feature maps.

:func:`list_layers` describes every module call of one dry run (remembered per model); a module that runs several
times in one pass gives one entry per call: ``name``, ``name#2``... Whether an output is a map, and of which
layout (channels-first, channels-last, tokens on the patch grid), is decided by :mod:`.layout`. :func:`layer_info`
finds one and says what to do when it is unknown or not a map; :func:`default_layer` picks an informative one;
:func:`as_chw` turns a recorded output into (N, C, H, W).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LayerError
from ..models.loaded import LoadedModel
from .hooks import Trace, call_name, parse_layer_name, trace_forward
from .layout import MapLayout, confirm_output, read_output, to_chw, token_grid

__all__ = [
    "LayerInfo",
    "as_chw",
    "default_layer",
    "layer_info",
    "list_layers",
    "spatial_layers",
    "token_blocks",
]


def as_chw(tensor: torch.Tensor, info: LayerInfo) -> torch.Tensor:
    """A recorded output of map layer ``info`` as (N, C, H, W): a differentiable view (channels-last outputs
    permuted; tokens without their prefix, on the patch grid, see :func:`~featviz_core.layers.layout.to_chw`)."""
    if info.layout is not None:
        return to_chw(tensor, info.layout)
    return tensor.permute(0, 3, 1, 2) if info.channels_last else tensor


@dataclass(frozen=True)
class LayerInfo:
    """One module call of a forward pass.

    ``shape`` is the output shape without the batch dimension (None when the output is not a tensor or
    the module did not run); for a feature map it is always (C, H, W). ``spatial`` is True for feature
    maps, the outputs featviz can draw; ``layout`` (a :class:`~featviz_core.layers.layout.MapLayout`) says
    how the module gives them: (N, C, H, W), (N, H, W, C) (``channels_last``: ConvNeXt's and Swin's
    LayerNorm and MLP layers, NHWC graphs) or (N, T, D) tokens of a vision transformer on its patch grid,
    after ``layout.prefix`` class/distillation/register tokens. :func:`as_chw` turns a recorded output into
    (N, C, H, W). ``overwritten`` is True when a later in-place operation changes this output during the
    same forward pass (so it must be copied when recorded).

    A 3-D model (``model.input_depth`` set) is traced on (1, C, D, H, W): its 5-D outputs are the maps,
    ``shape`` (C, D, H, W), ``spatial`` True.
    """

    name: str
    module_name: str
    type: str
    shape: tuple[int, ...] | None
    call: int
    calls: int
    params: int
    depth: int
    is_leaf: bool
    spatial: bool
    overwritten: bool
    channels_last: bool = False
    layout: MapLayout | None = None

    @property
    def channels(self) -> int | None:
        return self.shape[0] if self.spatial and self.shape else None

    @property
    def tokens(self) -> bool:
        """True for a token layer (a vision transformer's (N, T, D) on its patch grid)."""
        return self.layout is not None and self.layout.tokens

    @property
    def label(self) -> str:
        """``"layer2.0.conv1 · Conv2d · 128×28×28"``, ``"blocks.5 · Block · tokens 192×14×14"``."""
        if self.layout is not None and self.spatial:
            return f"{self.name} · {self.type} · {self.layout.describe()}"
        shape = "×".join(str(s) for s in self.shape) if self.shape else "no tensor output"
        return f"{self.name} · {self.type} · {shape}"


# ---------------------------------------------------------------------------------------------------
# Discovery: one dry run per model, cached (a structural fact about the model, not a result)

_LAYER_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[LayerInfo, ...], dict[str, LayerInfo]]] = (
    weakref.WeakKeyDictionary()
)
_LAYER_CACHE_LOCK = threading.Lock()


def _trace(model: LoadedModel, size: tuple[int, int]) -> Trace:
    """One forward pass of zeros at ``size``, every module call seen."""
    depth = () if model.input_depth is None else (model.input_depth,)  # a 3-D model: (1, C, D, H, W)
    dummy = torch.zeros(1, model.input_channels, *depth, *size, device=model.device)
    return trace_forward(model.module, dummy, lock=model.lock)


def _other_sizes(size: tuple[int, int]) -> list[tuple[int, int]]:
    """Input sizes for the second dry run of :func:`_layouts`, cheapest first: half the size (a quarter of
    the work: efficientnet_b7's 600 px pass is seconds on a small CPU) when that is still 64 px or more,
    then 32 px more (for models that need their full size or more)."""
    height, width = size
    sizes = [(height // 2, width // 2)] if min(height, width) >= 128 else []
    return [*sizes, (height + 32, width + 32)]


def _shape(output: object) -> tuple[int, ...] | None:
    return tuple(int(s) for s in output.shape) if isinstance(output, torch.Tensor) else None


def _layouts(model: LoadedModel, first: Trace) -> dict[tuple[str, int], MapLayout | None]:
    """Which outputs are maps, and how (:func:`~featviz_core.layers.layout.read_output`, with what the model
    says about its patch grid). What the shape cannot settle is settled by a second dry run at another
    input size (the dimensions that change with it are the positions; see :func:`_other_sizes`); for a
    model that only takes one size the first reading stays (PyTorch's (C, H, W) where both fit)."""
    size = model.input_size
    tokens = token_grid(model.module, size)
    layouts: dict[tuple[str, int], MapLayout | None] = {}
    unsure: list[tuple[str, int]] = []
    for key, (output, _version) in first.records.items():
        shape = _shape(output)
        if shape is None:
            continue
        reading = read_output(shape, size, tokens, name=key[0])
        layouts[key] = reading.layout
        if not reading.sure:
            unsure.append(key)
    if not unsure:
        return layouts
    second, other = None, size
    for other in _other_sizes(size):
        try:
            second = _trace(model, other)
            break
        except Exception:  # noqa: BLE001 - this size does not run: try the next, else keep the first reading
            continue
    if second is None:
        return layouts
    for key in unsure:
        if key not in second.records:  # did not run at that size: keep the first reading
            continue
        shape, after = _shape(first.records[key][0]), _shape(second.records[key][0])
        assert shape is not None
        layouts[key] = confirm_output(shape, size, after, other)
    return layouts


def _dry_run(model: LoadedModel) -> tuple[LayerInfo, ...]:
    module = model.module
    named = [(n, m) for n, m in module.named_modules() if n]
    trace = _trace(model, model.input_size)
    layouts = _layouts(model, trace) if model.input_depth is None else {}  # 5-D maps are (N, C, D, H, W)
    infos: list[LayerInfo] = []
    seen: set[tuple[str, int]] = set()
    modules = dict(named)

    def info(name: str, call: int) -> LayerInfo:
        m = modules[name]
        output, version = trace.records.get((name, call), (None, None))
        is_tensor = isinstance(output, torch.Tensor)
        shape = tuple(int(s) for s in output.shape[1:]) if is_tensor else None
        layout = layouts.get((name, call))
        if layout is not None:
            shape = layout.shape
        overwritten = bool(is_tensor and version is not None and output._version != version)
        return LayerInfo(
            name=call_name(name, call),
            module_name=name,
            type=type(m).__name__,
            shape=shape,
            call=call,
            calls=trace.calls.get(name, 0),
            params=sum(p.numel() for p in m.parameters()),
            depth=name.count(".") + 1,
            is_leaf=next(m.children(), None) is None,
            spatial=(bool(is_tensor and output.ndim == 5) if model.input_depth is not None
                     else layout is not None),
            overwritten=overwritten,
            channels_last=layout is not None and layout.channels_last,
            layout=layout,
        )

    for key in trace.order:
        if key not in seen:
            seen.add(key)
            infos.append(info(*key))
    for name, _m in named:  # modules that never ran (e.g. auxiliary heads in eval mode)
        if name not in trace.calls:
            infos.append(info(name, 1))
    return tuple(infos)


def _layers(model: LoadedModel) -> tuple[tuple[LayerInfo, ...], dict[str, LayerInfo]]:
    with _LAYER_CACHE_LOCK:
        cached = _LAYER_CACHE.get(model.module)
    if cached is None:
        infos = _dry_run(model)
        cached = (infos, {info.name: info for info in infos})
        with _LAYER_CACHE_LOCK:
            _LAYER_CACHE[model.module] = cached
    return cached


def list_layers(model: LoadedModel) -> list[LayerInfo]:
    """Every module call of one forward pass, in execution order, then the modules that never ran.

    Found by one dry run at the model's input size, done once per model and remembered.
    """
    return list(_layers(model)[0])


def layer_info(model: LoadedModel, name: str, *, spatial: bool = True) -> LayerInfo:
    """The :class:`LayerInfo` of ``name``; :class:`LayerError` (saying what to do) when it is unknown or,
    with ``spatial=True``, when its output is not a (C, H, W) feature map."""
    infos = _layers(model)[1]
    found = infos.get(name)
    if found is None:
        module_name, call = parse_layer_name(name)
        if call > 1 and module_name in infos:
            calls = infos[module_name].calls
            raise LayerError(
                f"Layer '{module_name}' runs {calls} time(s) per forward pass in {model.name}, so "
                f"'{name}' does not exist; choose one from list_layers(model)."
            )
        raise LayerError(
            f"Layer '{name}' is not in {model.name}; choose one from list_layers(model)"
            f" (for example '{default_layer(model)}')."
        )
    if spatial and not found.spatial:
        what = "does not run" if found.shape is None and found.calls == 0 else (
            f"gives an output of shape {found.shape}" if found.shape else "gives no single tensor"
        )
        raise LayerError(
            f"Layer '{name}' of {model.name} {what}, not feature maps (channels × height × width); "
            "choose a layer with spatial output from list_layers(model)."
        )
    return found


_ACTIVATIONS = {
    "ReLU", "ReLU6", "SiLU", "GELU", "Hardswish", "LeakyReLU", "ELU", "Mish", "PReLU", "Hardtanh",
}


def token_blocks(model: LoadedModel) -> list[LayerInfo]:
    """The blocks of a vision transformer whose outputs are token maps, in execution order: module calls with
    token maps that are not leaves and have a sibling of the same type (timm's ``blocks.0`` ... ``blocks.11``,
    Hugging Face's ``vit.layers.N``, torchvision's ``encoder.layers.encoder_layer_N``); empty for other models."""
    candidates = [i for i in list_layers(model) if i.tokens and not i.is_leaf and i.calls > 0]
    groups: dict[tuple[str, str], int] = {}
    for info in candidates:
        key = (info.module_name.rpartition(".")[0], info.type)
        groups[key] = groups.get(key, 0) + 1
    return [i for i in candidates if groups[(i.module_name.rpartition(".")[0], i.type)] >= 2]


def default_layer(model: LoadedModel) -> str:
    """An informative mid-level layer: for a vision transformer the middle block's output (tokens on the
    patch grid), otherwise the middle activation (or conv) output with a spatial map."""
    infos = [i for i in list_layers(model) if i.spatial]
    if not infos:
        raise LayerError(f"{model.name} has no layer that outputs feature maps (channels × height × width).")
    blocks = token_blocks(model)
    if len(blocks) >= 2:
        return blocks[(len(blocks) - 1) // 2].name
    for kinds in (_ACTIVATIONS, {"Conv2d", "Conv3d"}):
        candidates = [i for i in infos if i.type in kinds and i.is_leaf]
        if len(candidates) >= 2:
            return candidates[(len(candidates) - 1) // 2].name
    return infos[(len(infos) - 1) // 2].name


def spatial_layers(model: LoadedModel) -> list[LayerInfo]:
    """The layers whose output is a (C, H, W) feature map: the ones featviz can draw."""
    return [i for i in list_layers(model) if i.spatial]
