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

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from onnx import ModelProto

from ...errors import ModelLoadError
from ...layers.hooks import ActivationRecorder
from ..keys import bytes_digest, model_key, names_digest
from ..loaded import (
    NORMALIZATION_LABELS,
    NORMALIZATIONS,
    LoadedModel,
    ModelSource,
    Normalizer,
    standard_preprocessing,
)
from ..volume_input import no_picture, no_view
from .onnx_file import (
    FLOAT_TYPES,
    MAX_ONNX_BYTES,
    OnnxInfo,
    check,
    display_name,
    inspect,
    inspect_onnx,
    parse,
    the,
)
from .onnx_runtime import OnnxRuntimeModule, OrtRunner
from .onnx_torch import UnsupportedOp, convert, display_type, image_nodes, module_names
from .onnx_volume import volume_normalizer, volume_preprocessing, volume_provenance

__all__ = [
    "MAX_ONNX_BYTES",
    "NORMALIZATIONS",
    "NORMALIZATION_LABELS",
    "TOLERANCE",
    "OnnxInfo",
    "inspect_onnx",
    "load_onnx",
]

_log = logging.getLogger(__name__)

TOLERANCE = 1e-4
"""Largest accepted difference between the PyTorch conversion and onnxruntime, relative to max |value|."""

MIN_SIDE, MAX_SIDE = 8, 2048

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
    fixed = info.feed_shape(size)
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
    ranks[info.input_name] = len(fixed)
    return ranks, types


def _relative(actual: Any, expected: Any) -> float:
    a = np.asarray(
        actual.detach().to(torch.float64) if isinstance(actual, torch.Tensor) else actual, dtype=np.float64
    )
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
    tensor: torch.Tensor  # the (1, C, H, W) input fed to both ((1, C, D, H, W) for a 3-D model)
    values: dict[str, Any]  # onnxruntime's outputs: the graph's and every conv's
    convs: list[tuple[str, str]]  # (module name, ONNX value name) of each convolution


def _reference(
    model: ModelProto, runner: OrtRunner, info: OnnxInfo, size: tuple[int, int], normalize: Any, name: str
) -> _Reference:
    generator = torch.Generator().manual_seed(0)
    shape = info.feed_shape(size) if info.layout == "NCDHW" else [1, info.channels, *size]
    tensor = normalize(torch.rand(shape, generator=generator))
    names = module_names(model.graph.node)
    flags = image_nodes(model.graph, info.input_name)
    convs = [
        (names[i], node.output[0])
        for i, node in enumerate(model.graph.node)
        if flags[i] and node.op_type in ("Conv", "ConvTranspose") and node.output and node.output[0]
    ]
    feed = tensor.permute(0, 2, 3, 1) if info.layout == "NHWC" else tensor
    dtype = FLOAT_TYPES[
        next(i for i in model.graph.input if i.name == info.input_name).type.tensor_type.elem_type
    ]
    try:
        values = runner.run(np.ascontiguousarray(feed.numpy(), dtype=dtype), [value for _m, value in convs])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors: the file cannot be run
        _log.warning("onnxruntime could not run %s: %s", name or "an upload", exc)
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"onnxruntime cannot run {the(name)} ({reason}). Check that it runs with onnxruntime where it "
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
    stem = os.path.splitext(display_name(filename))[0]
    return stem or model.graph.name or "ONNX model"


def _runtime_module(
    model: ModelProto, runner: OrtRunner, info: OnnxInfo, ranks: dict[str, int]
) -> OnnxRuntimeModule:
    names = module_names(model.graph.node)
    flags = image_nodes(model.graph, info.input_name)
    nodes = [
        (name, display_type(node, ranks.get(node.input[0]) if node.input else None), tuple(node.output))
        for name, node, depends in zip(names, model.graph.node, flags, strict=True)
        if depends
    ]
    dtype = FLOAT_TYPES[
        next(i for i in model.graph.input if i.name == info.input_name).type.tensor_type.elem_type
    ]
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
    name = display_name(filename)
    model = parse(data, filename)
    check(model, name)
    info = inspect(model, name)
    size = _size(info, input_size)
    volume = volume_preprocessing(info, size, normalization) if info.layout == "NCDHW" else None
    normalize = Normalizer(normalization, info.channels) if volume is None else volume_normalizer(volume)
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
    provenance = _provenance(
        name, info, size, normalization, difference if gradients else why, len(reference.convs), categories,
        volume_provenance(info, volume, normalization) if volume is not None else None,
    )
    if module is None:
        module = _runtime_module(model, runner, info, ranks)
    names = () if categories is None else (names_digest(categories),)
    sized = f"{size[0]}x{size[1]}" if volume is None else "x".join(map(str, volume.size))
    key = model_key(ModelSource.ONNX, bytes_digest(data), sized, normalization, *names)
    if volume is not None:  # a 3-D model: it takes volumes and clips, never pictures
        return LoadedModel(
            module=module.eval(), name=_model_name(filename, model), key=key, categories=categories,
            input_channels=info.channels, input_size=size, transform=no_picture, view=no_view, source=ModelSource.ONNX,
            provenance=provenance, weights=None, supports_gradients=gradients, input_depth=volume.size[0],
            volume_transform=volume,
        )  # fmt: skip
    transform, view = standard_preprocessing(size, info.channels, normalization=normalization)
    return LoadedModel(
        module=module.eval(),
        name=_model_name(filename, model),
        key=key,
        categories=categories,
        input_channels=info.channels,
        input_size=size,
        transform=transform,
        view=view,
        source=ModelSource.ONNX,
        provenance=provenance,
        weights=None,
        supports_gradients=gradients,
    )


def _provenance(
    name: str,
    info: OnnxInfo,
    size: tuple[int, int],
    normalization: str,
    check: float | str,
    convs: int,
    categories: list[str] | None,
    volume: str | None = None,
) -> str:
    """One line: where the model came from, and whether PyTorch (checked) or onnxruntime runs it."""
    what = f"your ONNX file {name}" if name else "your ONNX file"
    bits = [
        f"exported by {info.producer}" if info.producer else "exporter not recorded",
        f"opset {info.opset}",
    ]
    bits.append(
        volume or f"input {info.channels}×{size[0]}×{size[1]} ({info.layout}), pixels scaled "
        f"{NORMALIZATION_LABELS[normalization]}"
    )
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
