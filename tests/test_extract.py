"""extract(): exact values, probabilities, and no cross-talk between concurrent sessions."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from featviz_core import ActivationRecorder, LayerError, extract, list_layers, load_torchvision
from featviz_core.layers import hook_count


def clone_everything(model, image, names):
    """Reference: record every layer with an unconditional copy (the slow, obviously right way)."""
    with ActivationRecorder(model.module, names, clone=True) as recorder, torch.no_grad():
        model.module(model.preprocess(image))
    return {name: t[0].numpy() for name, t in recorder.outputs.items()}


def test_shapes_dtype_and_read_only(resnet18, image) -> None:
    result = extract(resnet18, image, ["conv1", "layer4.1.relu#2"])
    conv1 = result.activations["conv1"]
    assert conv1.dtype == np.float32 and conv1.shape == (64, 112, 112)
    assert result.activations["layer4.1.relu#2"].shape == (512, 7, 7)
    assert not conv1.flags.writeable
    assert result.input_shape == (1, 3, 224, 224)
    assert result.layers == ("conv1", "layer4.1.relu#2")


def test_probabilities_and_top_k(resnet18, image) -> None:
    result = extract(resnet18, image, ["conv1"])
    probs = result.probabilities
    assert probs is not None and probs.shape == (1000,) and probs.dtype == np.float32
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    top = result.top_k(5)
    assert len(top) == 5 and [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    best = int(np.argmax(probs))
    assert top[0] == (resnet18.categories[best], float(probs[best]))
    with torch.no_grad():
        logits = resnet18.module(resnet18.preprocess(image))
    np.testing.assert_allclose(probs, torch.softmax(logits, 1)[0].numpy(), rtol=0, atol=1e-7)


def test_every_spatial_layer_matches_copy_everything(resnet18, image) -> None:
    names = [info.name for info in list_layers(resnet18) if info.spatial]
    result = extract(resnet18, image, names)
    reference = clone_everything(resnet18, image, names)
    for name in names:
        np.testing.assert_array_equal(result.activations[name], reference[name], err_msg=name)


def test_residual_add_does_not_leak_into_recorded_output(tiny, image) -> None:
    """TinyNet does ``y = bn2(...); y += x; relu_(y)``: bn2 must be recorded before both in-place ops."""
    result = extract(tiny, image, ["bn2", "relu", "relu#2"])
    net = tiny.module
    with torch.no_grad():
        x = torch.relu(net.bn1(net.conv1(tiny.preprocess(image))))
        bn2 = net.bn2(net.conv2(x))
        out = torch.relu(bn2 + x)
    np.testing.assert_array_equal(result.activations["bn2"], bn2[0].numpy())
    np.testing.assert_array_equal(result.activations["relu"], x[0].numpy())
    np.testing.assert_array_equal(result.activations["relu#2"], out[0].numpy())
    assert result.activations["bn2"].min() < 0


@pytest.mark.parametrize(
    "arch", ["mobilenet_v3_small", "efficientnet_b0", "densenet121", "squeezenet1_1", "googlenet"]
)
def test_other_architectures_match_copy_everything(arch, image) -> None:
    model = load_torchvision(arch, weights=None)
    names = [info.name for info in list_layers(model) if info.spatial]
    result = extract(model, image, names)
    reference = clone_everything(model, image, names)
    for name in names:
        np.testing.assert_array_equal(result.activations[name], reference[name], err_msg=f"{arch}:{name}")
    assert hook_count(model.module) == 0


def test_grey_image_is_converted_for_rgb_model(resnet18, make_image) -> None:
    grey = make_image(1, mode="L")
    result = extract(resnet18, grey, ["conv1"])
    np.testing.assert_array_equal(result.activations["conv1"], extract(resnet18, grey.convert("RGB"), ["conv1"]).activations["conv1"])


def test_unknown_and_non_spatial_layers_refused(resnet18, image) -> None:
    with pytest.raises(LayerError, match="list_layers"):
        extract(resnet18, image, ["layer9"])
    with pytest.raises(LayerError, match="feature maps"):
        extract(resnet18, image, ["avgpool", "fc"])
    with pytest.raises(LayerError):
        extract(resnet18, image, [])
    assert hook_count(resnet18.module) == 0


def test_eight_threads_share_one_model_without_cross_talk(resnet18, make_image) -> None:
    layers = ["layer1.0.bn1", "layer2.1.relu#2", "layer4.1.conv2"]
    images = [make_image(seed) for seed in range(8)]
    expected = [extract(resnet18, img, layers) for img in images]
    results: dict[int, list] = {i: [] for i in range(8)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results[i].append(extract(resnet18, images[i], layers))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(8):
        for got in results[i]:
            for name in layers:
                np.testing.assert_array_equal(got.activations[name], expected[i].activations[name])
            np.testing.assert_array_equal(got.probabilities, expected[i].probabilities)
    assert hook_count(resnet18.module) == 0


@pytest.mark.parametrize("size", [(6000, 40), (1, 1), (3, 2000), (4000, 3000)])
def test_any_image_size_gives_the_models_input_size(resnet18, make_image, size) -> None:
    """Activations never grow with the picture: preprocessing resizes every image to the model's input."""
    result = extract(resnet18, make_image(3, size=size), ["conv1"])
    assert result.input_shape == (1, 3, 224, 224)
    assert result.activations["conv1"].shape == (64, 112, 112)


def test_a_model_ending_in_softmax_is_not_softmaxed_twice(tiny, image) -> None:
    """Keras classifiers and many ONNX files output probabilities already; softmax again would flatten
    every prediction towards 1/K."""
    import dataclasses

    net = torch.nn.Sequential(tiny.module, torch.nn.Softmax(dim=1)).eval()
    model = dataclasses.replace(tiny, module=net, key="test:softmaxed", lock=threading.RLock())
    with torch.no_grad():
        expected = net(model.preprocess(image))[0].numpy()
    probabilities = extract(model, image, ["0.conv1"]).probabilities
    np.testing.assert_array_equal(probabilities, expected)
    logits = extract(tiny, image, ["conv1"]).probabilities
    np.testing.assert_allclose(probabilities, logits, rtol=1e-6)


def test_a_token_layer_is_its_patch_tokens_on_the_grid_and_keeps_its_prefix(image) -> None:
    """deit's distilled ViT: (1, 2 + 14·14, 192) tokens -> (192, 14, 14) maps and the 2 prefix tokens."""
    from tests.test_cam import vit_model

    model = vit_model("deit_tiny_distilled_patch16_224")
    names = ["blocks.5", "blocks.11.norm1", "patch_embed.norm"]  # the last has no prefix yet: (1, 196, 192)
    result = extract(model, image, names)
    reference = clone_everything(model, image, names)
    for name in names:
        tokens = reference[name]
        prefix = tokens.shape[0] - 196
        expected = tokens[prefix:].T.reshape(192, 14, 14)
        np.testing.assert_array_equal(result.activations[name], expected, err_msg=name)
        assert result.activations[name].flags.c_contiguous and not result.activations[name].flags.writeable
        if prefix:
            np.testing.assert_array_equal(result.prefix[name], tokens[:prefix])
            assert result.prefix[name].shape == (2, 192)
        else:
            assert name not in result.prefix
