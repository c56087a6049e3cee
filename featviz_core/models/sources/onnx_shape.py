"""ONNX shape, indexing and reduction operators as small PyTorch modules (see :mod:`.onnx_ops`).

Shape arguments (a Reshape's target shape, a Slice's starts ...) that are constant are bound when the
module is built; the others are read at run time, as exporters compute them from ``Shape`` nodes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from onnx import SparseTensorProto, TensorProto
from torch import nn

from .onnx_ops import NodeContext, UnsupportedOp, as_ints, generic, op, tensor_from_proto, torch_dtype

__all__: list[str] = []


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _runtime_or_const(ctx: NodeContext, index: int, attr: str | None = None) -> tuple[list[int] | None, bool]:
    """(the constant ints of input ``index`` or attribute ``attr``, whether they come at run time)."""
    if attr is not None and attr in ctx.attrs:
        return [int(v) for v in ctx.attrs[attr]], False
    if not ctx.has(index):
        return None, False
    value = ctx.ints(index)
    return value, value is None


@op("Constant")
def _constant(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    attrs = ctx.attrs
    if "value" in attrs:
        value = tensor_from_proto(attrs["value"])
    elif "value_float" in attrs:
        value = torch.tensor(float(attrs["value_float"]), dtype=torch.float32)
    elif "value_floats" in attrs:
        value = torch.tensor([float(v) for v in attrs["value_floats"]], dtype=torch.float32)
    elif "value_int" in attrs:
        value = torch.tensor(int(attrs["value_int"]), dtype=torch.int64)
    elif "value_ints" in attrs:
        value = torch.tensor([int(v) for v in attrs["value_ints"]], dtype=torch.int64)
    elif "sparse_value" in attrs:
        value = _dense(attrs["sparse_value"])
    else:
        raise UnsupportedOp("a Constant holding strings")
    return generic(ctx, lambda: value, [])


def _dense(sparse: SparseTensorProto) -> torch.Tensor:
    values = tensor_from_proto(sparse.values)
    indices = tensor_from_proto(sparse.indices).to(torch.int64)
    dims = [int(d) for d in sparse.dims]
    dense = torch.zeros(int(np.prod(dims)) if dims else 1, dtype=values.dtype)
    if indices.ndim == 2:  # one row of coordinates per value
        strides = torch.tensor([int(np.prod(dims[i + 1 :])) for i in range(len(dims))], dtype=torch.int64)
        indices = (indices * strides).sum(-1)
    dense[indices.reshape(-1)] = values.reshape(-1)
    return dense.reshape(dims)


@op("ConstantOfShape")
def _constant_of_shape(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    proto = ctx.attr("value")
    fill = tensor_from_proto(proto).reshape(-1) if isinstance(proto, TensorProto) else torch.zeros(1)
    return generic(
        ctx, lambda shape: torch.full(as_ints(shape), fill[0].item(), dtype=fill.dtype, device=shape.device)
    )


@op("Shape")
def _shape(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    return generic(ctx, lambda x: torch.tensor(list(x.shape)[start:end], dtype=torch.int64, device=x.device))


@op("Size")
def _size(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, lambda x: torch.tensor(x.numel(), dtype=torch.int64, device=x.device))


@op("Reshape")
def _reshape(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    allowzero = int(ctx.attr("allowzero", 0))

    def reshape(x: torch.Tensor, shape: Any) -> torch.Tensor:
        dims = as_ints(shape)
        if not allowzero:
            dims = [int(x.shape[i]) if d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)

    fixed = ctx.const(1)
    if fixed is not None:
        return generic(ctx, lambda x: reshape(x, fixed), [ctx.inputs[0]])
    return generic(ctx, reshape)


@op("Flatten")
def _flatten(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    axis = int(ctx.attr("axis", 1))

    def flatten(x: torch.Tensor) -> torch.Tensor:
        start = _axis(axis, x.ndim)
        return x.reshape(math.prod(x.shape[:start]), math.prod(x.shape[start:]))

    return generic(ctx, flatten, [ctx.inputs[0]])


@op("Transpose")
def _transpose(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    perm = ctx.attr("perm")
    return generic(ctx, lambda x: x.permute(*(perm if perm is not None else range(x.ndim - 1, -1, -1))))


@op("Concat")
def _concat(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    axis = int(ctx.attr("axis"))
    return generic(ctx, lambda *xs: torch.cat(xs, dim=axis))


@op("Split")
def _split(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    axis = int(ctx.attr("axis", 0))
    outputs = len(ctx.node.output)
    parts = int(ctx.attr("num_outputs", 0))
    attr_sizes = [int(v) for v in ctx.attr("split", [])] if ctx.opset < 13 else []

    def split(x: torch.Tensor, sizes: Any = None) -> tuple[torch.Tensor, ...]:
        dim = int(x.shape[_axis(axis, x.ndim)])
        chosen = as_ints(sizes) or attr_sizes
        if not chosen:
            count = parts or outputs
            chunk = -(-dim // count) if parts else dim // count
            chosen = [chunk] * (count - 1) + [dim - chunk * (count - 1)]
        return tuple(torch.split(x, chosen, dim=axis))

    return generic(ctx, split)


@op("Slice")
def _slice(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    if ctx.opset < 10:
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes = ctx.attr("axes")
        return generic(ctx, lambda x: _do_slice(x, starts, ends, axes, None), [ctx.inputs[0]])
    return generic(ctx, _do_slice)


def _do_slice(x: torch.Tensor, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> torch.Tensor:
    first, last = as_ints(starts), as_ints(ends)
    axes_list = as_ints(axes) or list(range(len(first)))
    steps_list = as_ints(steps) or [1] * len(first)
    index: list[slice] = [slice(None)] * x.ndim
    reversed_axes: list[tuple[int, int, int, int]] = []
    for start, end, axis, step in zip(first, last, axes_list, steps_list, strict=True):
        axis = _axis(axis, x.ndim)
        dim = int(x.shape[axis])
        start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
        if step > 0:
            index[axis] = slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
        else:
            reversed_axes.append((axis, min(max(start, 0), dim - 1), min(max(end, -1), dim - 1), step))
    result = x[tuple(index)]
    for axis, start, end, step in reversed_axes:
        positions = torch.arange(start, end, step, device=x.device, dtype=torch.int64)
        result = result.index_select(axis, positions)
    return result


@op("Squeeze")
def _squeeze(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    fixed = ctx.attr("axes") if ctx.opset < 13 else ctx.ints(1)

    def squeeze(x: torch.Tensor, axes: Any = None) -> torch.Tensor:
        chosen = as_ints(axes) if axes is not None else as_ints(fixed)
        if not chosen:
            return x.squeeze()
        return x.squeeze(tuple(_axis(a, x.ndim) for a in chosen))

    if ctx.opset >= 13 and ctx.has(1) and fixed is None:
        return generic(ctx, squeeze)
    return generic(ctx, lambda x: squeeze(x), [ctx.inputs[0]])


@op("Unsqueeze")
def _unsqueeze(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    fixed = ctx.attr("axes") if ctx.opset < 13 else ctx.ints(1)

    def unsqueeze(x: torch.Tensor, axes: Any = None) -> torch.Tensor:
        chosen = as_ints(axes) if axes is not None else as_ints(fixed)
        rank = x.ndim + len(chosen)
        for axis in sorted(_axis(a, rank) for a in chosen):
            x = x.unsqueeze(axis)
        return x

    if fixed is None:
        return generic(ctx, unsqueeze)
    return generic(ctx, lambda x: unsqueeze(x), [ctx.inputs[0]])


@op("Gather")
def _gather(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    axis = int(ctx.attr("axis", 0))

    def gather(data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        dim = _axis(axis, data.ndim)
        size = data.shape[dim]
        indices = indices.to(torch.int64)
        indices = torch.where(indices < 0, indices + size, indices)
        picked = data.index_select(dim, indices.reshape(-1))
        return picked.reshape((*data.shape[:dim], *indices.shape, *data.shape[dim + 1 :]))

    return generic(ctx, gather)


@op("GatherElements")
def _gather_elements(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    axis = int(ctx.attr("axis", 0))

    def gather(data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        dim = _axis(axis, data.ndim)
        indices = indices.to(torch.int64)
        return torch.gather(data, dim, torch.where(indices < 0, indices + data.shape[dim], indices))

    return generic(ctx, gather)


@op("Expand")
def _expand(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, lambda x, shape: x.expand(torch.broadcast_shapes(x.shape, tuple(as_ints(shape)))))


@op("Tile")
def _tile(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, lambda x, repeats: x.repeat(*as_ints(repeats)))


@op("Range")
def _range(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    def arange(start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)

    return generic(ctx, arange)


@op("ArgMax", "ArgMin")
def _argmax(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    axis, keep = int(ctx.attr("axis", 0)), bool(ctx.attr("keepdims", 1))
    last = bool(ctx.attr("select_last_index", 0))
    fn = torch.argmax if ctx.node.op_type == "ArgMax" else torch.argmin

    def arg(x: torch.Tensor) -> torch.Tensor:
        dim = _axis(axis, x.ndim)
        if not last:
            return fn(x, dim=dim, keepdim=keep)
        return x.shape[dim] - 1 - fn(x.flip(dim), dim=dim, keepdim=keep)

    return generic(ctx, arg)


_REDUCERS: dict[str, Any] = {
    "ReduceMean": lambda x, d, k: torch.mean(x, dim=d, keepdim=k),
    "ReduceMax": lambda x, d, k: torch.amax(x, dim=d, keepdim=k),
    "ReduceMin": lambda x, d, k: torch.amin(x, dim=d, keepdim=k),
    "ReduceSum": lambda x, d, k: torch.sum(x, dim=d, keepdim=k),
    "ReduceL1": lambda x, d, k: torch.sum(torch.abs(x), dim=d, keepdim=k),
    "ReduceL2": lambda x, d, k: torch.sqrt(torch.sum(x * x, dim=d, keepdim=k)),
    "ReduceSumSquare": lambda x, d, k: torch.sum(x * x, dim=d, keepdim=k),
    "ReduceLogSum": lambda x, d, k: torch.log(torch.sum(x, dim=d, keepdim=k)),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
}


@op(*_REDUCERS)
def _reduce(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    fn = _REDUCERS[ctx.node.op_type]
    keep, noop = bool(ctx.attr("keepdims", 1)), bool(ctx.attr("noop_with_empty_axes", 0))
    fixed = ctx.attr("axes")
    if fixed is None and ctx.has(1):
        fixed = ctx.ints(1)

    def reduce(x: torch.Tensor, axes: Any = None) -> torch.Tensor:
        chosen = as_ints(axes) if axes is not None else as_ints(fixed)
        if not chosen:
            if noop:
                return x
            chosen = list(range(x.ndim))
        return fn(x, [_axis(a, x.ndim) for a in chosen], keep)

    if fixed is None and ctx.has(1):
        return generic(ctx, reduce)
    return generic(ctx, lambda x: reduce(x), [ctx.inputs[0]])


@op("DepthToSpace")
def _depth_to_space(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    block, mode = int(ctx.attr("blocksize")), str(ctx.attr("mode", "DCR"))

    def depth_to_space(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if mode == "CRD":
            return torch.pixel_shuffle(x, block)
        y = x.reshape(n, block, block, c // (block * block), h, w).permute(0, 3, 4, 1, 5, 2)
        return y.reshape(n, c // (block * block), h * block, w * block)

    return generic(ctx, depth_to_space)


@op("SpaceToDepth")
def _space_to_depth(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    block = int(ctx.attr("blocksize"))

    def space_to_depth(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = x.reshape(n, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4)
        return y.reshape(n, c * block * block, h // block, w // block)

    return generic(ctx, space_to_depth)


def _dtype_check(value: int) -> torch.dtype:  # keep torch_dtype referenced for converters that cast
    return torch_dtype(value)
