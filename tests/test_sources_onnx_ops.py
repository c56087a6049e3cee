"""Each ONNX operator form the conversion knows gives onnxruntime's values (one small graph per case)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from onnx import helper

from featviz_core.models.sources.onnx_torch import UnsupportedOp, convert, module_names
from tests.onnx_builders import model, ranks_of, run_converted, run_ort, tensor

I64 = np.int64


def one(op: str, shape: list[int], *extra: Any, opset: int = 17, outputs: int = 1, **attrs: Any) -> Any:
    """A graph of one ``op`` node fed ``x`` and the constants ``extra`` (None = an omitted input)."""
    names, inits = ["x"], []
    for i, value in enumerate(extra):
        if value is None:
            names.append("")
        else:
            names.append(f"k{i}")
            inits.append(tensor(f"k{i}", np.asarray(value)))
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, outs, name=f"/{op}", **attrs)
    return model([node], shape, outs, inits, opset=opset), shape


F = np.float32
S4 = [1, 3, 9, 11]
CASES: dict[str, Any] = {
    "relu": one("Relu", S4), "leaky": one("LeakyRelu", S4, alpha=0.2), "elu": one("Elu", S4, alpha=0.7),
    "selu": one("Selu", S4), "sigmoid": one("Sigmoid", S4), "hardsigmoid": one("HardSigmoid", S4, alpha=0.3, beta=0.4),
    "hardswish": one("HardSwish", S4), "tanh": one("Tanh", S4), "softplus": one("Softplus", S4),
    "prelu": one("PRelu", S4, np.array([0.1, 0.2, 0.3], F).reshape(3, 1, 1)),
    "clip-attr": one("Clip", S4, opset=6, min=-0.5, max=0.6), "clip-inputs": one("Clip", S4, np.array(-0.2, F), np.array(0.3, F)),
    "clip-max-only": one("Clip", S4, None, np.array(0.3, F)),
    "add": one("Add", S4, np.ones((3, 1, 1), F)), "sub": one("Sub", S4, np.full((11,), 0.5, F)),
    "mul": one("Mul", S4, np.array(2.0, F)), "div": one("Div", S4, np.array(3.0, F)), "pow": one("Pow", S4, np.array(2.0, F)),
    "sqrt-abs": one("Sqrt", S4), "exp": one("Exp", S4), "neg": one("Neg", S4), "erf": one("Erf", S4),
    "min": one("Min", S4, np.zeros((1,), F)), "max": one("Max", S4, np.zeros((1,), F)),
    "sum": one("Sum", S4, np.ones((1,), F), np.ones((11,), F)), "mean": one("Mean", S4, np.ones((1,), F)),
    "softmax-13": one("Softmax", S4, axis=1), "softmax-11-coerced": one("Softmax", S4, opset=11, axis=2),
    "logsoftmax-11": one("LogSoftmax", [2, 6], opset=11), "flatten": one("Flatten", S4, axis=2),
    "reshape-0-minus1": one("Reshape", S4, np.array([0, -1, 11], I64)), "transpose": one("Transpose", S4, perm=[0, 2, 3, 1]),
    "concat": one("Concat", S4, np.ones((1, 2, 9, 11), F), axis=1),
    "split-attr": one("Split", S4, opset=11, outputs=2, axis=3, split=[5, 6]),
    "split-input": one("Split", S4, np.array([4, 5], I64), outputs=2, axis=2),
    "split-num-outputs": one("Split", S4, opset=18, outputs=3, axis=3, num_outputs=3),
    "split-equal": one("Split", S4, outputs=3, axis=1),
    "slice": one("Slice", S4, np.array([1, -1], I64), np.array([8, -9999], I64), np.array([2, 3], I64), np.array([2, -2], I64)),
    "slice-int-max": one("Slice", S4, np.array([2], I64), np.array([2**63 - 1], I64), np.array([-1], I64)),
    "slice-opset9": one("Slice", S4, opset=9, starts=[0, 1], ends=[2, 5], axes=[1, 2]),
    "squeeze-attr": one("Squeeze", [1, 3, 1, 5], opset=11, axes=[2]), "squeeze-input": one("Squeeze", [1, 3, 1, 5], np.array([0, 2], I64)),
    "squeeze-all": one("Squeeze", [1, 3, 1, 5]),
    "unsqueeze-attr": one("Unsqueeze", [3, 5], opset=11, axes=[0, -1]), "unsqueeze-input": one("Unsqueeze", [3, 5], np.array([1, 3], I64)),
    "gather": one("Gather", S4, np.array([[0, 2], [-1, 1]], I64), axis=1), "gather-scalar": one("Gather", S4, np.array(4, I64), axis=2),
    "matmul": one("MatMul", [1, 3, 9, 11], np.ones((11, 4), F) / 7),
    "gemm-trans": one("Gemm", [5, 4], np.arange(12, dtype=F).reshape(3, 4) / 10, np.ones(3, F), transB=1, alpha=0.5, beta=2.0),
    "gemm-transA": one("Gemm", [4, 5], np.arange(12, dtype=F).reshape(4, 3) / 10, transA=1),
    "gemm-linear": one("Gemm", [2, 4], np.arange(12, dtype=F).reshape(3, 4) / 10, np.ones(3, F), transB=1),
    "pad-attr": one("Pad", S4, opset=10, pads=[0, 0, 1, 2, 0, 0, 3, 0], value=1.5),
    "pad-reflect": one("Pad", S4, np.array([0, 0, 2, 1, 0, 0, 1, 3], I64), mode="reflect"),
    "pad-edge": one("Pad", S4, np.array([0, 0, 2, 1, 0, 0, 1, 3], I64), mode="edge"),
    "pad-constant-value": one("Pad", S4, np.array([0, 0, 1, 1, 0, 0, 1, 1], I64), np.array(-2.0, F)),
    "pad-axes": one("Pad", S4, np.array([1, 2, 3, 0], I64), None, np.array([2, 3], I64), opset=18),
    "reducemean-attr": one("ReduceMean", S4, axes=[2, 3], keepdims=1), "reducemax-input": one("ReduceMax", S4, np.array([1], I64), opset=18, keepdims=0),
    "reducesum-input": one("ReduceSum", S4, np.array([-1], I64), opset=13), "reducesum-all": one("ReduceSum", S4, opset=13, keepdims=0),
    "reducel2": one("ReduceL2", S4, axes=[1]),
    "expand": one("Expand", [1, 3, 1, 11], np.array([2, 1, 4, 1], I64)), "tile": one("Tile", S4, np.array([1, 2, 1, 2], I64)),
    "argmax": one("ArgMax", S4, axis=3, keepdims=0), "argmax-last": one("ArgMax", S4, axis=1, select_last_index=1),
    "lrn": one("LRN", [1, 7, 5, 5], size=5, alpha=0.01, beta=0.75, bias=2.0),
    "depth-to-space": one("DepthToSpace", [1, 8, 3, 4], blocksize=2), "depth-to-space-crd": one("DepthToSpace", [1, 8, 3, 4], blocksize=2, mode="CRD"),
    "space-to-depth": one("SpaceToDepth", [1, 2, 6, 4], blocksize=2),
    "instancenorm": one("InstanceNormalization", S4, np.array([1.0, 2.0, 0.5], F), np.array([0.1, 0.0, -0.1], F)),
    "layernorm": one("LayerNormalization", S4, np.linspace(0.5, 1.5, 11).astype(F), np.zeros(11, F), axis=-1),
    "batchnorm": one("BatchNormalization", S4, np.array([1, 2, 3], F), np.array([0, 1, 0], F), np.array([0.1, 0.2, 0.3], F), np.array([1, 2, 0.5], F)),
    "einsum": one("Einsum", [3, 4], np.ones((4, 5), F), equation="ij,jk->ik"),
    "conv-asym-pads": one("Conv", S4, np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(F), pads=[0, 1, 2, 1], strides=[2, 1]),
    "conv-same-lower": one("Conv", S4, np.random.default_rng(1).normal(size=(4, 3, 2, 3)).astype(F), auto_pad="SAME_LOWER", strides=[2, 2]),
    "conv-dilated-groups": one("Conv", [1, 4, 9, 11], np.random.default_rng(2).normal(size=(6, 2, 3, 3)).astype(F), np.ones(6, F), group=2, dilations=[2, 1], pads=[2, 1, 2, 1]),
    "conv-valid": one("Conv", S4, np.ones((2, 3, 3, 3), F), auto_pad="VALID"),
    "conv1d": one("Conv", [1, 3, 12], np.random.default_rng(3).normal(size=(4, 3, 3)).astype(F), pads=[1, 1]),
    "convtranspose": one("ConvTranspose", [1, 3, 5, 6], np.random.default_rng(4).normal(size=(3, 2, 3, 3)).astype(F), np.ones(2, F), strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1]),
    "convtranspose-output-shape": one("ConvTranspose", [1, 3, 5, 6], np.random.default_rng(5).normal(size=(3, 4, 3, 3)).astype(F), strides=[2, 2], output_shape=[10, 12]),
    "maxpool": one("MaxPool", S4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "maxpool-ceil": one("MaxPool", S4, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "maxpool-asym": one("MaxPool", S4, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]),
    "maxpool-same": one("MaxPool", S4, kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "avgpool": one("AveragePool", S4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "avgpool-include-pad": one("AveragePool", S4, kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
    "avgpool-ceil": one("AveragePool", S4, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "avgpool-asym": one("AveragePool", S4, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]),
    "avgpool-same": one("AveragePool", S4, kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "globalavg": one("GlobalAveragePool", S4), "globalmax": one("GlobalMaxPool", S4),
    "resize-nearest-asym-floor": one("Resize", S4, None, np.array([1, 1, 2, 2], F), coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    "resize-nearest-half-pixel": one("Resize", S4, None, np.array([1, 1, 1.7, 0.6], F)),
    "resize-nearest-sizes": one("Resize", S4, None, None, np.array([1, 3, 20, 7], I64), coordinate_transformation_mode="pytorch_half_pixel", nearest_mode="round_prefer_ceil"),
    "resize-linear-half-pixel": one("Resize", S4, None, np.array([1, 1, 2, 2], F), mode="linear"),
    "resize-linear-align-corners": one("Resize", S4, None, None, np.array([1, 3, 17, 5], I64), mode="linear", coordinate_transformation_mode="align_corners"),
    "resize-linear-asymmetric": one("Resize", S4, None, np.array([1, 1, 1.5, 3], F), mode="linear", coordinate_transformation_mode="asymmetric"),
    "resize-tf-half-pixel-nn": one("Resize", S4, np.array([], F), np.array([1, 1, 2, 2], F), opset=13, coordinate_transformation_mode="tf_half_pixel_for_nn"),
    "resize-axes": one("Resize", S4, None, np.array([2, 3], F), opset=18, axes=[2, 3]),
    "resize-opset10": one("Resize", S4, np.array([1, 1, 2, 2], F), opset=10),
    "upsample": one("Upsample", S4, np.array([1, 1, 2, 3], F), opset=9),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_matches_onnxruntime(case: str) -> None:
    built, shape = CASES[case]
    x = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    expected = run_ort(built, x)
    actual = run_converted(built, x)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert tuple(got.shape) == want.shape, case
        got_a, want_a = np.nan_to_num(got.numpy().astype(np.float64)), np.nan_to_num(want.astype(np.float64))
        assert np.array_equal(np.isnan(got.numpy()), np.isnan(want)), case
        scale = max(float(np.abs(want_a).max(initial=0.0)), 1e-12)
        assert float(np.abs(got_a - want_a).max(initial=0.0)) <= 1e-5 * scale, case


def test_shape_subgraph_of_an_export_runs_at_run_time() -> None:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as exporters write a flatten, with a Cast."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="/Shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="/Unsqueeze"),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="/Reshape"),
        helper.make_node("Cast", ["r"], ["y"], name="/Cast", to=11),
        helper.make_node("ConstantOfShape", ["s"], ["z"], name="/ConstantOfShape", value=tensor("v", np.array([2.5], np.float32))),
        helper.make_node("Range", ["start", "limit", "delta"], ["range"], name="/Range"),
        helper.make_node("Where", ["cond", "r", "r"], ["w"], name="/Where"),
        helper.make_node("Equal", ["n", "zero"], ["eq"], name="/Equal"),
    ]  # fmt: skip
    inits = [
        tensor("zero", np.array(0, I64)), tensor("axes", np.array([0], I64)), tensor("minus1", np.array([-1], I64)),
        tensor("start", np.array(1.0, np.float32)), tensor("limit", np.array(4.0, np.float32)),
        tensor("delta", np.array(0.5, np.float32)), tensor("cond", np.array([True, False] * 24)),
    ]  # fmt: skip
    built = model(nodes, [2, 3, 4, 4], ["y", "z", "range", "w", "eq"], inits)
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    for got, want in zip(run_converted(built, x), run_ort(built, x), strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_unknown_operator_is_reported_not_guessed() -> None:
    built, _shape = one("TopK", S4, np.array([2], I64), outputs=2)
    with pytest.raises(UnsupportedOp, match="TopK"):
        convert(built, "x", channels_last=False, ranks=ranks_of(built))


def test_constant_only_nodes_are_folded_and_names_are_readable() -> None:
    """Conv weights from a Constant node through an Identity: no module for either; names cleaned up."""
    w = np.random.default_rng(0).normal(size=(2, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["w0"], name="", value=tensor("w0", w)),
        helper.make_node("Identity", ["w0"], ["w"], name="Identity_0"),
        helper.make_node("Conv", ["x", "w"], ["c"], name="/layer1/layer1.0/conv1/Conv"),
        helper.make_node("Relu", ["c"], ["y"], name="block#2.relu"),
        helper.make_node("Relu", ["y"], ["z"], name="block.2#relu"),
    ]
    built = model(nodes, S4, ["z"])
    module = convert(built, "x", channels_last=False, ranks=ranks_of(built))
    names = [name for name, _m in module.named_children()]
    assert names == ["layer1/layer1_0/conv1/Conv", "block_2_relu", "block_2_relu_2"]
    assert module_names(built.graph.node)[0] == "Constant_0"
    assert isinstance(module.get_submodule("layer1/layer1_0/conv1/Conv"), torch.nn.Conv2d)
    x = np.random.default_rng(1).normal(size=S4).astype(np.float32)
    np.testing.assert_allclose(run_converted(built, x)[0].numpy(), run_ort(built, x)[0], rtol=1e-5, atol=1e-6)
