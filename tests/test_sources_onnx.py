"""ONNX files: real exports convert to PyTorch with onnxruntime's values; the fallback; the refusals."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from onnx import TensorProto, helper

import featviz_core.models.sources.onnx as onnx_source
from featviz_core import CamError, extract, gradcam, inspect_onnx, list_layers, load_onnx
from featviz_core.layers import hook_count, spatial_layers
from featviz_core.models import LoadedModel
from featviz_core.models.sources.onnx_ops import CONVERTERS
from featviz_core.models.sources.onnx_torch import UnsupportedOp, module_names
from tests.conftest import random_image
from tests.onnx_builders import export, small_cnn, tf2onnx_like

DATA = Path(__file__).parent / "data" / "onnx"


def seeded(builder, seed: int = 0) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    net = builder().eval()
    with torch.no_grad():  # trained-looking batch-norm statistics, so BN layers are not identities
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.fixture(scope="session")
def resnet() -> torch.nn.Module:
    return seeded(torchvision.models.resnet18)


@pytest.fixture(scope="session")
def resnet_files(resnet) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """resnet18 exported three ways (exports are slow: once per session)."""
    return {
        "legacy-opset13": export(resnet, opset=13),
        "legacy-opset17": export(resnet, opset=17),
        "dynamo-opset18": export(resnet, opset=18, dynamo=True),
    }


@pytest.fixture(scope="session")
def resnet_model(resnet_files) -> LoadedModel:  # type: ignore[no-untyped-def]
    return load_onnx(resnet_files["legacy-opset17"], "resnet18.onnx")


@pytest.fixture(scope="session")
def mobilenet_dynamic() -> tuple[torch.nn.Module, bytes]:
    net = seeded(torchvision.models.mobilenet_v3_small)
    return net, export(net, opset=17, dynamic=True)


def ort_values(
    data: bytes, tensor_nchw: torch.Tensor, names: list[str], nhwc: bool = False
) -> list[np.ndarray]:
    """An independent onnxruntime session on ``data`` that also returns the values ``names``."""
    proto = onnx.load_from_string(data)
    proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = tensor_nchw.permute(0, 2, 3, 1) if nhwc else tensor_nchw
    values = session.run(None, {proto.graph.input[0].name: np.ascontiguousarray(feed.numpy())})
    return values[len(values) - len(names) :]


def value_names(data: bytes) -> dict[str, str]:
    """Layer name -> the ONNX value the layer outputs."""
    graph = onnx.load_from_string(data).graph
    return {name: node.output[0] for name, node in zip(module_names(graph.node), graph.node, strict=True)}


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-12))


def assert_convs_equal_onnxruntime(m: LoadedModel, data: bytes, image, nhwc: bool = False) -> int:  # type: ignore[no-untyped-def]
    convs = [i.name for i in spatial_layers(m) if i.type in ("Conv2d", "Conv")]
    assert convs
    maps = extract(m, image, convs).activations
    values = value_names(data)
    reference = ort_values(data, m.preprocess(image), [values[n] for n in convs], nhwc=nhwc)
    for name, want in zip(convs, reference, strict=True):
        assert maps[name].shape == want.shape[1:]
        assert relative(maps[name], want[0]) <= 1e-4, name
    return len(convs)


# ---------------------------------------------------------------------------------------------------
# Real exports, converted


@pytest.mark.parametrize("how", ["legacy-opset13", "legacy-opset17", "dynamo-opset18"])
def test_resnet18_exports_convert_and_every_conv_equals_onnxruntime(resnet, resnet_files, how) -> None:  # type: ignore[no-untyped-def]
    data = resnet_files[how]
    m = load_onnx(data, "resnet18.onnx")
    assert m.source == "onnx" and m.supports_gradients and m.input_size == (224, 224)
    assert "converted to PyTorch and checked against onnxruntime" in m.provenance
    assert "pytorch 2." in m.provenance
    image = random_image(1, size=(260, 230))
    assert assert_convs_equal_onnxruntime(m, data, image) == 20
    x = m.preprocess(image)
    with torch.no_grad():
        mine, original = m.module(x), resnet(x)
    assert relative(mine.numpy(), original.numpy()) <= 1e-4
    # The deepest feature map equals the original module's layer4 output.
    last = [i.name for i in spatial_layers(m) if i.type == "ReLU"][-1]
    ours = extract(m, image, [last]).activations[last]
    with torch.no_grad():
        features = torch.nn.Sequential(*list(resnet.children())[:-2])(x)[0].numpy()
    assert relative(ours, features) <= 1e-4
    assert hook_count(m.module) == 0


def test_layer_labels_read_as_node_type_and_shape(resnet_files) -> None:  # type: ignore[no-untyped-def]
    legacy = load_onnx(resnet_files["legacy-opset17"], "r.onnx")
    dynamo = load_onnx(resnet_files["dynamo-opset18"], "r.onnx")
    assert list_layers(legacy)[0].label == "conv1/Conv · Conv2d · 64×112×112"
    assert "layer1/layer1_0/relu_1/Relu · ReLU · 64×56×56" in [i.label for i in list_layers(legacy)]
    labels = [i.label for i in spatial_layers(dynamo)]
    assert "layer1_0_relu/Relu · ReLU · 64×56×56" in labels  # named after the module the exporter saw
    assert all("#" not in i.name and "." not in i.module_name for i in list_layers(dynamo))


def test_mobilenet_with_a_dynamic_input_size(mobilenet_dynamic) -> None:  # type: ignore[no-untyped-def]
    net, data = mobilenet_dynamic
    info = inspect_onnx(data, "mobilenet.onnx")
    assert info.dynamic_size and info.shape == (None, 3, None, None) and info.suggested_size == (224, 224)
    assert info.layout == "NCHW" and info.channels == 3 and info.opset == 17
    m = load_onnx(data, "mobilenet.onnx", input_size=(160, 192))
    assert m.supports_gradients and m.input_size == (160, 192)
    image = random_image(2, size=(300, 200))
    assert m.preprocess(image).shape == (1, 3, 160, 192)
    # 52 convolutions; the 18 of squeeze-excitation give one position (1×1), which is no map and not listed
    assert assert_convs_equal_onnxruntime(m, data, image) == 34
    assert list_layers(m)[0].shape == (16, 80, 96)
    x = m.preprocess(image)
    with torch.no_grad():
        assert relative(m.module(x).numpy(), net(x).numpy()) <= 1e-4
    assert load_onnx(data).input_size == (224, 224)


def test_efficientnet_dynamo_export_silu_and_squeeze_excitation() -> None:
    net = seeded(torchvision.models.efficientnet_b0)
    data = export(net, opset=18, dynamo=True)
    m = load_onnx(data, "efficientnet_b0.onnx")
    assert m.supports_gradients
    assert assert_convs_equal_onnxruntime(m, data, random_image(3)) == 49  # 81, less 32 squeeze-excitation 1×1


def test_gradcam_of_the_converted_model_matches_the_original(resnet, resnet_model) -> None:  # type: ignore[no-untyped-def]
    image = random_image(4, size=(240, 240))
    original = LoadedModel(
        module=resnet, name="resnet18", key="test:resnet18", categories=None, input_channels=3,
        input_size=(224, 224), transform=resnet_model.transform, view=resnet_model.view, source="test",
        provenance="the module that was exported",
    )  # fmt: skip
    last = [i.name for i in spatial_layers(resnet_model) if i.type == "ReLU"][-1]
    ours, theirs = gradcam(resnet_model, image, last), gradcam(original, image, "layer4")
    assert ours.class_index == theirs.class_index and ours.shape == theirs.shape == (7, 7)
    assert relative(ours.cam, theirs.cam) <= 1e-3
    assert relative(ours.weights, theirs.weights) <= 1e-3
    assert hook_count(resnet_model.module) == 0
    assert all(p.grad is None for p in resnet_model.module.parameters())


# ---------------------------------------------------------------------------------------------------
# The onnxruntime fallback


@pytest.fixture(scope="session")
def fallback_model(resnet_files) -> LoadedModel:  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as patch:

        def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
            raise UnsupportedOp("operator Testing")

        patch.setattr(onnx_source, "convert", refuse)
        return load_onnx(resnet_files["legacy-opset17"], "resnet18.onnx")


def test_fallback_gives_onnxruntime_values_through_extract(
    fallback_model, resnet_model, resnet_files
) -> None:  # type: ignore[no-untyped-def]
    m = fallback_model
    assert not m.supports_gradients
    assert "run by onnxruntime because featviz cannot convert operator Testing" in m.provenance
    assert "Grad-CAM and other views that need gradients are not available" in m.provenance
    assert [(i.name, i.type, i.shape) for i in list_layers(m)] == [
        (i.name, i.type, i.shape) for i in list_layers(resnet_model)
    ]
    chosen = ["conv1/Conv", "layer2/layer2_1/relu/Relu", "layer4/layer4_1/Add"]
    image = random_image(5)
    maps = extract(m, image, chosen).activations
    values = value_names(resnet_files["legacy-opset17"])
    reference = ort_values(resnet_files["legacy-opset17"], m.preprocess(image), [values[n] for n in chosen])
    for name, want in zip(chosen, reference, strict=True):
        np.testing.assert_array_equal(maps[name], want[0])
    converted = extract(resnet_model, image, chosen).activations
    for name in chosen:
        assert relative(converted[name], maps[name]) <= 1e-4
    assert extract(m, image, chosen).probabilities is not None
    with pytest.raises(CamError, match="Grad-CAM needs gradients"):
        gradcam(m, image, chosen[-1])
    assert hook_count(m.module) == 0


def test_unsupported_operator_falls_back_to_onnxruntime() -> None:
    built = small_cnn("ThresholdedRelu", alpha=0.1)
    m = load_onnx(built.SerializeToString(), "tiny.onnx")
    assert not m.supports_gradients
    assert "cannot convert operator ThresholdedRelu" in m.provenance
    layer = "act/ThresholdedRelu"
    image = random_image(6)
    maps = extract(m, image, [layer]).activations[layer]
    (want,) = ort_values(built.SerializeToString(), m.preprocess(image), ["a"])
    np.testing.assert_array_equal(maps, want[0])
    assert list_layers(m)[1].type == "ThresholdedRelu"


def test_conversion_that_disagrees_falls_back(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(CONVERTERS, "Relu", lambda ctx: (torch.nn.Identity(), [ctx.inputs[0]]))
    m = load_onnx(small_cnn().SerializeToString(), "tiny.onnx")
    assert not m.supports_gradients
    assert "the PyTorch conversion differs from onnxruntime" in m.provenance


def test_eight_threads_on_one_model_get_their_own_results(fallback_model, resnet_model) -> None:  # type: ignore[no-untyped-def]
    images = [random_image(10 + i, size=(96, 96)) for i in range(8)]
    for m in (fallback_model, resnet_model):
        layers = ["layer1/layer1_0/relu/Relu", "layer3/layer3_1/Add"]
        sequential = [extract(m, image, layers) for image in images]
        barrier = threading.Barrier(8)

        def run(image, m=m, layers=layers, barrier=barrier):  # type: ignore[no-untyped-def]
            barrier.wait()
            return extract(m, image, layers)

        with ThreadPoolExecutor(8) as pool:
            parallel = list(pool.map(run, images))
        for one, other in zip(sequential, parallel, strict=True):
            for layer in layers:
                np.testing.assert_array_equal(one.activations[layer], other.activations[layer])
        assert hook_count(m.module) == 0


# ---------------------------------------------------------------------------------------------------
# Other exporters


def test_keras_tf2onnx_file_with_nhwc_input() -> None:
    data = (DATA / "keras_tiny.onnx").read_bytes()
    info = inspect_onnx(data, "keras_tiny.onnx")
    assert (info.layout, info.channels, info.shape, info.dynamic_size) == (
        "NHWC",
        3,
        (None, 32, 32, 3),
        False,
    )
    assert info.producer.startswith("tf2onnx")
    m = load_onnx(data, "keras_tiny.onnx", normalization="0-255")
    assert m.supports_gradients and m.input_size == (32, 32)
    assert "0 to 255" in m.provenance and "tf2onnx" in m.provenance
    image = random_image(7, size=(50, 40))
    assert m.preprocess(image).shape == (1, 3, 32, 32) and float(m.preprocess(image).max()) > 1.0
    assert assert_convs_equal_onnxruntime(m, data, image, nhwc=True) == 4
    names = [i.name for i in list_layers(m)]
    assert "keras_tiny/conv1/Conv2D" in names and "keras_tiny/rescale/mul" in names
    first = list_layers(m)[0]
    assert first.channels_last and first.shape == (3, 32, 32)  # the NHWC input side reads as C×H×W


def test_paddle_file_and_its_node_names() -> None:
    data = (DATA / "paddle_tiny.onnx").read_bytes()
    m = load_onnx(data, "paddle_tiny.onnx")
    assert m.supports_gradients and "paddle2onnx" in m.provenance
    names = [i.name for i in list_layers(m)]
    assert names[:4] == ["Conv_0", "Add_0", "Identity_1", "BatchNormalization_0"]
    assert assert_convs_equal_onnxruntime(m, data, random_image(8)) == 3  # 5, less two 1×1 (one position)


def test_tf2onnx_pattern_with_weights_in_constant_nodes() -> None:
    data = tf2onnx_like().SerializeToString()
    m = load_onnx(data, "keras.onnx", normalization="-1-1")
    assert m.supports_gradients
    assert assert_convs_equal_onnxruntime(m, data, random_image(9), nhwc=True) == 2
    assert not any("const" in i.name for i in list_layers(m))  # Constant nodes are folded, not layers


# ---------------------------------------------------------------------------------------------------
# Hooks, sessions, outputs


def test_onnxruntime_path_asks_only_for_the_hooked_layers_and_keeps_few_sessions(
    fallback_model, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from featviz_core.models.sources.onnx_runtime import MAX_SESSIONS

    list_layers(fallback_model)  # the dry run (which asks for every layer) is done once, before
    runner = fallback_model.module._runner
    asked: list[tuple[str, ...]] = []
    real_run = runner.run
    monkeypatch.setattr(
        runner, "run", lambda feed, extra=(): asked.append(tuple(extra)) or real_run(feed, extra)
    )
    image = random_image(20)
    names = value_names_of(fallback_model)
    layers = [i.name for i in spatial_layers(fallback_model)][:6]
    for layer in layers:
        extract(fallback_model, image, [layer])
    assert asked == [(names[layer],) for layer in layers]
    assert len(runner._sessions) <= MAX_SESSIONS
    fallback_model.module(fallback_model.preprocess(image))
    assert asked[-1] == ()  # no hook, no extra output


def value_names_of(m: LoadedModel) -> dict[str, str]:
    return {name: outputs[0] for name, outputs in m.module._plan}


def test_no_hook_is_left_when_a_forward_pass_fails(fallback_model, resnet_model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    image = random_image(21)
    runner = fallback_model.module._runner
    monkeypatch.setattr(runner, "run", lambda *_a, **_k: (_ for _ in ()).throw(RuntimeError("interrupted")))
    with pytest.raises(RuntimeError):
        extract(fallback_model, image, ["conv1/Conv"])
    assert hook_count(fallback_model.module) == 0
    block = resnet_model.module.get_submodule("layer3/layer3_0/Add")
    monkeypatch.setattr(block, "forward", lambda *_a: (_ for _ in ()).throw(RuntimeError("interrupted")))
    for call in (
        lambda: extract(resnet_model, image, ["conv1/Conv"]),
        lambda: gradcam(resnet_model, image, "conv1/Conv"),
    ):
        with pytest.raises(RuntimeError):
            call()
        assert hook_count(resnet_model.module) == 0
    assert not any(m.training for m in resnet_model.module.modules())


def test_a_graph_with_two_outputs_returns_a_tuple_and_grey_input() -> None:
    built = small_cnn(channels=1)
    built.graph.output.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 6, 16, 16]))
    m = load_onnx(built.SerializeToString(), "detector.onnx")
    assert m.input_channels == 1 and m.supports_gradients
    image = random_image(22, mode="L")
    assert m.preprocess(image).shape == (1, 1, 16, 16)
    with torch.no_grad():
        out = m.module(m.preprocess(image))
    assert isinstance(out, tuple) and len(out) == 2 and out[1].shape == (1, 6, 16, 16)
    result = extract(m, image, ["act/Relu"])
    assert result.probabilities is None and result.activations["act/Relu"].shape == (6, 16, 16)
    with pytest.raises(CamError, match="one vector of class scores"):
        gradcam(m, image, "act/Relu")


def test_normalizations_and_preprocessing() -> None:
    data = small_cnn(size=16).SerializeToString()
    grey = random_image(0, size=(40, 20)).convert("L").point(lambda _: 102).convert("RGB")  # 102/255 = 0.4
    expected = {"imagenet": (0.4 - 0.485) / 0.229, "0-1": 0.4, "-1-1": -0.2, "0-255": 102.0}
    keys = set()
    for normalization, value in expected.items():
        m = load_onnx(data, "tiny.onnx", normalization=normalization)
        x = m.preprocess(grey)
        assert x.shape == (1, 3, 16, 16)
        assert float(x[0, 0, 8, 8]) == pytest.approx(value, rel=1e-5)
        assert m.model_view(grey).size == (16, 16)
        keys.add(m.key)
    assert len(keys) == 4
    named = load_onnx(data, categories=["a", "b", "c", "d"])
    assert named.categories == ["a", "b", "c", "d"] and named.key not in keys
    assert extract(named, grey, ["conv/Conv"]).top_k(1)[0][0] in named.categories
