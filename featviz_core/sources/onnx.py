"""An ONNX file (exported by PyTorch, Keras/tf2onnx, Paddle/paddle2onnx ...) -> :class:`LoadedModel`.

Safety first: the file is parsed from bytes in memory only, refused above :data:`MAX_ONNX_BYTES`, and refused
when any tensor points to external data (a file path inside the model: such paths have had traversal
vulnerabilities); no path named by the model is ever opened.

The graph is converted to PyTorch (:mod:`.onnx_torch`) and the conversion is checked on every load: the
converted module and onnxruntime run the same seeded random input, and every convolution's output and the
final outputs must agree within :data:`TOLERANCE` (relative to the largest value). When the conversion is not
possible (an operator it does not know) or disagrees, onnxruntime itself runs the model
(:mod:`.onnx_runtime`): feature maps are then onnxruntime's exact values, and the views that need gradients
(Grad-CAM) are not available (``supports_gradients=False``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError
from onnx import ModelProto, TensorProto
from PIL import Image
from torchvision.transforms import functional as TF

from ..errors import ModelLoadError
from ..hooks import ActivationRecorder
from ..models import LoadedModel
from .onnx_runtime import OnnxRuntimeModule, OrtRunner
from .onnx_torch import UnsupportedOp, convert, display_type, image_nodes, module_names, opset_of

__all__ = ["MAX_ONNX_BYTES", "NORMALIZATIONS", "NORMALIZATION_LABELS", "TOLERANCE", "OnnxInfo", "inspect_onnx", "load_onnx"]

_log = logging.getLogger(__name__)

MAX_ONNX_BYTES = 1 << 30
"""Largest ONNX file accepted (1 GiB); checked before the bytes are parsed."""

TOLERANCE = 1e-4
"""Largest accepted difference between the PyTorch conversion and onnxruntime, relative to max |value|."""

MIN_SIDE, MAX_SIDE, DEFAULT_SIDE = 8, 2048, 224

NORMALIZATIONS: dict[str, str] = {
    "imagenet": "ImageNet mean and standard deviation: what most PyTorch and timm models were trained with.",
    "0-1": "Pixel values divided by 255 (0 to 1), with nothing subtracted.",
    "-1-1": "Pixel values scaled to -1 to 1: many TensorFlow/Keras and MobileNet-style models.",
    "0-255": "Raw pixel values (0 to 255): for Keras models whose preprocessing is inside the graph.",
}
"""The input scalings a user can choose, with one line of help each (ImageNet is the default)."""

NORMALIZATION_LABELS: dict[str, str] = {
    "imagenet": "ImageNet mean/std", "0-1": "0 to 1", "-1-1": "-1 to 1", "0-255": "0 to 255 (raw pixels)",
}  # fmt: skip

_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_FLOAT_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.DOUBLE: np.float64}


@dataclass(frozen=True)
class OnnxInfo:
    """What the file says about its input, before anything is converted or run.

    ``shape`` is the graph input's shape with dynamic dimensions as None; ``layout`` is ``"NCHW"`` or
    ``"NHWC"``. ``suggested_size`` is the (height, width) to feed: the graph's own when fixed, else 224.
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

    @property
    def spatial(self) -> tuple[int | None, int | None]:
        return (self.shape[2], self.shape[3]) if self.layout == "NCHW" else (self.shape[1], self.shape[2])

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


def _display_name(filename: str | None) -> str:
    name = os.path.basename(str(filename or "").replace("\\", "/")).strip()
    return name if len(name) <= 80 else name[:77] + "..."


def _the(name: str) -> str:
    return f"the file {name}" if name else "this file"


def _The(name: str) -> str:  # noqa: N802 - the sentence-start form of _the
    return f"The file {name}" if name else "This file"


_EXPORT_HINT = "Export the model with torch.onnx.export, tf2onnx or paddle2onnx and upload the .onnx file."
_SIGNATURES = (
    (b"\x89HDF\r\n\x1a\n", "a Keras .h5 file, not ONNX. Convert it first, for example with "
     "python -m tf2onnx.convert --keras model.h5 --output model.onnx, and upload the .onnx file."),
    (b"PK\x03\x04", "a zip archive (a PyTorch checkpoint or a .keras file), not ONNX. For PyTorch weights "
     "choose “Your checkpoint”; export other models to ONNX first."),
    (b"\x80\x02", "a pickled PyTorch file, not ONNX. Choose “Your checkpoint” for PyTorch weights."),
)  # fmt: skip


def _parse(data: Any, filename: str | None) -> ModelProto:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelLoadError("load_onnx takes the file's bytes, for example open('model.onnx', 'rb').read().")
    name = _display_name(filename)
    size = len(data)
    if size == 0:
        raise ModelLoadError(f"{_The(name)} is empty. {_EXPORT_HINT}")
    if size > MAX_ONNX_BYTES:
        raise ModelLoadError(
            f"{_The(name)} is too large ({size / (1 << 20):,.0f} MB; the limit is "
            f"{MAX_ONNX_BYTES >> 20:,} MB). Use a smaller model."
        )
    head = bytes(data[:8])
    for signature, what in _SIGNATURES:
        if head.startswith(signature) or (signature == b"\x80\x02" and head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
            raise ModelLoadError(f"{_The(name)} is {what}")
    try:
        model = ModelProto.FromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError):
        if head[:1] == b"\x08":  # ONNX files start with their IR version (field 1)
            raise ModelLoadError(
                f"{_The(name)} is damaged or cut short: it could not be read to the end. "
                "Upload it again, or export it again."
            ) from None
        raise ModelLoadError(f"{_The(name)} is not an ONNX model. {_EXPORT_HINT}") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node or not model.opset_import:
        raise ModelLoadError(f"{_The(name)} is not an ONNX model. {_EXPORT_HINT}")
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
            f"{_The(name)} keeps its weights in separate files (ONNX external data), which featviz "
            "never opens; save the model as one file (onnx.save_model(model, 'model.onnx', "
            "save_as_external_data=False)) and upload that."
        )


def _check(model: ModelProto, name: str) -> None:
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types; all mean "not valid"
        _log.warning("onnx checker refused %s: %s", name or "an upload", exc)
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{_The(name)} is not a valid ONNX model (the onnx checker says: {reason}). "
            "Export it again with a current exporter."
        ) from None


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim]


def _image_input(model: ModelProto, name: str) -> onnx.ValueInfoProto:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelLoadError(
            f"This ONNX model takes {len(inputs)} inputs; featviz feeds a model one picture, so it needs a "
            "model with exactly one input."
        )
    value = inputs[0]
    if not value.type.HasField("tensor_type") or value.type.tensor_type.elem_type not in _FLOAT_TYPES:
        raise ModelLoadError(
            "This ONNX model's input is not a floating-point tensor, so featviz cannot feed it a picture; "
            "export it with a float32 image input."
        )
    dims = _dims(value)
    if len(dims) != 4:
        raise ModelLoadError(
            f"This ONNX model's input has {len(dims)} dimensions; featviz feeds pictures as (batch, channels, "
            "height, width) or (batch, height, width, channels), so it needs a 4-dimensional input."
        )
    if dims[0] not in (None, 1):
        raise ModelLoadError(
            f"This ONNX model takes batches of exactly {dims[0]} pictures; export it with a batch size of 1 "
            "or a dynamic batch size."
        )
    return value


def _layout(dims: list[int | None]) -> tuple[str, int]:
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


def _inspect(model: ModelProto, name: str) -> OnnxInfo:
    value = _image_input(model, name)
    dims = _dims(value)
    layout, channels = _layout(dims)
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
        suggested_size=(height or width or DEFAULT_SIDE, width or height or DEFAULT_SIDE),
    )


def inspect_onnx(data: bytes, filename: str | None = None) -> OnnxInfo:
    """Read and validate an ONNX file's bytes and describe its input (nothing is converted or run).

    Raises :class:`ModelLoadError` with one plain sentence for anything that is not a usable ONNX model.
    """
    name = _display_name(filename)
    model = _parse(data, filename)
    _check(model, name)
    return _inspect(model, name)


# ---------------------------------------------------------------------------------------------------
# Preprocessing


def _normalizer(normalization: str, channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    if normalization not in NORMALIZATIONS:
        raise ModelLoadError(f"Unknown normalization '{normalization}'; use one of: {', '.join(NORMALIZATIONS)}.")
    if normalization == "imagenet":
        mean = torch.tensor(_MEAN if channels == 3 else (sum(_MEAN) / 3,)).reshape(-1, 1, 1)
        std = torch.tensor(_STD if channels == 3 else (sum(_STD) / 3,)).reshape(-1, 1, 1)
        return lambda x: (x - mean) / std
    if normalization == "-1-1":
        return lambda x: x * 2.0 - 1.0
    if normalization == "0-255":
        return lambda x: x * 255.0
    return lambda x: x


def _view(size: tuple[int, int]) -> Callable[[Image.Image], Image.Image]:
    """Resize so the picture covers ``size`` = (height, width) keeping its aspect ratio, then centre-crop."""
    height, width = size

    def view(image: Image.Image) -> Image.Image:
        scale = max(height / image.height, width / image.width)
        resized = (max(height, round(image.height * scale)), max(width, round(image.width * scale)))
        if resized != (image.height, image.width):
            image = TF.resize(image, list(resized), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        return TF.center_crop(image, [height, width])

    return view


def _size(info: OnnxInfo, input_size: tuple[int, int] | None) -> tuple[int, int]:
    fixed = info.spatial
    if input_size is None:
        return info.suggested_size
    try:
        size = (int(input_size[0]), int(input_size[1]))
    except (TypeError, ValueError, IndexError):
        raise ModelLoadError("The input size must be two whole numbers: (height, width).") from None
    if any(f is not None and f != s for f, s in zip(fixed, size, strict=True)):
        shown = "×".join(str(f) if f else "any" for f in fixed)
        raise ModelLoadError(
            f"This ONNX model takes pictures of {shown} pixels (height × width, fixed in the file), not "
            f"{size[0]}×{size[1]}; leave the size out to use the model's own."
        )
    if not all(MIN_SIDE <= s <= MAX_SIDE for s in size):
        raise ModelLoadError(f"The input height and width must be between {MIN_SIDE} and {MAX_SIDE} pixels.")
    return size


# ---------------------------------------------------------------------------------------------------
# Shapes, the reference run and the check of the conversion


def _infer(model: ModelProto, info: OnnxInfo, size: tuple[int, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(rank, element type) of every value whose type shape inference finds, at the chosen input size."""
    value = next(i for i in model.graph.input if i.name == info.input_name)
    dims = value.type.tensor_type.shape.dim
    saved = [onnx.TensorShapeProto.Dimension() for _ in dims]
    for kept, dim in zip(saved, dims, strict=True):
        kept.CopyFrom(dim)
    fixed = [1, info.channels, *size] if info.layout == "NCHW" else [1, *size, info.channels]
    try:
        for dim, length in zip(dims, fixed, strict=True):
            dim.dim_value = length
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - shape inference is a help, not a requirement
        _log.info("shape inference failed: %r", exc)
        inferred = model
    finally:
        for dim, kept in zip(dims, saved, strict=True):
            dim.CopyFrom(kept)
    ranks: dict[str, int] = {}
    types: dict[str, int] = {}
    graph = inferred.graph
    for entry in [*graph.value_info, *graph.input, *graph.output]:
        tensor = entry.type.tensor_type
        if entry.type.HasField("tensor_type"):
            if tensor.elem_type:
                types[entry.name] = tensor.elem_type
            if tensor.HasField("shape"):
                ranks[entry.name] = len(tensor.shape.dim)
    for initializer in graph.initializer:
        ranks[initializer.name] = len(initializer.dims)
    ranks[info.input_name] = 4
    return ranks, types


def _relative(actual: Any, expected: Any) -> float:
    a = np.asarray(actual.detach().to(torch.float64) if isinstance(actual, torch.Tensor) else actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return math.inf
    if not e.size:
        return 0.0
    same_nan = np.isnan(a) & np.isnan(e)
    diff = float(np.max(np.where(same_nan, 0.0, np.abs(a - e))))
    scale = float(np.max(np.abs(np.nan_to_num(e))))
    if math.isnan(diff):
        return math.inf
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


@dataclass
class _Reference:
    tensor: torch.Tensor  # the (1, C, H, W) input fed to both
    values: dict[str, Any]  # onnxruntime's outputs: the graph's and every conv's
    convs: list[tuple[str, str]]  # (module name, ONNX value name) of each convolution


def _reference(model: ModelProto, runner: OrtRunner, info: OnnxInfo, size: tuple[int, int], normalize: Any, name: str) -> _Reference:
    generator = torch.Generator().manual_seed(0)
    tensor = normalize(torch.rand((1, info.channels, *size), generator=generator))
    names = module_names(model.graph.node)
    flags = image_nodes(model.graph, info.input_name)
    convs = [
        (names[i], node.output[0])
        for i, node in enumerate(model.graph.node)
        if flags[i] and node.op_type in ("Conv", "ConvTranspose") and node.output and node.output[0]
    ]
    feed = tensor.permute(0, 2, 3, 1) if info.layout == "NHWC" else tensor
    dtype = _FLOAT_TYPES[next(i for i in model.graph.input if i.name == info.input_name).type.tensor_type.elem_type]
    try:
        values = runner.run(np.ascontiguousarray(feed.numpy(), dtype=dtype), [value for _m, value in convs])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors: the file cannot be run
        _log.warning("onnxruntime could not run %s: %s", name or "an upload", exc)
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"onnxruntime cannot run {_the(name)} ({reason}). Check that it runs with onnxruntime where it "
            "was exported, or export it again with a current exporter."
        ) from None
    finally:
        runner.forget()
    return _Reference(tensor, values, convs)


def _verify(module: torch.nn.Module, reference: _Reference, runner: OrtRunner) -> float:
    """The largest relative difference between the converted module and onnxruntime (convs and outputs)."""
    layers = [module_name for module_name, _value in reference.convs]
    with ActivationRecorder(module, layers, clone=False) as recorder, torch.inference_mode():
        output = module(reference.tensor)
        recorded = dict(recorder.outputs)
    outputs = output if isinstance(output, tuple) else (output,)
    worst = 0.0
    for module_name, value in reference.convs:
        if module_name not in recorded:
            return math.inf
        worst = max(worst, _relative(recorded[module_name], reference.values[value]))
    for got, name in zip(outputs, runner.output_names, strict=True):
        worst = max(worst, _relative(got, reference.values[name]))
    return worst


# ---------------------------------------------------------------------------------------------------
# The source


def _model_name(filename: str | None, model: ModelProto) -> str:
    stem = os.path.splitext(_display_name(filename))[0]
    return stem or model.graph.name or "ONNX model"


def _runtime_module(model: ModelProto, runner: OrtRunner, info: OnnxInfo, ranks: dict[str, int]) -> OnnxRuntimeModule:
    names = module_names(model.graph.node)
    flags = image_nodes(model.graph, info.input_name)
    nodes = [
        (name, display_type(node, ranks.get(node.input[0]) if node.input else None), tuple(node.output))
        for name, node, depends in zip(names, model.graph.node, flags, strict=True)
        if depends
    ]
    dtype = _FLOAT_TYPES[next(i for i in model.graph.input if i.name == info.input_name).type.tensor_type.elem_type]
    return OnnxRuntimeModule(runner, nodes, channels_last=info.layout == "NHWC", input_dtype=np.dtype(dtype))


def _check_categories(categories: list[str] | None, reference: _Reference, runner: OrtRunner) -> None:
    if categories is None:
        return
    outputs = [reference.values[name] for name in runner.output_names]
    if len(outputs) == 1 and np.ndim(outputs[0]) == 2 and np.shape(outputs[0])[0] == 1:
        classes = int(np.shape(outputs[0])[1])
        if len(categories) != classes:
            raise ModelLoadError(
                f"The class-name file has {len(categories)} names but this model gives {classes} scores; "
                "give one name per output, in order."
            )


def load_onnx(
    data: bytes,
    filename: str | None = None,
    *,
    input_size: tuple[int, int] | None = None,
    normalization: str = "imagenet",
    categories: list[str] | None = None,
) -> LoadedModel:
    """An ONNX model from its file's bytes, converted to PyTorch and checked against onnxruntime.

    ``input_size`` = (height, width) is needed only when the graph's size is dynamic (default: the graph's
    own size, or 224×224). ``normalization`` is one of :data:`NORMALIZATIONS`. When the conversion is not
    possible or disagrees with onnxruntime, onnxruntime runs the model (``supports_gradients=False``).
    Anything that is not a usable ONNX model raises :class:`ModelLoadError` with one plain sentence.
    """
    name = _display_name(filename)
    model = _parse(data, filename)
    _check(model, name)
    info = _inspect(model, name)
    size = _size(info, input_size)
    normalize = _normalizer(normalization, info.channels)
    if categories is not None:
        categories = [str(c) for c in categories]
    ranks, types = _infer(model, info, size)
    runner = OrtRunner(model, types)
    reference = _reference(model, runner, info, size, normalize, name)
    _check_categories(categories, reference, runner)
    module: torch.nn.Module | None = None
    why, difference = "", math.inf
    try:
        converted = convert(model, info.input_name, channels_last=info.layout == "NHWC", ranks=ranks)
        difference = _verify(converted, reference, runner)
        if difference <= TOLERANCE:
            module = converted
        else:
            why = f"the PyTorch conversion differs from onnxruntime by {difference:.1e} (relative)"
    except UnsupportedOp as exc:
        why = f"featviz cannot convert {exc} to PyTorch"
    except Exception as exc:  # noqa: BLE001 - a conversion that breaks falls back to onnxruntime
        _log.warning("ONNX conversion of %s failed: %r", name or "an upload", exc)
        why = "the conversion to PyTorch failed"
    gradients = module is not None
    provenance = _provenance(name, info, size, normalization, difference if gradients else why, len(reference.convs), categories)
    if module is None:
        module = _runtime_module(model, runner, info, ranks)
    digest = hashlib.sha256(bytes(data)).hexdigest()[:16]
    key = f"onnx:{digest}:{size[0]}x{size[1]}:{normalization}"
    if categories is not None:
        key += ":" + hashlib.sha256("\n".join(categories).encode("utf-8")).hexdigest()[:8]
    view = _view(size)
    return LoadedModel(
        module=module.eval(),
        name=_model_name(filename, model),
        key=key,
        categories=categories,
        input_channels=info.channels,
        input_size=size,
        transform=lambda image: normalize(TF.to_tensor(view(image))),
        view=view,
        source="onnx",
        provenance=provenance,
        weights=None,
        supports_gradients=gradients,
    )


def _provenance(
    name: str, info: OnnxInfo, size: tuple[int, int], normalization: str, check: float | str, convs: int,
    categories: list[str] | None,
) -> str:
    """One line: where the model came from, and whether PyTorch (checked) or onnxruntime runs it."""
    what = f"your ONNX file {name}" if name else "your ONNX file"
    bits = [f"exported by {info.producer}" if info.producer else "exporter not recorded", f"opset {info.opset}"]
    bits.append(f"input {info.channels}×{size[0]}×{size[1]} ({info.layout}), pixels scaled {NORMALIZATION_LABELS[normalization]}")
    if categories is not None:
        bits.append("class names from your file")
    text = f"{what} — {', '.join(bits)}; "
    if isinstance(check, float):
        where = f"{convs} convolution{'s' if convs != 1 else ''} and the output" if convs else "the output"
        return text + (
            f"converted to PyTorch and checked against onnxruntime on {where} "
            f"(largest relative difference {check:.0e})"
        )
    return text + (
        f"run by onnxruntime because {check}: the feature maps are onnxruntime's own values, but Grad-CAM and "
        "other views that need gradients are not available for this file"
    )
