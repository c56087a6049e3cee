"""ONNX layers with spatial parameters as PyTorch modules: Conv, ConvTranspose, pooling, Pad, Resize.

``nn.Conv2d`` (and its 1-D/3-D siblings), ``nn.MaxPool2d``, ``nn.AvgPool2d`` ... hold the weights and run
the computation; ONNX's asymmetric and ``SAME_*`` paddings, which these layers cannot express, are applied
by an explicit pad before them. Resize follows the ONNX formulas for each coordinate mode (see
:func:`_resample`), so nearest and linear resizing give onnxruntime's values.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .onnx_ops import NodeContext, UnsupportedOp, as_ints, generic, op

__all__: list[str] = []

_SAME = ("SAME_UPPER", "SAME_LOWER")


def _torch_pads(begins: list[int], ends: list[int]) -> tuple[int, ...]:
    """ONNX per-dimension (begin, end) pads of the spatial dims -> F.pad's order (last dimension first)."""
    pairs: list[int] = []
    for begin, end in zip(reversed(begins), reversed(ends), strict=True):
        pairs += [begin, end]
    return tuple(pairs)


def _same_pads(
    sizes: list[int], kernel: list[int], strides: list[int], dilations: list[int], mode: str
) -> tuple[int, ...]:
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else big)
        ends.append(big if mode == "SAME_UPPER" else small)
    return _torch_pads(begins, ends)


class _Padded:
    """Mixin: pad the input explicitly (ONNX asymmetric or ``SAME_*`` padding) before the torch layer."""

    onnx_auto_pad: str = "NOTSET"
    onnx_pre_pad: tuple[int, ...] | None = None
    onnx_geometry: tuple[list[int], list[int], list[int]] = ([], [], [])  # kernel, strides, dilations
    onnx_pad_value: float = 0.0

    def _pad_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.onnx_auto_pad in _SAME:
            kernel, strides, dilations = self.onnx_geometry
            pads = _same_pads(list(x.shape[2:]), kernel, strides, dilations, self.onnx_auto_pad)
            return F.pad(x, pads, value=self.onnx_pad_value) if any(pads) else x
        if self.onnx_pre_pad is not None:
            return F.pad(x, self.onnx_pre_pad, value=self.onnx_pad_value)
        return x


def _spatial_class(name: str, base: type[nn.Module]) -> type[nn.Module]:
    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        return base.forward(self, self._pad_input(x))

    return type(name, (_Padded, base), {"forward": forward, "__module__": __name__})


_CONV = {n: _spatial_class(f"Conv{n}d", getattr(nn, f"Conv{n}d")) for n in (1, 2, 3)}
_MAXPOOL = {n: _spatial_class(f"MaxPool{n}d", getattr(nn, f"MaxPool{n}d")) for n in (1, 2, 3)}
_AVGPOOL_BASE = {n: getattr(nn, f"AvgPool{n}d") for n in (1, 2, 3)}


def _geometry(
    ctx: NodeContext, kernel: list[int]
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    n = len(kernel)
    strides = [int(v) for v in ctx.attr("strides", [1] * n)]
    dilations = [int(v) for v in ctx.attr("dilations", [1] * n)]
    pads = [int(v) for v in ctx.attr("pads", [0] * (2 * n))]
    return kernel, strides, dilations, pads[:n], pads[n:]


def _configure(
    layer: Any, ctx: NodeContext, geometry: tuple[list[int], ...], symmetric_ok: bool, value: float
) -> None:
    kernel, strides, dilations, begins, ends = geometry
    auto_pad = str(ctx.attr("auto_pad", "NOTSET"))
    layer.onnx_pad_value = value
    if auto_pad in _SAME:
        layer.onnx_auto_pad = auto_pad
        layer.onnx_geometry = (kernel, strides, dilations)
    elif auto_pad != "VALID" and not symmetric_ok and any(begins + ends):
        layer.onnx_pre_pad = _torch_pads(begins, ends)


def _layer_padding(ctx: NodeContext, geometry: tuple[list[int], ...], limit: bool) -> tuple[list[int], bool]:
    """(the torch layer's symmetric padding, whether the ONNX padding fits it)."""
    kernel, _strides, _dilations, begins, ends = geometry
    if str(ctx.attr("auto_pad", "NOTSET")) not in ("NOTSET", "") or begins != ends:
        return [0] * len(kernel), False
    if limit and any(p > k // 2 for p, k in zip(begins, kernel, strict=True)):
        return [0] * len(kernel), False
    return begins, True


@op("Conv")
def _conv(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    weight, bias = ctx.const(1), ctx.const(2)
    if weight is None or (ctx.has(2) and bias is None):
        raise UnsupportedOp("Conv with weights computed at run time")
    dims = weight.ndim - 2
    if dims not in _CONV:
        raise UnsupportedOp(f"{dims}-D Conv")
    kernel = [int(v) for v in ctx.attr("kernel_shape", list(weight.shape[2:]))]
    geometry = _geometry(ctx, kernel)
    padding, fits = _layer_padding(ctx, geometry, limit=False)
    groups = int(ctx.attr("group", 1))
    layer = _CONV[dims](
        int(weight.shape[1]) * groups,
        int(weight.shape[0]),
        kernel,
        stride=geometry[1],
        padding=padding,
        dilation=geometry[2],
        groups=groups,
        bias=bias is not None,
        device="meta",
    )
    with torch.no_grad():
        layer.weight = nn.Parameter(weight.contiguous())
        if bias is not None:
            layer.bias = nn.Parameter(bias.reshape(-1).contiguous())
    _configure(layer, ctx, geometry, fits, 0.0)
    return layer.eval(), [ctx.inputs[0]]


class ConvTranspose(nn.Module):
    """ONNX ConvTranspose: a transposed convolution without padding, then the ONNX crop / output padding."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, ctx: NodeContext) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.reshape(-1).contiguous())
        n = weight.ndim - 2
        self.dims = n
        self.kernel = [int(v) for v in ctx.attr("kernel_shape", list(weight.shape[2:]))]
        _kernel, self.strides, self.dilations, self.begins, self.ends = _geometry(ctx, self.kernel)
        self.groups = int(ctx.attr("group", 1))
        self.output_padding = [int(v) for v in ctx.attr("output_padding", [0] * n)]
        self.output_shape = [int(v) for v in ctx.attr("output_shape", [])]
        self.auto_pad = str(ctx.attr("auto_pad", "NOTSET"))
        self.fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]

    def _pads(self, sizes: list[int]) -> tuple[list[int], list[int]]:
        if not self.output_shape and self.auto_pad not in _SAME:
            return self.begins, self.ends
        targets = (
            self.output_shape[-self.dims :]
            if self.output_shape
            else [s * st for s, st in zip(sizes, self.strides, strict=True)]
        )
        begins, ends = [], []
        for size, k, s, d, extra, target in zip(
            sizes, self.kernel, self.strides, self.dilations, self.output_padding, targets, strict=True
        ):
            total = s * (size - 1) + extra + (k - 1) * d + 1 - target
            half = total // 2
            begins.append(half if self.auto_pad == "SAME_UPPER" else total - half)
            ends.append(total - half if self.auto_pad == "SAME_UPPER" else half)
        return begins, ends

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fn(x, self.weight, None, self.strides, 0, 0, self.groups, self.dilations)
        begins, ends = self._pads(list(x.shape[2:]))
        crop = _torch_pads(
            [-b for b in begins], [extra - e for e, extra in zip(ends, self.output_padding, strict=True)]
        )
        if any(crop):
            y = F.pad(y, crop)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, *([1] * self.dims))
        return y


@op("ConvTranspose")
def _conv_transpose(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    weight, bias = ctx.const(1), ctx.const(2)
    if weight is None or (ctx.has(2) and bias is None) or weight.ndim - 2 not in (1, 2, 3):
        raise UnsupportedOp("ConvTranspose with weights computed at run time")
    return ConvTranspose(weight, bias, ctx), [ctx.inputs[0]]


@op("MaxPool")
def _maxpool(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise UnsupportedOp("MaxPool with an Indices output")
    kernel = [int(v) for v in ctx.attr("kernel_shape")]
    geometry = _geometry(ctx, kernel)
    padding, fits = _layer_padding(ctx, geometry, limit=True)
    layer = _MAXPOOL[len(kernel)](
        kernel, geometry[1], padding, geometry[2], ceil_mode=bool(ctx.attr("ceil_mode", 0))
    )
    _configure(layer, ctx, geometry, fits, -math.inf)
    return layer, [ctx.inputs[0]]


class _AvgPoolPadded(nn.Module):
    """AveragePool whose padding the torch layer cannot express: pad with zeros, then divide by the count
    of real (or, with ``count_include_pad``, padded) elements under each window."""

    def __init__(self, pool: nn.Module, pads: Any, include: bool) -> None:
        super().__init__()
        self.pool, self.pads, self.include = pool, pads, include

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = self.pads(x) if callable(self.pads) else self.pads
        padded = F.pad(x, pads)
        total = self.pool(padded)
        if self.include:
            return total
        ones = F.pad(torch.ones_like(x[:1, :1]), pads)
        return total / self.pool(ones)


@op("AveragePool")
def _avgpool(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    kernel = [int(v) for v in ctx.attr("kernel_shape")]
    kernel, strides, dilations, begins, ends = _geometry(ctx, kernel)
    if any(d != 1 for d in dilations):
        raise UnsupportedOp("dilated AveragePool")
    padding, fits = _layer_padding(ctx, (kernel, strides, dilations, begins, ends), limit=True)
    ceil, include = bool(ctx.attr("ceil_mode", 0)), bool(ctx.attr("count_include_pad", 0))
    base = _AVGPOOL_BASE[len(kernel)]
    if fits:
        return base(kernel, strides, padding, ceil_mode=ceil, count_include_pad=include), [ctx.inputs[0]]
    auto_pad = str(ctx.attr("auto_pad", "NOTSET"))
    if auto_pad == "VALID":
        return base(kernel, strides, 0, ceil_mode=ceil), [ctx.inputs[0]]
    pads: Any = _torch_pads(begins, ends)
    if auto_pad in _SAME:

        def pads(x: torch.Tensor) -> tuple[int, ...]:
            return _same_pads(list(x.shape[2:]), kernel, strides, dilations, auto_pad)

    pool = base(kernel, strides, 0, ceil_mode=ceil, count_include_pad=True)
    return op_named("AveragePool", _AvgPoolPadded(pool, pads, include)), [ctx.inputs[0]]


def op_named(name: str, module: nn.Module) -> nn.Module:
    """``module`` re-classed under the operator's name (what featviz's layer labels show)."""
    module.__class__ = type(name, (type(module),), {"__module__": __name__})
    return module


@op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    average = ctx.node.op_type == "GlobalAveragePool"
    if ctx.rank(0) == 4:
        return (nn.AdaptiveAvgPool2d(1) if average else nn.AdaptiveMaxPool2d(1)), [ctx.inputs[0]]
    reduce = torch.mean if average else torch.amax
    return generic(ctx, lambda x: reduce(x, dim=tuple(range(2, x.ndim)), keepdim=True), [ctx.inputs[0]])


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@op("Pad")
def _pad(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    mode = str(ctx.attr("mode", "constant"))
    if mode not in _PAD_MODES:
        raise UnsupportedOp(f"Pad mode {mode}")
    torch_mode = _PAD_MODES[mode]

    def pad(x: torch.Tensor, pads: Any, value: Any = None, axes: Any = None) -> torch.Tensor:
        amounts = as_ints(pads)
        chosen = [a + x.ndim if a < 0 else a for a in (as_ints(axes) or range(x.ndim))]
        full = [[0, 0] for _ in range(x.ndim)]
        for i, axis in enumerate(chosen):
            full[axis] = [amounts[i], amounts[i + len(chosen)]]
        order = [p for pair in reversed(full) for p in pair]
        if torch_mode == "constant":
            fill = 0.0 if value is None or (isinstance(value, torch.Tensor) and value.numel() == 0) else value
            return F.pad(
                x, order, value=float(fill.reshape(-1)[0]) if isinstance(fill, torch.Tensor) else float(fill)
            )
        while order and order[-2:] == [0, 0]:
            order = order[:-2]
        return F.pad(x, order, mode=torch_mode) if order else x

    if ctx.opset < 11:
        fixed, value = ctx.attr("pads"), float(ctx.attr("value", 0.0))
        return generic(ctx, lambda x: pad(x, fixed, value), [ctx.inputs[0]])
    return generic(ctx, pad)


_COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def _resample(
    x: torch.Tensor, axis: int, out: int, scale: float, mode: str, coordinate: str, nearest: str
) -> torch.Tensor:
    """Resize ``x`` along ``axis`` to ``out`` samples as onnxruntime does (float32 coordinates)."""
    size = int(x.shape[axis])
    position = torch.arange(out, dtype=torch.float32, device=x.device)
    ratio = torch.tensor(scale, dtype=torch.float32)
    if coordinate == "align_corners":
        source = position * ((size - 1) / (out - 1)) if out > 1 else torch.zeros_like(position)
    elif coordinate == "asymmetric":
        source = position / ratio
    elif coordinate == "tf_half_pixel_for_nn":
        source = (position + 0.5) / ratio
    else:
        source = (position + 0.5) / ratio - 0.5
        if coordinate == "pytorch_half_pixel" and out <= 1:
            source = torch.zeros_like(source)
    if mode == "nearest":
        rounding = {
            "round_prefer_floor": lambda v: torch.ceil(v - 0.5), "round_prefer_ceil": lambda v: torch.floor(v + 0.5),
            "floor": torch.floor, "ceil": torch.ceil, "simple": torch.ceil if scale < 1 else torch.floor,
        }[nearest]  # fmt: skip
        index = rounding(source).clamp(0, size - 1).to(torch.int64)
        return x.index_select(axis, index)
    source = source.clamp(0, size - 1)
    low = torch.floor(source).to(torch.int64)
    high = torch.clamp(low + 1, max=size - 1)
    weight = (source - low.to(torch.float32)).to(x.dtype)
    shape = [1] * x.ndim
    shape[axis] = out
    weight = weight.reshape(shape)
    return x.index_select(axis, low) * (1 - weight) + x.index_select(axis, high) * weight


def _resizer(mode: str, coordinate: str, nearest: str, axes: list[int] | None) -> Any:
    def resize(x: torch.Tensor, scales: torch.Tensor | None, sizes: torch.Tensor | None) -> torch.Tensor:
        chosen = [a + x.ndim if a < 0 else a for a in axes] if axes else list(range(x.ndim))
        wanted = as_ints(sizes) if sizes is not None and sizes.numel() else []
        factors = (
            [float(v) for v in scales.reshape(-1).tolist()] if scales is not None and scales.numel() else []
        )
        for i, axis in enumerate(chosen):
            size = int(x.shape[axis])
            if wanted:
                out, scale = wanted[i], float(torch.tensor(wanted[i], dtype=torch.float32) / size)
            else:
                scale = factors[i]
                out = int(
                    float(torch.tensor(size, dtype=torch.float32) * torch.tensor(scale, dtype=torch.float32))
                )
            if out != size or scale != 1.0:
                x = _resample(x, axis, out, scale, mode, coordinate, nearest)
        return x

    return resize


@op("Resize", "Upsample")
def _resize(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    mode = str(ctx.attr("mode", "nearest"))
    mode = "linear" if mode in ("bilinear", "trilinear") else mode
    upsample = ctx.node.op_type == "Upsample"
    default = "asymmetric" if upsample or ctx.opset < 11 else "half_pixel"
    coordinate = str(ctx.attr("coordinate_transformation_mode", default))
    nearest = "simple" if upsample else str(ctx.attr("nearest_mode", "round_prefer_floor"))
    if mode not in ("nearest", "linear") or coordinate not in _COORDINATES or nearest not in _NEAREST:
        raise UnsupportedOp(f"Resize mode {mode} / {coordinate}")
    if int(ctx.attr("antialias", 0)) or str(ctx.attr("keep_aspect_ratio_policy", "stretch")) != "stretch":
        raise UnsupportedOp("Resize with antialiasing or a kept aspect ratio")
    resize = _resizer(mode, coordinate, nearest, ctx.attr("axes"))
    inputs = ctx.inputs
    if upsample and ctx.opset < 9:
        fixed = torch.tensor([float(v) for v in ctx.attr("scales")])
        return generic(ctx, lambda x: resize(x, fixed, None), [inputs[0]])
    if upsample or ctx.opset < 11:
        return generic(ctx, lambda x, scales: resize(x, scales, None), inputs[:2])
    feeds = [inputs[0], inputs[2] if ctx.has(2) else "", inputs[3] if ctx.has(3) else ""]
    return generic(ctx, resize, feeds)
