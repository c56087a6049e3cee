"""Which part of the input one position of a layer's feature map can see: its receptive field.

:func:`receptive_field` measures it for any model, once per model and layer (remembered, like the layer list:
a structural fact about the model, not a result):

- **gradient** (models that run in autograd): the gradient of one unit in the middle of the map with respect
  to random inputs is non-zero exactly on the pixels that unit depends on; their bounding box is the field.
  Several random inputs are combined so that max-pooling (which passes the gradient to one pixel per window)
  and ReLUs (which block it where they are off) do not hide a border.
- **perturbation** (models outside autograd, e.g. ONNX through onnxruntime): the same box found by changing
  the input rows above / below and columns left / right of a line and seeing whether the unit changes, with a
  binary search for each side (about 4 × log2(size) forward passes).
- **estimate**: when neither works, three times the layer's stride (input size / map size), centred on the
  cell; :attr:`ReceptiveField.note` says so.

The stride (input pixels per map cell) is measured from two neighbouring units when their fields are not
cut by the image border, and otherwise taken as input size / map size.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..models.loaded import LoadedModel
from .discovery import as_chw, layer_info
from .hooks import ActivationRecorder, Tap

__all__ = ["PAD_COLOUR", "ReceptiveField", "crop_patch", "receptive_field"]

PAD_COLOUR = (214, 224, 240)
"""Light blue-grey: the part of a patch that lies outside the image (patches are padded, never shifted)."""

_SAMPLES = 4


@dataclass(frozen=True)
class ReceptiveField:
    """The field of the units of one layer, in pixels of the model's input (its view of the image).

    The field of map cell (y, x) is ``size`` = (height, width) pixels centred on
    ``offset + (y, x) * stride`` (continuous coordinates: pixel ``i`` covers ``[i, i + 1)``).
    ``method`` is "gradient", "perturbation" or "estimate"; ``note`` says in words how it was found.
    """

    size: tuple[int, int]
    stride: tuple[float, float]
    offset: tuple[float, float]
    method: str
    note: str

    def center(self, y: int, x: int) -> tuple[float, float]:
        return (self.offset[0] + y * self.stride[0], self.offset[1] + x * self.stride[1])

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of cell (y, x)'s field; may reach outside the image (then pad)."""
        cy, cx = self.center(y, x)
        top = math.floor(cy - self.size[0] / 2 + 0.5)
        left = math.floor(cx - self.size[1] / 2 + 0.5)
        return top, left, top + self.size[0], left + self.size[1]

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "stride": list(self.stride), "offset": list(self.offset),
                "method": self.method, "note": self.note}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReceptiveField:
        size, stride, offset = data["size"], data["stride"], data["offset"]
        return cls(size=(int(size[0]), int(size[1])), stride=(float(stride[0]), float(stride[1])),
                   offset=(float(offset[0]), float(offset[1])), method=str(data["method"]),
                   note=str(data["note"]))


def crop_patch(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The region ``box`` = (top, left, bottom, right) of ``image`` as an RGB image; the parts outside the
    image are :data:`PAD_COLOUR` (the image is never shifted to fit)."""
    top, left, bottom, right = box
    patch = Image.new("RGB", (max(1, right - left), max(1, bottom - top)), PAD_COLOUR)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    src = (max(0, left), max(0, top), min(rgb.width, right), min(rgb.height, bottom))
    if src[2] > src[0] and src[3] > src[1]:
        patch.paste(rgb.crop(src), (src[0] - left, src[1] - top))
    return patch


# ---------------------------------------------------------------------------------------------------
# Measuring


def _bounds(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the True cells of a 2-D mask, bottom/right exclusive; None if empty."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0 or cols.numel() == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _inputs(model: LoadedModel, n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    height, width = model.input_size
    return torch.randn(n, model.input_channels, height, width, generator=generator)


def _units(map_h: int, map_w: int) -> list[tuple[int, int]]:
    """The middle cell, and its lower-right neighbour when the map has one (to measure the stride)."""
    cy, cx = (map_h - 1) // 2, (map_w - 1) // 2
    units = [(cy, cx)]
    if cy + 1 < map_h and cx + 1 < map_w:
        units.append((cy + 1, cx + 1))
    return units


def _gradient_boxes(model: LoadedModel, layer: str, map_hw: tuple[int, int]) -> list[tuple[int, int, int, int] | None]:
    info = layer_info(model, layer)
    units = _units(*map_hw)
    x = _inputs(model, _SAMPLES * len(units)).to(model.device).requires_grad_(True)
    tap = Tap(layer, clone=False, keep_graph=True, stop=True)  # the rest of the network is not needed
    with ActivationRecorder(model.module, taps=[tap], lock=model.lock) as recorder, torch.enable_grad():
        recorder.run(x)
    kept = recorder.outputs.get(layer)
    if kept is None:
        return [None] * len(units)
    out = as_chw(kept, info)
    total = torch.zeros((), dtype=out.dtype, device=out.device)
    for j, (uy, ux) in enumerate(units):
        total = total + out[j * _SAMPLES:(j + 1) * _SAMPLES, :, uy, ux].sum()
    (grad,) = torch.autograd.grad(total, x, allow_unused=True)
    if grad is None:
        return [None] * len(units)
    magnitude = grad.detach().abs().sum(dim=1).cpu()  # (N, H, W)
    return [_bounds(magnitude[j * _SAMPLES:(j + 1) * _SAMPLES].sum(dim=0) > 0) for j in range(len(units))]


def _perturbation_boxes(model: LoadedModel, layer: str, map_hw: tuple[int, int]) -> list[tuple[int, int, int, int] | None]:
    """Binary search, per side, for the first input row/column whose change moves the unit."""
    info = layer_info(model, layer)
    units = _units(*map_hw)
    base = _inputs(model, _SAMPLES)
    noise = _inputs(model, _SAMPLES, seed=1) * 3.0
    height, width = model.input_size

    def layer_output(batch: torch.Tensor) -> torch.Tensor:
        with ActivationRecorder(model.module, [layer], lock=model.lock) as rec, torch.inference_mode():
            model.module(batch.to(model.device))
            out = rec.outputs.get(layer)
        if out is None:
            raise LookupError(layer)
        return as_chw(out, info).float().cpu()

    def unit_values(batch: torch.Tensor) -> list[torch.Tensor]:
        try:
            chw = layer_output(batch)
        except Exception:  # noqa: BLE001 - a graph with a fixed batch of one: one input at a time
            chw = torch.cat([layer_output(batch[i:i + 1]) for i in range(len(batch))])
        return [chw[:, :, uy, ux] for uy, ux in units]

    reference = unit_values(base)

    def changed(masks: list[torch.Tensor]) -> list[list[bool]]:
        """For each mask (H, W), whether changing the pixels under it moves each unit (any sample)."""
        batch = torch.cat([torch.where(m, noise, base) for m in masks])
        values = unit_values(batch)
        result = []
        for u, ref in enumerate(reference):
            per_mask = values[u].reshape(len(masks), len(base), -1)
            scale = ref.abs().max().clamp_min(1e-6)
            diff = (per_mask - ref.reshape(1, len(base), -1)).abs().amax(dim=(1, 2))
            result.append([bool(d > 1e-5 * scale) for d in diff])
        return result

    rows = torch.arange(height).reshape(-1, 1).expand(height, width)
    cols = torch.arange(width).reshape(1, -1).expand(height, width)
    # side -> (line count, mask "the lines up to t" / "from t on")
    sides = {
        "top": (height, lambda t: rows <= t), "bottom": (height, lambda t: rows >= t),
        "left": (width, lambda t: cols <= t), "right": (width, lambda t: cols >= t),
    }
    found: list[dict[str, int]] = [{} for _ in units]
    lo = {(u, s): 0 for u in range(len(units)) for s in sides}
    hi = {(u, s): sides[s][0] - 1 for u in range(len(units)) for s in sides}
    for _ in range(int(math.ceil(math.log2(max(height, width)))) + 1):
        jobs = [(u, s) for u in range(len(units)) for s in sides if lo[(u, s)] < hi[(u, s)]]
        if not jobs:
            break
        masks = []
        for u, s in jobs:
            mid = (lo[(u, s)] + hi[(u, s)]) // 2 + (1 if s in ("bottom", "right") else 0)
            masks.append(sides[s][1](mid))
        answers = changed(masks)
        for j, (u, s) in enumerate(jobs):
            mid = (lo[(u, s)] + hi[(u, s)]) // 2 + (1 if s in ("bottom", "right") else 0)
            moved = answers[u][j]
            if s in ("top", "left"):  # smallest t such that the lines 0..t move the unit
                lo[(u, s)], hi[(u, s)] = (lo[(u, s)], mid) if moved else (mid + 1, hi[(u, s)])
            else:  # largest t such that the lines t..end move the unit
                lo[(u, s)], hi[(u, s)] = (mid, hi[(u, s)]) if moved else (lo[(u, s)], mid - 1)
    boxes: list[tuple[int, int, int, int] | None] = []
    whole = [torch.ones(height, width, dtype=torch.bool)]
    moves_at_all = changed(whole)
    for u in range(len(units)):
        if not moves_at_all[u][0]:
            boxes.append(None)
            continue
        for s in sides:
            found[u][s] = lo[(u, s)]
        boxes.append((found[u]["top"], found[u]["left"], found[u]["bottom"] + 1, found[u]["right"] + 1))
    return boxes


def _field_from(boxes: list[tuple[int, int, int, int] | None], model: LoadedModel, map_hw: tuple[int, int],
                method: str) -> ReceptiveField | None:
    height, width = model.input_size
    map_h, map_w = map_hw
    units = _units(map_h, map_w)
    first = boxes[0] if boxes else None
    if first is None:
        return None
    top, left, bottom, right = first
    ratio = (height / map_h, width / map_w)
    stride = ratio
    clipped = top == 0 or left == 0 or bottom == height or right == width
    if len(boxes) > 1 and boxes[1] is not None and not clipped:
        t2, l2, b2, r2 = boxes[1]
        if not (t2 == 0 or l2 == 0 or b2 == height or r2 == width):
            measured = ((t2 + b2 - top - bottom) / 2, (l2 + r2 - left - right) / 2)
            if measured[0] > 0 and measured[1] > 0:
                stride = measured
    cy, cx = units[0]
    if clipped:  # the field is cut by the border: centre it where the cell sits
        center = ((cy + 0.5) * ratio[0], (cx + 0.5) * ratio[1])
        size = (math.ceil(2 * max(center[0] - top, bottom - center[0])),
                math.ceil(2 * max(center[1] - left, right - center[1])))
    else:
        center = ((top + bottom) / 2, (left + right) / 2)
        size = (bottom - top, right - left)
    how = ("the gradient of one unit with respect to the input" if method == "gradient"
           else "changing parts of the input and watching one unit (the model runs outside autograd)")
    note = f"Measured from {how}: each cell sees {size[0]}×{size[1]} pixels of the model's input."
    if clipped:
        note += " The field reaches the image border, so it may be even larger than that."
    return ReceptiveField(size=size, stride=stride, offset=(center[0] - cy * stride[0], center[1] - cx * stride[1]),
                          method=method, note=note)


def _estimate(model: LoadedModel, map_hw: tuple[int, int]) -> ReceptiveField:
    height, width = model.input_size
    stride = (height / map_hw[0], width / map_hw[1])
    size = (min(height, max(1, round(3 * stride[0]))), min(width, max(1, round(3 * stride[1]))))
    return ReceptiveField(
        size=size, stride=stride, offset=(stride[0] / 2, stride[1] / 2), method="estimate",
        note=f"Estimated, not measured: each cell is taken to see {size[0]}×{size[1]} pixels (three times "
        f"the layer's step of {stride[0]:.3g} pixels), because this model could not be probed.",
    )


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, str], ReceptiveField]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def receptive_field(model: LoadedModel, layer: str) -> ReceptiveField:
    """The receptive field of ``layer``'s cells (measured once per model and layer, then remembered)."""
    cache_key = (model.key, layer)
    with _CACHE_LOCK:
        known = _CACHE.get(model.module, {}).get(cache_key)
    if known is not None:
        return known
    info = layer_info(model, layer)
    assert info.shape is not None
    map_hw = (int(info.shape[1]), int(info.shape[2]))
    field: ReceptiveField | None = None
    probes = (("gradient", _gradient_boxes),) if model.supports_gradients else ()
    probes += (("perturbation", _perturbation_boxes),)
    for method, probe in probes:
        try:
            field = _field_from(probe(model, layer, map_hw), model, map_hw, method)
        except Exception:  # noqa: BLE001 - a model that cannot be probed this way: try the next way
            field = None
        if field is not None:
            break
    if field is None:
        field = _estimate(model, map_hw)
    with _CACHE_LOCK:
        _CACHE.setdefault(model.module, {})[cache_key] = field
    return field
