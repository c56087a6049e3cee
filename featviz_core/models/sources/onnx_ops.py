"""ONNX operators as small PyTorch modules, one converter per operator type.

A converter takes a :class:`NodeContext` (the node, its attributes, the opset, the values already known to be
constant) and returns the module for that node and the names of the values fed to it at run time, in order.
Real ``torch.nn`` layers are used where they exist (``nn.Conv2d`` holding the weights, ``nn.BatchNorm2d``,
``nn.ReLU``, ``nn.MaxPool2d`` ...), so featviz recognises them; the rest are small modules named after
their operator. Every module is differentiable where the operator is (Grad-CAM runs through them).
Operators not listed here raise :class:`UnsupportedOp`; the caller then runs the file with onnxruntime.
Shape operators live in :mod:`.onnx_shape`, the layers with spatial parameters (Conv, pooling, Resize, Pad)
in :mod:`.onnx_spatial`, linear algebra and normalisation in :mod:`.onnx_layers`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from onnx import NodeProto, TensorProto, helper, numpy_helper
from torch import nn

__all__ = [
    "CONVERTERS", "NodeContext", "UnsupportedOp", "as_ints", "first_input", "generic", "op", "tensor_from_proto",
    "torch_dtype",
]


class UnsupportedOp(Exception):
    """This node cannot be converted (operator, attribute or input form not supported)."""


_DTYPES: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32, TensorProto.DOUBLE: torch.float64, TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16, TensorProto.INT8: torch.int8, TensorProto.INT16: torch.int16,
    TensorProto.INT32: torch.int32, TensorProto.INT64: torch.int64, TensorProto.UINT8: torch.uint8,
    TensorProto.BOOL: torch.bool,
}  # fmt: skip


def torch_dtype(onnx_type: int) -> torch.dtype:
    if onnx_type not in _DTYPES:
        raise UnsupportedOp(f"tensor type {TensorProto.DataType.Name(onnx_type)}")
    return _DTYPES[onnx_type]


def tensor_from_proto(proto: TensorProto) -> torch.Tensor:
    """A TensorProto (data held in the proto itself: external data is refused before this) as a tensor."""
    if proto.data_type == TensorProto.BFLOAT16:
        raise UnsupportedOp("bfloat16 constants")
    torch_dtype(proto.data_type)
    array = np.array(numpy_helper.to_array(proto))  # a writable copy
    return torch.from_numpy(array)


@dataclass
class NodeContext:
    """What a converter may know about one node."""

    node: NodeProto
    opset: int
    constants: Mapping[str, torch.Tensor]
    ranks: Mapping[str, int]

    @functools.cached_property
    def attrs(self) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        for attribute in self.node.attribute:
            value = helper.get_attribute_value(attribute)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            elif isinstance(value, list) and value and isinstance(value[0], bytes):
                value = [v.decode("utf-8", "replace") for v in value]
            parsed[attribute.name] = value
        return parsed

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    @property
    def inputs(self) -> list[str]:
        return list(self.node.input)

    def has(self, index: int) -> bool:
        return index < len(self.node.input) and bool(self.node.input[index])

    def const(self, index: int) -> torch.Tensor | None:
        """The constant value fed at input ``index`` (None when absent or known only at run time)."""
        if not self.has(index):
            return None
        return self.constants.get(self.node.input[index])

    def need_const(self, index: int, what: str) -> torch.Tensor:
        value = self.const(index)
        if value is None:
            raise UnsupportedOp(f"{self.node.op_type} with a {what} computed at run time")
        return value

    def ints(self, index: int) -> list[int] | None:
        value = self.const(index)
        return None if value is None else [int(v) for v in value.reshape(-1).tolist()]

    def rank(self, index: int = 0) -> int | None:
        return self.ranks.get(self.node.input[index]) if self.has(index) else None


Converter = Callable[[NodeContext], tuple[nn.Module, list[str]]]
CONVERTERS: dict[str, Converter] = {}


def op(*names: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for name in names:
            CONVERTERS[name] = fn
        return fn

    return register


def as_ints(value: torch.Tensor | Sequence[int] | None) -> list[int]:
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.reshape(-1).tolist()]
    return [int(v) for v in value]


class OnnxOp(nn.Module):
    """Base of the generic per-operator modules: ``fn(*inputs)`` with the node's attributes bound."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *inputs: Any) -> Any:
        return self.fn(*inputs)


@functools.cache
def op_class(name: str) -> type[OnnxOp]:
    """The module class for operator ``name`` (its ``__name__`` is what featviz's layer labels show)."""
    return type(name, (OnnxOp,), {"__doc__": f"The ONNX operator {name}.", "__module__": __name__})


def generic(
    ctx: NodeContext, fn: Callable[..., Any], feeds: list[str] | None = None
) -> tuple[nn.Module, list[str]]:
    return op_class(ctx.node.op_type)(fn), ctx.inputs if feeds is None else feeds


def first_input(ctx: NodeContext) -> list[str]:
    return [ctx.inputs[0]]


# ---------------------------------------------------------------------------------------------------
# Activations


@op("Relu")
def _relu(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return nn.ReLU(), first_input(ctx)


@op("Sigmoid")
def _sigmoid(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return nn.Sigmoid(), first_input(ctx)


@op("Tanh")
def _tanh(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return nn.Tanh(), first_input(ctx)


@op("HardSwish")
def _hardswish(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return nn.Hardswish(), first_input(ctx)


@op("LeakyRelu")
def _leaky(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return nn.LeakyReLU(float(ctx.attr("alpha", 0.01))), first_input(ctx)


@op("Elu")
def _elu(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return nn.ELU(float(ctx.attr("alpha", 1.0))), first_input(ctx)


@op("Softplus")
def _softplus(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, F.softplus, first_input(ctx))


@op("Selu")
def _selu(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    alpha, gamma = (
        float(ctx.attr("alpha", 1.67326319217681884765625)),
        float(ctx.attr("gamma", 1.05070102214813232421875)),
    )
    return generic(ctx, lambda x: gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1)), first_input(ctx))


@op("HardSigmoid")
def _hardsigmoid(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    alpha, beta = float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))
    return generic(ctx, lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0), first_input(ctx))


@op("PRelu")
def _prelu(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, lambda x, slope: torch.where(x >= 0, x, x * slope))


@op("Gelu")
def _gelu(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    approximate = str(ctx.attr("approximate", "none"))
    return generic(ctx, lambda x: F.gelu(x, approximate=approximate), first_input(ctx))


@op("Mish")
def _mish(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, F.mish, first_input(ctx))


@op("Softsign")
def _softsign(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, F.softsign, first_input(ctx))


@op("Clip")
def _clip(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    if ctx.opset < 11:
        low, high = ctx.attr("min", None), ctx.attr("max", None)
    else:
        bounds = []
        for index in (1, 2):
            value = ctx.const(index)
            if ctx.has(index) and value is None:
                return generic(ctx, lambda x, lo=None, hi=None: torch.clamp(x, lo, hi))
            bounds.append(None if value is None else float(value.reshape(-1)[0]))
        low, high = bounds
    if low is None and high is None:
        return generic(ctx, lambda x: x, first_input(ctx))
    return generic(ctx, lambda x: torch.clamp(x, low, high), first_input(ctx))


@op("Softmax", "LogSoftmax")
def _softmax(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    fn = torch.softmax if ctx.node.op_type == "Softmax" else torch.log_softmax
    if ctx.opset >= 13:
        axis = int(ctx.attr("axis", -1))
        return generic(ctx, lambda x: fn(x, dim=axis), first_input(ctx))
    axis = int(ctx.attr("axis", 1))  # before opset 13: over the input flattened from ``axis`` on

    def coerced(x: torch.Tensor) -> torch.Tensor:
        start = axis % x.ndim if x.ndim else 0
        return fn(x.reshape(*x.shape[:start], -1), dim=-1).reshape(x.shape)

    return generic(ctx, coerced, first_input(ctx))


# ---------------------------------------------------------------------------------------------------
# Elementwise arithmetic and comparisons


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": _div, "Pow": torch.pow,
    "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt, "LessOrEqual": torch.le,
    "GreaterOrEqual": torch.ge, "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
    "MatMul": torch.matmul,
}  # fmt: skip
_UNARY: dict[str, Callable[[Any], Any]] = {
    "Sqrt": torch.sqrt, "Exp": torch.exp, "Log": torch.log, "Neg": torch.neg, "Abs": torch.abs,
    "Erf": torch.erf, "Reciprocal": torch.reciprocal, "Floor": torch.floor, "Ceil": torch.ceil,
    "Round": torch.round, "Sign": torch.sign, "Sin": torch.sin, "Cos": torch.cos, "Not": torch.logical_not,
    "IsNaN": torch.isnan, "Identity": lambda x: x,
}  # fmt: skip


@op(*_BINARY)
def _binary(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    fn = _BINARY[ctx.node.op_type]
    if ctx.node.op_type == "Pow":
        return generic(ctx, lambda a, b: torch.pow(a, b).to(a.dtype))
    return generic(ctx, fn)


@op(*_UNARY)
def _unary(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, _UNARY[ctx.node.op_type], first_input(ctx))


@op("Mod")
def _mod(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, torch.fmod if int(ctx.attr("fmod", 0)) else torch.remainder)


@op("Min", "Max", "Sum", "Mean")
def _variadic(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    kind = ctx.node.op_type
    pair = {"Min": torch.minimum, "Max": torch.maximum, "Sum": torch.add, "Mean": torch.add}[kind]

    def reduce(*xs: torch.Tensor) -> torch.Tensor:
        result = functools.reduce(pair, xs)
        return result / len(xs) if kind == "Mean" else result

    return generic(ctx, reduce)


@op("Where")
def _where(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, lambda c, x, y: torch.where(c.bool(), x, y))


@op("Dropout")
def _dropout(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        return generic(ctx, lambda x, *_: (x, torch.ones_like(x, dtype=torch.bool)), first_input(ctx))
    return generic(ctx, lambda x, *_: x, first_input(ctx))


@op("Cast")
def _cast(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    dtype = torch_dtype(int(ctx.attr("to")))
    return generic(ctx, lambda x: x.to(dtype), first_input(ctx))


@op("CastLike")
def _cast_like(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    return generic(ctx, lambda x, like: x.to(like.dtype))
