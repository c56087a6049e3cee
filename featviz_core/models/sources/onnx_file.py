"""Reading an ONNX file's bytes safely, and what its graph says about its input.

The bytes are parsed in memory only (``ModelProto.FromString``), refused above :data:`MAX_ONNX_BYTES` before
parsing, and refused when any tensor (an initializer, a Constant node's value, a tensor inside a subgraph
or a function) points to external data: such a tensor names a file path, which featviz never opens.
Every refusal is a :class:`ModelLoadError` with one plain sentence.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import ModelProto, TensorProto

from ...errors import ModelLoadError
from .onnx_torch import opset_of

__all__ = [
    "MAX_ONNX_BYTES",
    "FLOAT_TYPES",
    "OnnxInfo",
    "check",
    "display_name",
    "inspect",
    "inspect_onnx",
    "parse",
    "the",
    "The",
]

_log = logging.getLogger(__name__)

MAX_ONNX_BYTES = 1 << 30
"""Largest ONNX file accepted (1 GiB); checked before the bytes are parsed."""

DEFAULT_SIDE = 224
DEFAULT_VOLUME_SIDE = 64
"""Depth, height and width fed to a 3-D graph whose input size is dynamic."""
FLOAT_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.DOUBLE: np.float64}


@dataclass(frozen=True)
class OnnxInfo:
    """What the file says about its input, before anything is converted or run.

    ``shape`` is the graph input's shape with dynamic dimensions as None; ``layout`` is ``"NCHW"`` or
    ``"NHWC"``, or ``"NCDHW"`` for a 3-D model (a 5-D input: volumes and clips). ``suggested_size`` is the
    (height, width) to feed: the graph's own when fixed, else 224 (64 for a 3-D model); ``depth`` is the slices a
    3-D model takes (the graph's own, else 64), None for a 2-D model.
    """

    input_name: str
    shape: tuple[int | None, ...]
    layout: str
    channels: int
    opset: int
    producer_name: str
    producer_version: str
    node_count: int
    outputs: tuple[str, ...]
    suggested_size: tuple[int, int]
    depth: int | None = None

    @property
    def spatial(self) -> tuple[int | None, int | None]:
        if self.layout == "NCDHW":
            return (self.shape[3], self.shape[4])
        return (self.shape[2], self.shape[3]) if self.layout == "NCHW" else (self.shape[1], self.shape[2])

    def feed_shape(self, size: tuple[int, int]) -> list[int]:
        """The whole input shape fed at ``size`` = (height, width): batch 1, the graph's layout."""
        if self.layout == "NCDHW":
            return [1, self.channels, int(self.depth or DEFAULT_VOLUME_SIDE), *size]
        return [1, self.channels, *size] if self.layout == "NCHW" else [1, *size, self.channels]

    @property
    def dynamic_size(self) -> bool:
        """True when the graph takes pictures of any height or width (the user chooses the size)."""
        return None in self.spatial

    @property
    def producer(self) -> str:
        """``"pytorch 2.14.1"``, ``"tf2onnx 1.17.0"`` ... or ``""`` when the file does not say."""
        return f"{self.producer_name} {self.producer_version}".strip()


# ---------------------------------------------------------------------------------------------------
# Reading and validating the bytes


def display_name(filename: str | None) -> str:
    name = os.path.basename(str(filename or "").replace("\\", "/")).strip()
    return name if len(name) <= 80 else name[:77] + "..."


def the(name: str) -> str:
    return f"the file {name}" if name else "this file"


def The(name: str) -> str:  # noqa: N802 - the sentence-start form of the()
    return f"The file {name}" if name else "This file"


_EXPORT_HINT = "Export the model with torch.onnx.export, tf2onnx or paddle2onnx and upload the .onnx file."
_SIGNATURES = (
    (b"\x89HDF\r\n\x1a\n", "a Keras .h5 file, not ONNX. Convert it first, for example with "
     "python -m tf2onnx.convert --keras model.h5 --output model.onnx, and upload the .onnx file."),
    (b"PK\x03\x04", "a zip archive (a PyTorch checkpoint or a .keras file), not ONNX. For PyTorch weights "
     "choose “Your checkpoint”; export other models to ONNX first."),
    (b"\x80\x02", "a pickled PyTorch file, not ONNX. Choose “Your checkpoint” for PyTorch weights."),
)  # fmt: skip


def parse(data: Any, filename: str | None) -> ModelProto:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelLoadError("load_onnx takes the file's bytes, for example open('model.onnx', 'rb').read().")
    name = display_name(filename)
    size = len(data)
    if size == 0:
        raise ModelLoadError(f"{The(name)} is empty. {_EXPORT_HINT}")
    if size > MAX_ONNX_BYTES:
        raise ModelLoadError(
            f"{The(name)} is too large ({size / (1 << 20):,.0f} MB; the limit is "
            f"{MAX_ONNX_BYTES >> 20:,} MB). Use a smaller model."
        )
    head = bytes(data[:8])
    for signature, what in _SIGNATURES:
        if head.startswith(signature) or (
            signature == b"\x80\x02" and head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"
        ):
            raise ModelLoadError(f"{The(name)} is {what}")
    try:
        model = ModelProto.FromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError):
        if head[:1] == b"\x08":  # ONNX files start with their IR version (field 1)
            raise ModelLoadError(
                f"{The(name)} is damaged or cut short: it could not be read to the end. "
                "Upload it again, or export it again."
            ) from None
        raise ModelLoadError(f"{The(name)} is not an ONNX model. {_EXPORT_HINT}") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node or not model.opset_import:
        raise ModelLoadError(f"{The(name)} is not an ONNX model. {_EXPORT_HINT}")
    _refuse_external_data(model, name)
    return model


def _external(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0


def _tensors_of(graph: onnx.GraphProto) -> Any:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Any:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        for sparse in [attribute.sparse_tensor, *attribute.sparse_tensors]:
            yield sparse.values
            yield sparse.indices
        for graph in [attribute.g, *attribute.graphs]:
            yield from _tensors_of(graph)


def _refuse_external_data(model: ModelProto, name: str) -> None:
    tensors = list(_tensors_of(model.graph))
    for function in model.functions:
        for node in function.node:
            tensors.extend(_node_tensors(node))
    if any(_external(t) for t in tensors):
        raise ModelLoadError(
            f"{The(name)} keeps its weights in separate files (ONNX external data), which featviz "
            "never opens; save the model as one file (onnx.save_model(model, 'model.onnx', "
            "save_as_external_data=False)) and upload that."
        )


def check(model: ModelProto, name: str) -> None:
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types; all mean "not valid"
        _log.warning("onnx checker refused %s: %s", name or "an upload", exc)
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{The(name)} is not a valid ONNX model (the onnx checker says: {reason}). "
            "Export it again with a current exporter."
        ) from None


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [
        int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in value.type.tensor_type.shape.dim
    ]


def _image_input(model: ModelProto, name: str) -> onnx.ValueInfoProto:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelLoadError(
            f"This ONNX model takes {len(inputs)} inputs; featviz feeds a model one picture, so it needs a "
            "model with exactly one input."
        )
    value = inputs[0]
    if not value.type.HasField("tensor_type") or value.type.tensor_type.elem_type not in FLOAT_TYPES:
        raise ModelLoadError(
            "This ONNX model's input is not a floating-point tensor, so featviz cannot feed it a picture; "
            "export it with a float32 image input."
        )
    dims = _dims(value)
    if len(dims) not in (4, 5):
        raise ModelLoadError(
            f"This ONNX model's input has {len(dims)} dimensions; featviz feeds pictures as (batch, channels, "
            "height, width) or (batch, height, width, channels) and volumes as (batch, channels, depth, height, "
            "width), so it needs a 4- or 5-dimensional input."
        )
    if dims[0] not in (None, 1):
        raise ModelLoadError(
            f"This ONNX model takes batches of exactly {dims[0]} pictures; export it with a batch size of 1 "
            "or a dynamic batch size."
        )
    return value


def _layout(dims: list[int | None]) -> tuple[str, int]:
    if len(dims) == 5:
        if dims[1] in (1, 3, None):
            return "NCDHW", dims[1] or 1
        if dims[4] in (1, 3):
            raise ModelLoadError(
                "This ONNX model takes volumes with their channels last (batch, depth, height, width, channels); "
                "featviz feeds 3-D models (batch, channels, depth, height, width): export it with channels first."
            )
        raise ModelLoadError(
            f"This ONNX model's input has {dims[1]} channels; featviz feeds 3-D models grey (1-channel) or colour "
            "(3-channel) volumes."
        )
    _n, a, _b, c = dims
    if a in (1, 3) or (a is None and c is None):
        return "NCHW", a or 3
    if c in (1, 3):
        return "NHWC", c
    channels = a if c is None or a is not None else c
    raise ModelLoadError(
        f"This ONNX model's input has {channels} channels; featviz feeds grey (1-channel) or colour "
        "(3-channel) pictures."
    )


def _producer(model: ModelProto) -> tuple[str, str]:
    if model.producer_name:  # tf2onnx writes "1.17.0 None" (its version and an absent git hash)
        return model.producer_name, model.producer_version.removesuffix(" None").strip()
    if any(o.startswith("p2o.") for node in model.graph.node for o in node.output):
        return "paddle2onnx", ""  # paddle2onnx leaves the producer empty but names values p2o.*
    return "", ""


def inspect(model: ModelProto, name: str) -> OnnxInfo:
    value = _image_input(model, name)
    dims = _dims(value)
    layout, channels = _layout(dims)
    depth: int | None = None
    side = DEFAULT_SIDE
    if layout == "NCDHW":
        depth, height, width = dims[2] or DEFAULT_VOLUME_SIDE, dims[3], dims[4]
        side = DEFAULT_VOLUME_SIDE
    else:
        height, width = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
    producer_name, producer_version = _producer(model)
    return OnnxInfo(
        input_name=value.name,
        shape=tuple(dims),
        layout=layout,
        channels=channels,
        opset=opset_of(model),
        producer_name=producer_name,
        producer_version=producer_version,
        node_count=len(model.graph.node),
        outputs=tuple(o.name for o in model.graph.output),
        suggested_size=(height or width or side, width or height or side),
        depth=depth,
    )


def inspect_onnx(data: bytes, filename: str | None = None) -> OnnxInfo:
    """Read and validate an ONNX file's bytes and describe its input (nothing is converted or run).

    Raises :class:`ModelLoadError` with one plain sentence for anything that is not a usable ONNX model.
    """
    name = display_name(filename)
    model = parse(data, filename)
    check(model, name)
    return inspect(model, name)
