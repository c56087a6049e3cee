"""The one owner of forward hooks: every hook featviz puts on a model is registered in this module.

:class:`ActivationRecorder` holds the model's lock, puts the model in eval mode, registers hooks on the chosen
module calls only, and removes them (and restores every ``training`` flag) in ``finally``. What to do at a
layer is data, a :class:`Tap` (as in timm's ``FeatureHooks``): record the output detached or inside the autograd
graph, copy it or not, keep the layer's input too, hand the rest of the network another tensor, stop the forward
pass once it has run (:class:`StopForward`). Extraction, CAM, the receptive field, feature visualization and
exemplars all use it; layer discovery uses :func:`trace_forward`, which sees every module call of one pass.

A module that runs several times in one pass (torchvision's ResNet blocks call ``relu`` twice) has one name per
call: ``name``, ``name#2``... (:func:`parse_layer_name`, :func:`call_name`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch
from torch import nn

from ..errors import LayerError, StopForward

__all__ = [
    "ActivationRecorder",
    "StopForward",
    "Tap",
    "Trace",
    "call_name",
    "hook_count",
    "parse_layer_name",
    "trace_forward",
]


def parse_layer_name(name: str) -> tuple[str, int]:
    """``"layer1.0.relu#2"`` -> ``("layer1.0.relu", 2)``; a plain name is call 1."""
    module_name, sep, call = name.rpartition("#")
    if sep and call.isdigit() and int(call) >= 1:
        return module_name, int(call)
    return name, 1


def call_name(module_name: str, call: int) -> str:
    """The inverse of :func:`parse_layer_name`: ``("layer1.0.relu", 2)`` -> ``"layer1.0.relu#2"``."""
    return module_name if call == 1 else f"{module_name}#{call}"


Replace = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass(frozen=True)
class Tap:
    """What to do at one call of one layer (``"name"`` or ``"name#call"``).

    - ``clone``: keep a copy (needed when a later in-place operation changes the output, see
      ``LayerInfo.overwritten``); without it the recorded tensor is the output itself.
    - ``keep_graph``: keep the output inside the autograd graph (for gradients with respect to the input);
      otherwise it is detached.
    - ``keep_input``: also keep a copy of the layer's first input, taken before the layer runs (what a
      ``ReLU(inplace=True)`` would otherwise overwrite).
    - ``stop``: end the forward pass once every stopping tap has recorded (nothing after it is needed).
    - ``replace``: called with the output; a tensor it returns is what the rest of the network gets.
    - ``reduce``: keep ``reduce(output)`` instead of the output (``clone`` then applies to what it returns): a
      large output summarised as the pass runs (attention weights averaged over heads) is not held whole.
    """

    layer: str
    clone: bool = True
    keep_graph: bool = False
    keep_input: bool = False
    stop: bool = False
    replace: Replace | None = field(default=None, compare=False)
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)


class ActivationRecorder(AbstractContextManager["ActivationRecorder"]):
    """Record chosen module calls during the forward passes run inside ``with``.

    ``layers`` are names as ``list_layers`` gives them (``"layer1.0.relu#2"``), recorded detached; ``clone``
    decides which are copied: True (all), False (none) or a collection of names. Copy every output that a later
    in-place operation would change (``LayerInfo.overwritten``): torchvision uses ``ReLU(inplace=True)``, so an
    uncopied ``bn1`` output would show post-ReLU values. ``taps`` say more for a layer (see :class:`Tap`).
    ``outputs`` and ``inputs`` hold what was recorded, by layer name.

    On enter: takes ``lock`` (if given), puts the module in eval mode, registers hooks. On exit, always:
    removes every hook, restores each submodule's ``training`` flag, releases the lock. Exiting twice is safe.
    With no layers and no taps it is the guard alone: the lock and eval mode for a plain forward pass.
    """

    def __init__(
        self,
        module: nn.Module,
        layers: Sequence[str] = (),
        *,
        clone: bool | Collection[str] = True,
        lock: threading.RLock | threading.Lock | None = None,
        taps: Iterable[Tap] = (),
    ) -> None:
        self.module = module
        chosen = {name: Tap(name, clone=_clone_wanted(clone, name)) for name in dict.fromkeys(layers)}
        chosen.update({tap.layer: tap for tap in taps})
        self.taps = chosen
        self.layers = list(chosen)
        self._lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._was_training: list[nn.Module] = []
        self._entered = False
        self._counts: dict[tuple[str, str], int] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.inputs: dict[str, torch.Tensor] = {}
        self._stoppers = {name for name, tap in chosen.items() if tap.stop}
        wanted: dict[str, dict[int, Tap]] = {}
        for name, tap in chosen.items():
            module_name, call = parse_layer_name(name)
            wanted.setdefault(module_name, {})[call] = tap
        self._wanted = wanted

    # --- the hooks ---------------------------------------------------------------------------------

    def _count(self, kind: str, module_name: str) -> int:
        count = self._counts.get((kind, module_name), 0) + 1
        self._counts[(kind, module_name)] = count
        return count

    def _output_hook(self, module_name: str, calls: dict[int, Tap]) -> Callable[..., Any]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            tap = calls.get(self._count("output", module_name))
            if tap is None or not isinstance(output, torch.Tensor):
                return None
            kept = output if tap.keep_graph else output.detach()
            if tap.reduce is not None:
                kept = tap.reduce(kept)
            self.outputs[tap.layer] = kept.clone() if tap.clone else kept
            replaced = tap.replace(output) if tap.replace is not None else None
            if self._stoppers and self._stoppers.issubset(self.outputs):
                raise StopForward
            return replaced

        return hook

    def _input_hook(self, module_name: str, calls: dict[int, Tap]) -> Callable[..., Any]:
        def hook(_module: nn.Module, inputs: Any) -> None:
            tap = calls.get(self._count("input", module_name))
            if tap is not None and inputs and isinstance(inputs[0], torch.Tensor):
                first = inputs[0] if tap.keep_graph else inputs[0].detach()
                self.inputs[tap.layer] = first.clone()

        return hook

    def _register(self, modules: dict[str, nn.Module]) -> None:
        for module_name, calls in self._wanted.items():
            target = modules[module_name]
            self._handles.append(target.register_forward_hook(self._output_hook(module_name, calls)))
            if any(tap.keep_input for tap in calls.values()):
                self._handles.append(target.register_forward_pre_hook(self._input_hook(module_name, calls)))

    # --- running -----------------------------------------------------------------------------------

    def run(self, *args: Any) -> Any:
        """``module(*args)`` with a fresh record; None when a stopping tap ended the pass early."""
        self.reset()
        try:
            return self.module(*args)
        except StopForward:
            return None

    def reset(self) -> None:
        """Forget what was recorded (to run another forward pass inside the same ``with``)."""
        self._counts.clear()
        self.outputs = {}
        self.inputs = {}

    # --- entering and leaving ----------------------------------------------------------------------

    def __enter__(self) -> ActivationRecorder:
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
            self._register(modules)
        except BaseException:
            self._release(None, None, None)
            raise
        return self

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


def _clone_wanted(clone: bool | Collection[str], name: str) -> bool:
    return clone if isinstance(clone, bool) else name in clone


# ---------------------------------------------------------------------------------------------------
# Every module call of one forward pass (layer discovery)


@dataclass
class Trace:
    """What one traced forward pass saw: the order of module calls, call counts, and each call's output
    with the tensor's version counter when it was returned (a later in-place change raises it)."""

    order: list[tuple[str, int]]
    calls: dict[str, int]
    records: dict[tuple[str, int], tuple[Any, int | None]]


def trace_forward(
    module: nn.Module, inputs: torch.Tensor, lock: threading.RLock | threading.Lock | None = None
) -> Trace:
    """One forward pass of ``inputs`` (without gradients) with a pre- and post-hook on every submodule,
    under ``lock`` and in eval mode; every hook removed in ``finally``."""
    named = [(n, m) for n, m in module.named_modules() if n]
    trace = Trace(order=[], calls={}, records={})
    post_counts: dict[str, int] = {}

    def make_pre(name: str) -> Callable[..., None]:
        def pre(_m: nn.Module, _inputs: Any) -> None:
            trace.calls[name] = trace.calls.get(name, 0) + 1
            trace.order.append((name, trace.calls[name]))

        return pre

    def make_post(name: str) -> Callable[..., None]:
        def post(_m: nn.Module, _inputs: Any, output: Any) -> None:
            post_counts[name] = post_counts.get(name, 0) + 1
            version = output._version if isinstance(output, torch.Tensor) else None
            trace.records[(name, post_counts[name])] = (output, version)

        return post

    with ActivationRecorder(module, lock=lock) as guard:  # its exit removes these hooks too
        for name, m in named:
            guard._handles.append(m.register_forward_pre_hook(make_pre(name)))
            guard._handles.append(m.register_forward_hook(make_post(name)))
        with torch.no_grad():
            module(inputs)
    return trace


def hook_count(module: nn.Module) -> int:
    """Total hooks registered on ``module`` and its submodules (for tests: nothing must be left behind)."""
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in module.modules()
    )
