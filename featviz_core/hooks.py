"""Forward hooks done safely, and the discovery function beside them.

:class:`ActivationRecorder` is the only place featviz registers hooks: it holds the model's lock, registers
hooks on the chosen modules only, and removes them (and restores every ``training`` flag) in ``finally``.
:func:`list_layers` describes every module call of one forward pass; a module that runs several times in
one pass (torchvision's ResNet blocks call ``relu`` twice) gives one entry per call: ``name``, ``name#2``...
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import torch
from torch import nn

from .errors import LayerError
from .models import LoadedModel

__all__ = [
    "ActivationRecorder",
    "LayerInfo",
    "as_chw",
    "list_layers",
    "layer_info",
    "parse_layer_name",
    "default_layer",
]


def parse_layer_name(name: str) -> tuple[str, int]:
    """``"layer1.0.relu#2"`` -> ``("layer1.0.relu", 2)``; a plain name is call 1."""
    module_name, sep, call = name.rpartition("#")
    if sep and call.isdigit() and int(call) >= 1:
        return module_name, int(call)
    return name, 1


def _call_name(module_name: str, call: int) -> str:
    return module_name if call == 1 else f"{module_name}#{call}"


def as_chw(tensor: torch.Tensor, info: LayerInfo) -> torch.Tensor:
    """A recorded 4-D output of layer ``info`` as (N, C, H, W) (a view: channels-last outputs permuted)."""
    return tensor.permute(0, 3, 1, 2) if info.channels_last else tensor


@dataclass(frozen=True)
class LayerInfo:
    """One module call of a forward pass.

    ``shape`` is the output shape without the batch dimension (None when the output is not a tensor or
    the module did not run); for a feature map it is always (C, H, W). ``spatial`` is True for 4-D
    outputs: those are the feature maps featviz can draw. ``channels_last`` is True when the module gives
    them as (N, H, W, C) (ConvNeXt's and Swin's LayerNorm and MLP layers, NHWC graphs): :func:`as_chw`
    turns a recorded output into (N, C, H, W). ``overwritten`` is True when a later in-place operation
    changes this output during the same forward pass (so it must be copied when recorded).
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

    @property
    def channels(self) -> int | None:
        return self.shape[0] if self.spatial and self.shape else None

    @property
    def label(self) -> str:
        """``"layer2.0.conv1 · Conv2d · 128×28×28"``."""
        shape = "×".join(str(s) for s in self.shape) if self.shape else "no tensor output"
        return f"{self.name} · {self.type} · {shape}"


# ---------------------------------------------------------------------------------------------------
# The recorder

_Recorder = TypeVar("_Recorder", bound="ActivationRecorder")


class ActivationRecorder(AbstractContextManager["ActivationRecorder"]):
    """Record the outputs of chosen module calls during the forward passes run inside ``with``.

    ``layers`` are names as :func:`list_layers` gives them (``"layer1.0.relu#2"``). ``clone`` decides
    which outputs are copied when recorded: True (all), False (none) or a collection of layer names.
    Copy every output that a later in-place operation would change (``LayerInfo.overwritten``): torchvision
    uses ``ReLU(inplace=True)``, so an uncopied ``bn1`` output would show post-ReLU values.

    On enter: takes ``lock`` (if given), puts the module in eval mode, registers hooks. On exit, always:
    removes every hook, restores each submodule's ``training`` flag, releases the lock. Exiting twice is safe.
    """

    def __init__(
        self,
        module: nn.Module,
        layers: Sequence[str],
        *,
        clone: bool | Collection[str] = True,
        lock: threading.RLock | threading.Lock | None = None,
    ) -> None:
        self.module = module
        self.layers = list(dict.fromkeys(layers))
        self._clone = clone
        self._lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._was_training: list[nn.Module] = []
        self._entered = False
        self._counts: dict[str, int] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        wanted: dict[str, dict[int, str]] = {}
        for name in self.layers:
            module_name, call = parse_layer_name(name)
            wanted.setdefault(module_name, {})[call] = name
        self._wanted = wanted

    def _should_clone(self, name: str) -> bool:
        if isinstance(self._clone, bool):
            return self._clone
        return name in self._clone

    def _make_hook(self, module_name: str, calls: dict[int, str]) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            count = self._counts.get(module_name, 0) + 1
            self._counts[module_name] = count
            name = calls.get(count)
            if name is None or not isinstance(output, torch.Tensor):
                return
            kept = output.detach()
            if self._should_clone(name):
                kept = kept.clone()
            self.outputs[name] = kept

        return hook

    def _add_hooks(self, modules: dict[str, nn.Module]) -> None:
        """Register the hooks (``modules``: every submodule by name), each handle kept in ``_handles``.

        Runs inside ``__enter__``'s ``try``: a subclass that registers more hooks here (appending their
        handles) has them removed on exit, and on an exception while registering, like the recorder's own."""
        for module_name, calls in self._wanted.items():
            hook = self._make_hook(module_name, calls)
            self._handles.append(modules[module_name].register_forward_hook(hook))

    def __enter__(self: _Recorder) -> _Recorder:  # a subclass's ``with ... as`` gets the subclass
        self._lock.__enter__()
        self._entered = True
        try:
            modules = dict(self.module.named_modules())
            missing = [m for m in self._wanted if m not in modules]
            if missing:
                raise LayerError(
                    f"Layer '{missing[0]}' is not in this model; choose one from list_layers(model)."
                )
            self._was_training = [m for m in self.module.modules() if m.training]
            for m in self._was_training:  # eval mode, touching only the modules that were training
                m.training = False
            self._add_hooks(modules)
        except BaseException:
            self._release(None, None, None)
            raise
        return self

    def reset(self) -> None:
        """Forget what was recorded (to run another forward pass inside the same ``with``)."""
        self._counts.clear()
        self.outputs = {}

    def _release(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            for module in self._was_training:
                module.training = True
            self._was_training = []
        finally:
            if self._entered:
                self._entered = False
                self._lock.__exit__(exc_type, exc, tb)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release(exc_type, exc, tb)


# ---------------------------------------------------------------------------------------------------
# Discovery: one dry run per model, cached (a structural fact about the model, not a result)

_LAYER_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[LayerInfo, ...], dict[str, LayerInfo]]] = (
    weakref.WeakKeyDictionary()
)
_LAYER_CACHE_LOCK = threading.Lock()


@dataclass
class _Trace:
    """What one dry run saw: the order of module calls, call counts, and each call's output."""

    order: list[tuple[str, int]]
    calls: dict[str, int]
    records: dict[tuple[str, int], tuple[Any, int | None]]  # (output, its version when returned)


def _trace(model: LoadedModel, size: tuple[int, int]) -> _Trace:
    """One forward pass of zeros at ``size`` with a pre- and post-hook on every submodule."""
    module = model.module
    named = [(n, m) for n, m in module.named_modules() if n]
    trace = _Trace(order=[], calls={}, records={})
    post_counts: dict[str, int] = {}

    def make_pre(name: str) -> Any:
        def pre(_m: nn.Module, _inputs: Any) -> None:
            trace.calls[name] = trace.calls.get(name, 0) + 1
            trace.order.append((name, trace.calls[name]))

        return pre

    def make_post(name: str) -> Any:
        def post(_m: nn.Module, _inputs: Any, output: Any) -> None:
            post_counts[name] = post_counts.get(name, 0) + 1
            version = output._version if isinstance(output, torch.Tensor) else None
            trace.records[(name, post_counts[name])] = (output, version)

        return post

    dummy = torch.zeros(1, model.input_channels, *size, device=model.device)
    with ActivationRecorder(module, [], lock=model.lock):
        handles = []
        try:
            for name, m in named:
                handles.append(m.register_forward_pre_hook(make_pre(name)))
                handles.append(m.register_forward_hook(make_post(name)))
            with torch.no_grad():
                module(dummy)
        finally:
            for handle in handles:
                handle.remove()
    return trace


def _fits_aspect(h: int, w: int, size: tuple[int, int]) -> bool:
    """Could an (h, w) map be the input of ``size`` = (H, W) seen at some stride (within rounding)?"""
    height, width = size
    return abs(h * width - w * height) <= max(height, width) * max(1, min(h, w)) // 4 + max(h, w) // 4 + 1


def _layout_guess(shape: tuple[int, ...], size: tuple[int, int]) -> bool | None:
    """True: (H, W, C); False: (C, H, W); None: the shape alone cannot tell (e.g. 56×56×56)."""
    a, b, c = shape
    chw, hwc = _fits_aspect(b, c, size), _fits_aspect(a, b, size)
    if chw and not hwc:
        return False
    if hwc and not chw:
        return True
    return None


def _other_sizes(size: tuple[int, int]) -> list[tuple[int, int]]:
    """Input sizes for the second dry run of :func:`_layouts`, cheapest first: half the size (a quarter of
    the work: efficientnet_b7's 600 px pass is seconds on a small CPU) when that is still 64 px or more,
    then 32 px more (for models that need their full size or more)."""
    height, width = size
    sizes = [(height // 2, width // 2)] if min(height, width) >= 128 else []
    return [*sizes, (height + 32, width + 32)]


def _layouts(model: LoadedModel, first: _Trace) -> dict[tuple[str, int], bool]:
    """Which 4-D outputs are channels-last. Decided from the shape and the input's aspect ratio; where
    that cannot tell, from a second dry run at another input size (the dimensions that change with it are
    the spatial ones; see :func:`_other_sizes`). Models that only take one size are read as (C, H, W),
    PyTorch's convention."""
    size = model.input_size
    layouts: dict[tuple[str, int], bool] = {}
    unsure = []
    for key, (output, _version) in first.records.items():
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            guess = _layout_guess(tuple(int(s) for s in output.shape[1:]), size)
            layouts[key] = bool(guess)
            if guess is None:
                unsure.append(key)
    if not unsure:
        return layouts
    second = None
    for other in _other_sizes(size):
        try:
            second = _trace(model, other)
            break
        except Exception:  # noqa: BLE001 - this size does not run: try the next, else keep (C, H, W)
            continue
    if second is None:  # a fixed-size model: keep the (C, H, W) reading
        return layouts
    for key in unsure:
        output = second.records.get(key, (None, None))[0]
        before = first.records[key][0]
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            changed = [int(x) != int(y) for x, y in zip(before.shape[1:], output.shape[1:], strict=True)]
            layouts[key] = changed == [True, True, False]
    return layouts


def _dry_run(model: LoadedModel) -> tuple[LayerInfo, ...]:
    module = model.module
    named = [(n, m) for n, m in module.named_modules() if n]
    trace = _trace(model, model.input_size)
    layouts = _layouts(model, trace)
    infos: list[LayerInfo] = []
    seen: set[tuple[str, int]] = set()
    modules = dict(named)

    def info(name: str, call: int) -> LayerInfo:
        m = modules[name]
        output, version = trace.records.get((name, call), (None, None))
        is_tensor = isinstance(output, torch.Tensor)
        shape = tuple(int(s) for s in output.shape[1:]) if is_tensor else None
        channels_last = layouts.get((name, call), False)
        if shape is not None and channels_last:
            shape = (shape[2], shape[0], shape[1])
        overwritten = bool(is_tensor and version is not None and output._version != version)
        return LayerInfo(
            name=_call_name(name, call),
            module_name=name,
            type=type(m).__name__,
            shape=shape,
            call=call,
            calls=trace.calls.get(name, 0),
            params=sum(p.numel() for p in m.parameters()),
            depth=name.count(".") + 1,
            is_leaf=next(m.children(), None) is None,
            spatial=bool(is_tensor and output.ndim == 4),
            overwritten=overwritten,
            channels_last=channels_last,
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


def default_layer(model: LoadedModel) -> str:
    """An informative mid-level layer: the middle activation (or conv) output with a spatial map."""
    infos = [i for i in list_layers(model) if i.spatial]
    if not infos:
        raise LayerError(f"{model.name} has no layer that outputs feature maps (channels × height × width).")
    for kinds in (_ACTIVATIONS, {"Conv2d"}):
        candidates = [i for i in infos if i.type in kinds and i.is_leaf]
        if len(candidates) >= 2:
            return candidates[(len(candidates) - 1) // 2].name
    return infos[(len(infos) - 1) // 2].name


def spatial_layers(model: LoadedModel) -> list[LayerInfo]:
    """The layers whose output is a (C, H, W) feature map: the ones featviz can draw."""
    return [i for i in list_layers(model) if i.spatial]


def _iter_hooks(module: nn.Module) -> Iterator[int]:
    """How many hooks each submodule carries (for tests: nothing must be left behind)."""
    for m in module.modules():
        yield (
            len(m._forward_hooks)
            + len(m._forward_pre_hooks)
            + len(m._backward_hooks)
            + len(getattr(m, "_backward_pre_hooks", {}))
        )


def hook_count(module: nn.Module) -> int:
    """Total hooks registered on ``module`` and its submodules."""
    return sum(_iter_hooks(module))
