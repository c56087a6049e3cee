"""An ONNX graph as a PyTorch module: one submodule per node that depends on the image.

Nodes whose inputs are all constant (``Constant`` nodes, an exporter's weight-preparation ``Identity`` or
``Transpose`` of an initializer) are evaluated once while converting, so conv weights held in Constant nodes
are as good as initializers. Every other node becomes a submodule of :class:`OnnxGraphModule`, named from
the node (see :func:`module_names`), so featviz's hooks, layer list and Grad-CAM work as on any model.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from onnx import GraphProto, ModelProto, NodeProto
from torch import nn

from . import onnx_layers, onnx_shape, onnx_spatial  # noqa: F401 - registers their converters
from .onnx_ops import CONVERTERS, NodeContext, UnsupportedOp, tensor_from_proto, torch_dtype

__all__ = [
    "OnnxGraphModule",
    "UnsupportedOp",
    "convert",
    "display_type",
    "image_nodes",
    "module_names",
    "opset_of",
]

_SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # the PyTorch (dynamo) exporter's module path of each node
_CONST_PREFIX = "_onnx_const_"
_RESERVED = set(dir(nn.Module)) | {"input_name", "output_names"}


def opset_of(model: ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def _readable(node: NodeProto, index: int) -> str:
    name = node.name
    for entry in node.metadata_props:
        if entry.key == _SCOPES_KEY:
            try:
                scopes = ast.literal_eval(entry.value)
            except (ValueError, SyntaxError):
                break
            if isinstance(scopes, list) and len(scopes) >= 2 and scopes[-2]:
                name = f"{scopes[-2]}/{node.op_type}"
    name = re.sub(r"[.#\s]", "_", name.lstrip("/"))
    return name or f"{node.op_type}_{index}"


def module_names(nodes: Sequence[NodeProto]) -> list[str]:
    """One unique, readable submodule name per node: the node's name without a leading ``/``, with ``.``,
    ``#`` and spaces (which module and layer names cannot hold) turned into ``_``; ``<OpType>_<index>`` for
    unnamed nodes. Nodes exported by PyTorch's current exporter are named after the module they came from."""
    taken: set[str] = set()
    names = []
    for index, node in enumerate(nodes):
        base = _readable(node, index)
        name, count = base, 2
        while name in taken or name in _RESERVED or name.startswith(_CONST_PREFIX):
            name, count = f"{base}_{count}", count + 1
        taken.add(name)
        names.append(name)
    return names


def image_nodes(graph: GraphProto, input_name: str) -> list[bool]:
    """For each node: does it depend on the graph's input (the image)? The others are constant."""
    dynamic = {input_name}
    flags = []
    for node in graph.node:
        depends = any(name in dynamic for name in node.input if name) or _subgraph_reads(node, dynamic)
        if depends:
            dynamic.update(name for name in node.output if name)
        flags.append(depends)
    return flags


def _subgraph_reads(node: NodeProto, names: set[str]) -> bool:
    for attribute in node.attribute:
        for graph in [attribute.g, *attribute.graphs]:
            for inner in graph.node:
                if any(name in names for name in inner.input) or _subgraph_reads(inner, names):
                    return True
    return False


_TORCH_NAMES = {
    "Relu": "ReLU", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "HardSwish": "Hardswish", "LeakyRelu": "LeakyReLU",
    "Elu": "ELU",
}  # fmt: skip
_SPATIAL_NAMES = {
    "Conv": "Conv2d", "BatchNormalization": "BatchNorm2d", "MaxPool": "MaxPool2d", "AveragePool": "AvgPool2d",
    "GlobalAveragePool": "AdaptiveAvgPool2d", "GlobalMaxPool": "AdaptiveMaxPool2d",
}  # fmt: skip


def display_type(node: NodeProto, rank: int | None) -> str:
    """The module type the conversion usually gives ``node`` (``Conv2d``, ``ReLU``, ``Add`` ...)."""
    if rank == 4 and node.op_type in _SPATIAL_NAMES:
        return _SPATIAL_NAMES[node.op_type]
    if rank == 5 and node.op_type in _SPATIAL_NAMES and not node.op_type.startswith("Global"):
        return _SPATIAL_NAMES[node.op_type].replace("2d", "3d")  # a 3-D model's (N, C, D, H, W) layers
    return _TORCH_NAMES.get(node.op_type, "Linear" if node.op_type == "Gemm" else node.op_type)


@dataclass(frozen=True)
class _Step:
    module: str
    feeds: tuple[str, ...]
    outputs: tuple[str, ...]
    drop: tuple[str, ...]


class OnnxGraphModule(nn.Module):
    """The converted graph. Takes (N, C, H, W) like every featviz model (permuted to (N, H, W, C) first when
    the graph's input is channels-last); returns the graph's output, or a tuple when it has several."""

    def __init__(
        self,
        input_name: str,
        output_names: Sequence[str],
        steps: Sequence[_Step],
        modules: dict[str, nn.Module],
        constants: dict[str, torch.Tensor],
        *,
        channels_last: bool,
        input_dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.input_name = input_name
        self.output_names = tuple(output_names)
        self._steps = tuple(steps)
        self._channels_last = channels_last
        self._input_dtype = input_dtype
        for name, module in modules.items():
            self.add_module(name, module)
        self._constant_buffers: list[tuple[str, str]] = []
        for index, (value_name, tensor) in enumerate(constants.items()):
            buffer = f"{_CONST_PREFIX}{index}"
            self.register_buffer(buffer, tensor, persistent=False)
            self._constant_buffers.append((value_name, buffer))

    def forward(self, x: torch.Tensor) -> Any:
        if self._channels_last:
            x = x.permute(0, 2, 3, 1)
        if x.dtype != self._input_dtype:
            x = x.to(self._input_dtype)
        env: dict[str, Any] = {self.input_name: x}
        buffers = self._buffers
        for value_name, buffer in self._constant_buffers:
            env[value_name] = buffers[buffer]
        modules = self._modules
        for step in self._steps:
            result = modules[step.module](*[env[name] if name else None for name in step.feeds])  # type: ignore[misc]
            if len(step.outputs) == 1:
                env[step.outputs[0]] = result[0] if isinstance(result, tuple) else result
            else:
                for name, value in zip(step.outputs, result, strict=False):
                    if name:
                        env[name] = value
            for name in step.drop:
                del env[name]
        outputs = [env[name] for name in self.output_names]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _evaluate(
    module: nn.Module, feeds: Sequence[str], constants: dict[str, torch.Tensor], node: NodeProto
) -> None:
    try:
        with torch.no_grad():
            result = module(*[constants[name] if name else None for name in feeds])
    except UnsupportedOp:
        raise
    except Exception as exc:
        raise UnsupportedOp(f"{node.op_type} on constants: {exc}") from exc
    values = result if isinstance(result, tuple) else (result,)
    for name, value in zip(node.output, values, strict=False):
        if name:
            constants[name] = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def convert(
    model: ModelProto, input_name: str, *, channels_last: bool, ranks: dict[str, int]
) -> OnnxGraphModule:
    """The PyTorch version of ``model`` (in eval mode). :class:`UnsupportedOp` when a node cannot be converted."""
    graph = model.graph
    opset = opset_of(model)
    constants: dict[str, torch.Tensor] = {t.name: tensor_from_proto(t) for t in graph.initializer}
    if len(graph.sparse_initializer):
        raise UnsupportedOp("sparse initializers")
    names = module_names(graph.node)
    flags = image_nodes(graph, input_name)
    dynamic = {input_name}
    raw_steps: list[tuple[str, list[str], list[str]]] = []
    modules: dict[str, nn.Module] = {}
    for node, name, depends in zip(graph.node, names, flags, strict=True):
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOp(f"operator {node.domain}.{node.op_type}")
        converter = CONVERTERS.get(node.op_type)
        if converter is None:
            raise UnsupportedOp(f"operator {node.op_type}")
        module, feeds = converter(NodeContext(node, opset, constants, ranks))
        missing = [n for n in feeds if n and n not in constants and n not in dynamic]
        if missing:
            raise UnsupportedOp(f"{node.op_type} reads {missing[0]}, which nothing computes")
        if not depends:
            _evaluate(module, feeds, constants, node)
            continue
        dynamic.update(n for n in node.output if n)
        modules[name] = module.eval()
        raw_steps.append((name, list(feeds), list(node.output)))
    outputs = [o.name for o in graph.output]
    last_use: dict[str, int] = {}
    for index, (_name, feeds, _outs) in enumerate(raw_steps):
        for value in feeds:
            if value in dynamic:
                last_use[value] = index
    keep = set(outputs)
    steps = []
    for index, (name, feeds, outs) in enumerate(raw_steps):
        produced = [o for o in outs if o and o not in keep and o not in last_use]  # never read again
        drop = [
            v for v in dict.fromkeys(feeds) if v in dynamic and v not in keep and last_use.get(v) == index
        ]
        steps.append(_Step(name, tuple(feeds), tuple(outs), tuple(drop + produced)))
    used = {v for _n, feeds, _o in raw_steps for v in feeds if v and v not in dynamic}
    used |= {o for o in outputs if o not in dynamic}
    if input_name in used:
        used.discard(input_name)
    input_type = next(i.type.tensor_type.elem_type for i in graph.input if i.name == input_name)
    return OnnxGraphModule(
        input_name,
        outputs,
        steps,
        modules,
        {name: constants[name] for name in sorted(used)},
        channels_last=channels_last,
        input_dtype=torch_dtype(input_type),
    ).eval()
