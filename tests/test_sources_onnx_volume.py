"""ONNX files with a 5-D input (batch, channels, depth, height, width): 3-D models whose maps equal onnxruntime's,
converted to PyTorch or run by onnxruntime; and the 5-D inputs featviz cannot feed, refused in one sentence."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

import featviz_core.models.sources.onnx as onnx_source
from featviz_core import extract, gradcam, inspect_onnx, list_layers, load_onnx
from featviz_core.errors import InputKindError, ModelLoadError
from featviz_core.images import Volume
from featviz_core.layers import hook_count
from featviz_core.models.sources.onnx_torch import UnsupportedOp, module_names
from tests.conftest import random_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

SHAPE = (1, 1, 8, 16, 20)  # (batch, channels, depth, height, width)


def small_3d_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(6, 3),
    ).eval()  # fmt: skip


def export_3d(module: nn.Module, dynamo: bool = False) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(SHAPE),), buffer, opset_version=18 if dynamo else 17, dynamo=dynamo,
                          input_names=["volume"], output_names=["scores"])  # fmt: skip
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cnn3d() -> nn.Module:
    return small_3d_cnn()


@pytest.fixture(scope="module")
def files(cnn3d: nn.Module) -> dict[str, bytes]:
    return {"legacy": export_3d(cnn3d), "dynamo": export_3d(cnn3d, dynamo=True)}


def scan() -> Volume:
    rng = np.random.default_rng(4)
    array = rng.normal(40.0, 300.0, (14, 30, 26)).astype(np.float32)
    return Volume(array=array, spacing=(2.5, 0.8, 0.8), kind="volume", modality="CT", window=(40.0, 400.0),
                  description="noise")  # fmt: skip


def ort_values(data: bytes, tensor: torch.Tensor, names: list[str]) -> list[np.ndarray]:
    """An independent onnxruntime session that also returns the intermediate values ``names``."""
    proto = onnx.load_from_string(data)
    proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {proto.graph.input[0].name: np.ascontiguousarray(tensor.numpy())})


def value_names(data: bytes) -> dict[str, str]:
    graph = onnx.load_from_string(data).graph
    return {name: node.output[0] for name, node in zip(module_names(graph.node), graph.node, strict=True)}


def maps_and_reference(model, data: bytes) -> tuple[list[str], dict[str, np.ndarray], list[np.ndarray]]:  # type: ignore[no-untyped-def]
    infos = list_layers(model)
    spatial = [i.name for i in infos if i.spatial]
    volume = scan()
    extraction = extract(model, volume, spatial)
    values = value_names(data)
    reference = ort_values(data, model.preprocess_volume(volume), [values[n] for n in spatial])
    assert extraction.probabilities is not None
    scores = torch.from_numpy(reference[0][0]).softmax(0).numpy()
    np.testing.assert_allclose(extraction.probabilities, scores, rtol=1e-4, atol=1e-6)
    return spatial, extraction.activations, reference[1:]


@pytest.mark.parametrize("how", ["legacy", "dynamo"])
def test_a_3d_cnn_export_opens_as_a_3d_model_with_onnxruntimes_maps(files: dict[str, bytes], how: str) -> None:
    data = files[how]
    info = inspect_onnx(data, "cnn3d.onnx")
    assert (info.layout, info.channels, info.depth, info.suggested_size) == ("NCDHW", 1, 8, (16, 20))
    model = load_onnx(data, "cnn3d.onnx")
    assert model.is_volumetric and model.input_shape == (1, 8, 16, 20) and model.supports_gradients
    assert "3-D input 1×8×16×20 (NCDHW)" in model.provenance
    assert "converted to PyTorch and checked against onnxruntime on 2 convolutions" in model.provenance
    tensor = model.preprocess_volume(scan())
    assert tuple(tensor.shape) == SHAPE and float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    spatial, maps, reference = maps_and_reference(model, data)
    convs = [i for i in list_layers(model) if i.type == "Conv3d"]
    assert [c.shape for c in convs] == [(4, 8, 16, 20), (6, 4, 8, 10)]
    assert {c.name for c in convs} <= set(spatial)
    for name, want in zip(spatial, reference, strict=True):
        assert maps[name].shape == want.shape[1:] and maps[name].ndim == 4, name  # (C, D, H, W)
        np.testing.assert_allclose(maps[name], want[0], rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    with pytest.raises(InputKindError):
        extract(model, random_image(1), spatial[:1])
    assert hook_count(model.module) == 0


def test_the_onnxruntime_fallback_gives_its_exact_maps(files: dict[str, bytes], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise UnsupportedOp("operator Testing")

    monkeypatch.setattr(onnx_source, "convert", refuse)
    data = files["legacy"]
    model = load_onnx(data, "cnn3d.onnx")
    assert model.is_volumetric and model.input_shape == (1, 8, 16, 20) and not model.supports_gradients
    assert "run by onnxruntime because featviz cannot convert operator Testing" in model.provenance
    spatial, maps, reference = maps_and_reference(model, data)
    assert [i.type for i in list_layers(model)][:3] == ["Conv3d", "ReLU", "MaxPool3d"]
    for name, want in zip(spatial, reference, strict=True):
        assert maps[name].ndim == 4
        np.testing.assert_array_equal(maps[name], want[0])
    with pytest.raises(Exception, match="gradients"):
        gradcam(model, scan(), spatial[0])


def _identity_model(shape: list[int | str]) -> bytes:
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [value], [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([1, 8, 16, 16, 3], "channels last .* export it with channels first"),
        ([1, 5, 8, 16, 16], "has 5 channels; featviz feeds 3-D models grey"),
        ([1, 1, 4, 8, 16, 16], "6 dimensions; .* a 4- or 5-dimensional input"),
    ],
)
def test_5d_inputs_featviz_cannot_feed_are_refused_in_one_sentence(shape: list[int], message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_onnx(_identity_model(shape), "odd.onnx")


def test_a_dynamic_3d_input_gets_a_default_size_and_runs() -> None:
    model = load_onnx(_identity_model([1, 1, "d", "h", "w"]), "dynamic.onnx")
    assert model.is_volumetric and model.input_shape == (1, 64, 64, 64)
    np.testing.assert_array_equal(
        extract(model, scan(), [list_layers(model)[0].name]).activations[list_layers(model)[0].name],
        model.preprocess_volume(scan())[0].numpy(),  # Relu of 0..1 values: the input itself
    )
