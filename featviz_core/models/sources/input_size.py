"""The input size a model of the user's own accepts, when the default (224×224) is refused.

A network that flattens its feature maps into a ``Linear`` layer takes one size only: LeNet-5 32×32, MTCNN's
ONet 48×48. The size is found without running the model for real: on PyTorch's ``meta`` device, where tensors
have shapes and no data (:func:`torch.func.functional_call` with meta copies of the parameters, so the user's
module is never moved or copied).

1. At the refused size, the ``Linear`` layer that failed tells how many features it wants (``in_features``)
   and how many it got. The number it gets grows with the input's side, so a bisection over square sides
   finds the sides that give exactly ``in_features``; of those the roundest is chosen (a common size such as
   32, 48 or 224 first, else the side divisible by the highest power of two: 48 rather than 47).
2. Otherwise (the model failed before any ``Linear``, or a reshape refused the size) a short list of common
   sizes is tried.

Every candidate must run the whole forward pass and keep the batch dimension; the caller then runs the real
model once at the chosen size.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import torch
from torch import nn

from ...layers.hooks import ActivationRecorder, Tap

__all__ = ["COMMON_SIZES", "accepted_size"]

_log = logging.getLogger("featviz")

COMMON_SIZES = (32, 28, 48, 64, 96, 112, 128, 160, 192, 224, 227, 256, 299, 320, 384, 448, 512)
"""Square sides tried when no ``Linear`` layer says what it wants, in this order; also preferred, among the
sides a ``Linear`` layer accepts, over other sides."""

_SMALLEST, _LARGEST = 8, 2048


class _Probe:
    """Forward passes of ``module`` on the meta device, at a square side, with the inputs of its Linear layers
    recorded."""

    def __init__(self, module: nn.Module, channels: int) -> None:
        self.module = module
        self.channels = channels
        self.linears = {name: m for name, m in module.named_modules() if name and isinstance(m, nn.Linear)}
        state = itertools.chain(module.named_parameters(remove_duplicate=False),
                                module.named_buffers(remove_duplicate=False))
        self.meta = {name: torch.empty_like(t, device="meta") for name, t in state}

    def run(self, side: int) -> tuple[bool, dict[str, torch.Size]]:
        """(whether the whole pass ran with batch 1 kept, each called Linear layer's input shape in call order)."""
        x = torch.zeros(1, self.channels, side, side, device="meta")
        taps = [Tap(name, clone=False, keep_input=True) for name in self.linears]
        with ActivationRecorder(self.module, taps=taps) as recorder:
            try:
                output = torch.func.functional_call(self.module, self.meta, (x,))
                ran = _keeps_batch(output)
            except Exception:  # noqa: BLE001 - a size the model refuses, whatever its own code raises
                ran = False
            shapes = {name: t.shape for name, t in recorder.inputs.items()}
        return ran, shapes


def _keeps_batch(output: Any) -> bool:
    if isinstance(output, torch.Tensor):
        return output.ndim == 0 or output.shape[0] == 1
    if isinstance(output, tuple | list) and output:
        return _keeps_batch(output[0])
    if isinstance(output, dict) and output:
        return _keeps_batch(next(iter(output.values())))
    return True


def _roundness(side: int) -> tuple[int, int, int]:
    twos = (side & -side).bit_length() - 1
    return (0 if side in COMMON_SIZES else 1, -twos, side)


def _guided(probe: _Probe, refused: int) -> int | None:
    """The side the Linear layer that refused ``refused`` accepts, by bisection; None if there is none."""
    ran, shapes = probe.run(refused)
    if ran or not shapes:
        return None
    name, shape = next(reversed(shapes.items()))  # the last Linear called is where the pass stopped
    wanted = probe.linears[name].in_features
    if shape[-1] == wanted:
        return None  # that layer got what it wants: the failure is elsewhere

    def features(side: int) -> int:
        return int(probe.run(side)[1].get(name, (0,))[-1])  # not reached: too small to get there

    def first_above(limit: int) -> int:  # the smallest side whose features exceed ``limit``
        low, high = _SMALLEST, _LARGEST + 1
        while low < high:
            mid = (low + high) // 2
            if features(mid) > limit:
                high = mid
            else:
                low = mid + 1
        return low

    start, end = first_above(wanted - 1), first_above(wanted)
    if start > _LARGEST or features(start) != wanted:
        return None
    for side in sorted(range(start, end), key=_roundness)[:4]:
        if probe.run(side)[0]:
            return side
    return None


def accepted_size(module: nn.Module, channels: int, refused: tuple[int, int]) -> tuple[int, int] | None:
    """A square input size ``module`` runs at with ``channels`` input channels, or None when none is found
    (including models that cannot run on the meta device). ``refused`` is the size that failed."""
    try:
        probe = _Probe(module, channels)
        side = _guided(probe, max(refused))
        if side is None:
            side = next((s for s in COMMON_SIZES if s not in refused and probe.run(s)[0]), None)
    except Exception:  # noqa: BLE001 - the search is a convenience: the caller reports the refused size
        _log.warning("could not search an input size for %s", type(module).__name__, exc_info=True)
        return None
    return None if side is None else (side, side)
