"""Small ONNX graphs built in memory for the ONNX tests, and exports of torch modules."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from featviz_core.models.sources.onnx_torch import convert

FLOAT = TensorProto.FLOAT


def export(
    module: torch.nn.Module, size: int = 224, opset: int = 17, dynamo: bool = False, dynamic: bool = False
) -> bytes:
    """``module`` exported by torch.onnx (legacy exporter with ``dynamo=False``), input named ``image``."""
    buffer = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if dynamic and not dynamo:
        kwargs["dynamic_axes"] = {"image": {0: "batch", 2: "height", 3: "width"}}
    elif dynamic:
        kwargs["dynamic_shapes"] = (
            {2: torch.export.Dim("height", min=32, max=512), 3: torch.export.Dim("width", min=32, max=512)},
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (torch.zeros(1, 3, size, size),), buffer, opset_version=opset, dynamo=dynamo,
            input_names=["image"], output_names=["scores"], **kwargs,
        )  # fmt: skip
    return buffer.getvalue()


def tensor(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def model(
    nodes: Sequence[onnx.NodeProto],
    input_shape: Sequence[int | str | None],
    outputs: Sequence[str],
    initializers: Sequence[TensorProto] = (),
    opset: int = 17,
    input_name: str = "x",
    producer: str = "featviz-tests",
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes), "test", [helper.make_tensor_value_info(input_name, FLOAT, list(input_shape))],
        [onnx.ValueInfoProto(name=name) for name in outputs], list(initializers),
    )  # fmt: skip
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
    built.ir_version = 8
    try:  # typed outputs (the checker wants them), as shape inference finds them
        inferred = onnx.shape_inference.infer_shapes(built)
        known = {
            v.name: v
            for v in [*inferred.graph.value_info, *inferred.graph.output]
            if v.type.HasField("tensor_type")
        }
        for output in built.graph.output:
            if output.name in known:
                output.CopyFrom(known[output.name])
    except Exception:  # noqa: BLE001 - graphs made to be refused
        pass
    return built


def ranks_of(built: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(built, data_prop=True)
    ranks = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def run_ort(built: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(built.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {built.graph.input[0].name: x})


def run_converted(built: onnx.ModelProto, x: np.ndarray) -> list[torch.Tensor]:
    module = convert(built, built.graph.input[0].name, channels_last=False, ranks=ranks_of(built))
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return list(out) if isinstance(out, tuple) else [out]


def conv_weights(out_c: int, in_c: int, k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.3, (out_c, in_c, k, k)).astype(np.float32)


def constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    """A Constant node holding ``array`` (where today's exporters keep conv weights)."""
    return helper.make_node("Constant", [], [name], name=f"{name}_const", value=tensor(name, array))


def tf2onnx_like(size: int = 32, classes: int = 5) -> onnx.ModelProto:
    """The pattern of a Keras export: NHWC input, Transpose to NCHW, conv weights in Constant nodes,
    names with slashes and ``:0`` suffixes, a Transpose back to NHWC before the head, Softmax at the end."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Transpose", ["input_1"], ["model/conv/Conv2D__6:0"], name="model/conv/Conv2D__6", perm=[0, 3, 1, 2]),
        constant("model/conv/weights", conv_weights(8, 3, 3, 1)),
        constant("model/conv/bias", rng.normal(0, 0.1, 8).astype(np.float32)),
        helper.make_node("Conv", ["model/conv/Conv2D__6:0", "model/conv/weights", "model/conv/bias"], ["model/conv/BiasAdd:0"],
                         name="model/conv/BiasAdd", pads=[0, 0, 1, 1], strides=[2, 2], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["model/conv/BiasAdd:0"], ["model/conv/Relu:0"], name="model/conv/Relu"),
        constant("model/dw/weights", conv_weights(8, 1, 3, 2)),
        helper.make_node("Conv", ["model/conv/Relu:0", "model/dw/weights"], ["model/dw/depthwise:0"],
                         name="model/dw/depthwise", group=8, auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        helper.make_node("Transpose", ["model/dw/depthwise:0"], ["model/dw/nhwc:0"], name="model/dw/nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", ["model/dw/nhwc:0"], ["model/gap/Mean:0"], name="model/gap/Mean", axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["model/gap/Mean:0", "model/head/kernel"], ["model/head/MatMul:0"], name="model/head/MatMul"),
        helper.make_node("Softmax", ["model/head/MatMul:0"], ["head"], name="model/head/Softmax", axis=-1),
    ]  # fmt: skip
    kernel = tensor("model/head/kernel", rng.normal(0, 0.5, (8, classes)).astype(np.float32))
    return model(
        nodes,
        ["unk__12", size, size, 3],
        ["head"],
        [kernel],
        opset=13,
        input_name="input_1",
        producer="tf2onnx",
    )


def small_cnn(
    op_after_conv: str = "Relu",
    channels: int = 3,
    size: int = 16,
    opset: int = 17,
    dynamic: bool = False,
    **attrs: Any,
) -> onnx.ModelProto:
    """Conv -> ``op_after_conv`` -> Conv -> GlobalAveragePool -> Flatten -> Gemm (4 classes); with ``dynamic``,
    the input's height and width are left open."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]
        ),
        helper.make_node(op_after_conv, ["c"], ["a"], name=f"/act/{op_after_conv}", **attrs),
        helper.make_node("Conv", ["a", "w2"], ["c2"], name="/conv2/Conv", kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="/fc/Gemm", transB=1),
    ]
    inits = [
        tensor("w", conv_weights(6, channels, 3, 0)), tensor("b", rng.normal(0, 0.1, 6).astype(np.float32)),
        tensor("w2", conv_weights(6, 6, 1, 1)), tensor("fc_w", rng.normal(0, 0.5, (4, 6)).astype(np.float32)),
        tensor("fc_b", np.zeros(4, np.float32)),
    ]  # fmt: skip
    shape: list[int | str] = ["batch", channels, "height", "width"] if dynamic else [1, channels, size, size]
    return model(nodes, shape, ["y"], inits, opset=opset)
