"""Grad-CAM: hand-computed values, a plain reference, a model left untouched, threads, errors."""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from featviz_core import FeatvizError, LayerError, extract, layer_info, list_layers, load_torchvision
from featviz_core.cam import CamError, CamResult, default_cam_layer, gradcam, upsample
from featviz_core.layers import hook_count, parse_layer_name
from featviz_core.models import LoadedModel, view_transform

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


# ---------------------------------------------------------------------------------------------------
# Helpers


def loaded(net: nn.Module, size: tuple[int, int], channels: int, classes: int, name: str) -> LoadedModel:
    """A LoadedModel around ``net`` whose preprocessing is only ToTensor (so inputs are pixels / 255)."""
    return LoadedModel(
        module=net.eval(),
        name=name,
        key=f"test:{name}",
        categories=[f"class {i}" for i in range(classes)] if classes else None,
        input_channels=channels,
        input_size=size,
        transform=T.ToTensor(),
        view=view_transform(None, size),
        source="test",
        provenance="hand-made test network",
    )


class HandNet(nn.Module):
    """1x1 convolution with fixed weights -> (optional in-place ReLU) -> global average pool -> linear."""

    CONV_W = (1.0, -1.0, 2.0)
    CONV_B = (0.0, 0.5, -0.25)
    FC_W = ((0.5, -1.0, 0.25), (-0.75, 2.0, 1.0))
    FC_B = (0.1, -0.2)

    def __init__(self, relu: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(self.CONV_W).view(3, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor(self.CONV_B))
            self.fc.weight.copy_(torch.tensor(self.FC_W))
            self.fc.bias.copy_(torch.tensor(self.FC_B))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


# A 3×4 grey image whose pixels put the conv outputs on both sides of 0 (no output is exactly 0).
PIXELS = np.array([[0, 20, 60, 100], [140, 180, 220, 255], [10, 90, 130, 250]], dtype=np.uint8)


def hand_model(relu: bool) -> LoadedModel:
    return loaded(HandNet(relu), (3, 4), 1, 2, f"handnet-relu{relu}")


def reference_gradcam(module: nn.Module, x: torch.Tensor, layer: str, class_index: int | None) -> dict:
    """Grad-CAM written plainly: a fresh copy of the model with autograd on everywhere, a hook that keeps the
    layer's output ``A`` in the graph and hands the rest of the network a copy (``out += identity`` and
    in-place ReLUs would otherwise change ``A``), torch.autograd.grad of the class logit with respect to A."""
    net = copy.deepcopy(module).eval()
    module_name, call = parse_layer_name(layer)
    seen: list[torch.Tensor] = []

    def keep(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        seen.append(out)
        return out.clone()

    handle = dict(net.named_modules())[module_name].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = net(x)
    finally:
        handle.remove()
    activation = seen[call - 1]
    c = int(logits[0].argmax()) if class_index is None else class_index
    (grad,) = torch.autograd.grad(logits[0, c], activation)
    return _cam_from(grad, activation, c, logits)


def _cam_from(grad: torch.Tensor, activation: torch.Tensor, c: int, logits: torch.Tensor) -> dict:
    alphas = grad[0].mean(dim=(1, 2))
    cam = torch.relu((alphas[:, None, None] * activation[0]).sum(0))
    return {
        "cam": cam.detach().numpy(),
        "weights": alphas.numpy(),
        "mean": activation[0].detach().mean(0).numpy(),
        "class": c,
        "probabilities": torch.softmax(logits.detach(), 1)[0].numpy(),
        "activation": activation[0].detach().numpy(),
    }


def resnet_tail_gradcam(module: nn.Module, x: torch.Tensor, class_index: int) -> dict:
    """Grad-CAM at ``layer3.1.bn2`` of a torchvision ResNet-18 with the rest of the forward pass written out
    by hand (no hook on the path to the class score): A is a leaf, the tail is relu(A + identity) -> layer4
    -> avgpool -> fc on a copy whose ReLUs are not in-place."""
    net = copy.deepcopy(module).eval()
    for m in net.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    block = net.layer3[1]
    with torch.no_grad():
        identity = net.layer3[0](net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))
        a = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(identity)))))
    a.requires_grad_(True)
    with torch.enable_grad():
        logits = net.fc(torch.flatten(net.avgpool(net.layer4(torch.relu(a + identity))), 1))
    (grad,) = torch.autograd.grad(logits[0, class_index], a)
    return _cam_from(grad, a, class_index, logits)


def assert_matches_reference(result: CamResult, ref: dict, context: str) -> None:
    assert result.class_index == ref["class"], context
    scale = max(float(np.abs(ref["cam"]).max()), 1e-30)
    np.testing.assert_allclose(result.cam, ref["cam"], rtol=1e-4, atol=1e-5 * scale, err_msg=context)
    wscale = float(np.abs(ref["weights"]).max())
    np.testing.assert_allclose(result.weights, ref["weights"], rtol=1e-4, atol=1e-6 * wscale, err_msg=context)
    np.testing.assert_allclose(result.activations_mean, ref["mean"], rtol=1e-5, atol=1e-6, err_msg=context)
    np.testing.assert_allclose(
        result.probabilities, ref["probabilities"], rtol=1e-5, atol=1e-7, err_msg=context
    )


class Snapshot:
    """Everything gradcam must leave as it found it."""

    def __init__(self, model: LoadedModel) -> None:
        module = model.module
        self.model = model
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.requires_grad = {n: p.requires_grad for n, p in module.named_parameters()}
        self.training = {n: m.training for n, m in module.named_modules()}
        self.grad_enabled = torch.is_grad_enabled()

    def check(self) -> None:
        module = self.model.module
        assert hook_count(module) == 0
        assert all(p.grad is None for p in module.parameters()), "no gradient may be left on a parameter"
        assert {n: p.requires_grad for n, p in module.named_parameters()} == self.requires_grad
        assert {n: m.training for n, m in module.named_modules()} == self.training
        state = module.state_dict()
        assert state.keys() == self.state.keys()
        for key, value in self.state.items():
            assert torch.equal(state[key], value), key
        assert torch.is_grad_enabled() == self.grad_enabled
        assert lock_is_free(self.model), "the model's lock must be released"


def lock_is_free(model: LoadedModel) -> bool:
    """True when another thread can take the lock (an RLock always lets its owner in again)."""
    got: list[bool] = []

    def probe() -> None:
        ok = model.lock.acquire(blocking=False)
        if ok:
            model.lock.release()
        got.append(ok)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return got[0]


# ---------------------------------------------------------------------------------------------------
# (a) hand-computed


def _hand_expected(relu: bool, layer: str, class_index: int) -> dict[str, np.ndarray]:
    x = PIXELS.astype(np.float64) / 255.0
    conv = np.stack([w * x + b for w, b in zip(HandNet.CONV_W, HandNet.CONV_B, strict=True)])  # (3, h, w)
    fc_w, fc_b = np.array(HandNet.FC_W), np.array(HandNet.FC_B)
    hw = x.size
    fired = np.maximum(conv, 0) if relu else conv
    logits = fc_w @ fired.mean(axis=(1, 2)) + fc_b
    if layer == "conv" and relu:
        # d y_c / d A_k[i, j] = W[c, k] / (h w) where A_k[i, j] > 0, else 0
        positive = (conv > 0).sum(axis=(1, 2))
        alphas = fc_w[class_index] * positive / hw**2
        activation = conv
    else:  # d y_c / d A_k[i, j] = W[c, k] / (h w) everywhere
        alphas = fc_w[class_index] / hw
        activation = fired
    cam = np.maximum(np.tensordot(alphas, activation, axes=1), 0)
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    return {
        "cam": cam,
        "alphas": alphas,
        "mean": activation.mean(0),
        "logits": logits,
        "probs": probabilities,
    }


@pytest.mark.parametrize(("relu", "layer"), [(False, "conv"), (True, "conv"), (True, "relu")])
@pytest.mark.parametrize("class_index", [0, 1, None])
def test_hand_computed_case(relu: bool, layer: str, class_index: int | None) -> None:
    model = hand_model(relu)
    image = Image.fromarray(PIXELS, "L")
    result = gradcam(model, image, layer, class_index)
    expected_class = (
        int(np.argmax(_hand_expected(relu, layer, 0)["logits"])) if class_index is None else class_index
    )
    expected = _hand_expected(relu, layer, expected_class)
    assert result.class_index == expected_class and result.class_name == f"class {expected_class}"
    assert result.layer == layer and result.cam.shape == (3, 4) == result.shape
    for array in (
        result.cam,
        result.normalized,
        result.weights,
        result.activations_mean,
        result.probabilities,
    ):
        assert array.dtype == np.float32 and not array.flags.writeable
    np.testing.assert_allclose(result.weights, expected["alphas"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(result.cam, expected["cam"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(result.activations_mean, expected["mean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result.probabilities, expected["probs"], rtol=1e-6)
    assert result.probability == pytest.approx(expected["probs"][expected_class], rel=1e-6)
    assert result.score == pytest.approx(expected["logits"][expected_class], rel=1e-6, abs=1e-7)
    assert result.cam.max() > 0 and result.normalized.max() == pytest.approx(1.0)
    np.testing.assert_allclose(result.normalized, result.cam / result.cam.max(), rtol=1e-6)


def test_hand_case_recorded_before_the_inplace_relu() -> None:
    """The conv output keeps its negative values although an in-place ReLU runs right after it."""
    result = gradcam(hand_model(True), Image.fromarray(PIXELS, "L"), "conv", 1)
    expected = _hand_expected(True, "conv", 1)
    conv = np.stack([w * PIXELS / 255.0 + b for w, b in zip(HandNet.CONV_W, HandNet.CONV_B, strict=True)])
    assert conv.min() < 0
    overwritten_mean = np.maximum(conv, 0).mean(
        0
    )  # what a recorder that kept the un-copied output would show
    overwritten_cam = np.maximum(np.tensordot(expected["alphas"], np.maximum(conv, 0), axes=1), 0)
    assert not np.allclose(overwritten_mean, expected["mean"], rtol=1e-3)
    assert not np.allclose(overwritten_cam, expected["cam"], rtol=1e-3)
    np.testing.assert_allclose(result.activations_mean, expected["mean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result.cam, expected["cam"], rtol=1e-6, atol=1e-8)


def test_zero_map_normalises_to_zeros() -> None:
    """A class whose weights are all negative on non-negative activations gives an all-zero map."""
    net = HandNet(relu=True)
    with torch.no_grad():
        net.fc.weight.copy_(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    result = gradcam(loaded(net, (3, 4), 1, 2, "neg"), Image.fromarray(PIXELS, "L"), "relu", 0)
    assert result.cam.max() == 0 and np.all(result.normalized == 0)
    assert not np.isnan(result.normalized).any()


# ---------------------------------------------------------------------------------------------------
# (b) equality with a plain reference


@pytest.mark.parametrize("layer", ["layer4", "layer3.1.bn2", "layer4.1.relu#2", "layer1.0.bn1"])
def test_resnet18_matches_reference(resnet18, image, layer: str) -> None:
    x = resnet18.preprocess(image)
    for class_index in (None, 7):
        result = gradcam(resnet18, image, layer, class_index)
        assert_matches_reference(result, reference_gradcam(resnet18.module, x, layer, class_index), layer)
        assert result.cam.shape == layer_info(resnet18, layer).shape[1:]
        assert result.weights.shape == (layer_info(resnet18, layer).shape[0],)


def test_inplace_trap_layer_matches_hand_written_tail(resnet18, image) -> None:
    """layer3.1.bn2 is followed by ``out += identity`` and ReLU(inplace=True): both must leave A alone."""
    x = resnet18.preprocess(image)
    for class_index in (3, 238):
        result = gradcam(resnet18, image, "layer3.1.bn2", class_index)
        ref = resnet_tail_gradcam(resnet18.module, x, class_index)
        assert ref["activation"].min() < 0
        assert_matches_reference(result, ref, f"layer3.1.bn2, class {class_index}")
    recorded = extract(resnet18, image, ["layer3.1.bn2"]).activations["layer3.1.bn2"]
    np.testing.assert_allclose(result.activations_mean, recorded.mean(0), rtol=1e-5, atol=1e-6)


def test_naive_hook_falls_into_the_trap(resnet18, image) -> None:
    """Why the copy matters: a hook that keeps bn2's output without handing on a copy sees ``out += identity``
    and the in-place ReLU land on A, and the map comes out different."""
    net = copy.deepcopy(resnet18.module).eval()
    seen: list[torch.Tensor] = []
    handle = net.layer3[1].bn2.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.enable_grad():
        logits = net(resnet18.preprocess(image))
    handle.remove()
    assert seen[0].min() >= 0, "the recorded tensor was overwritten by the in-place ReLU"
    result = gradcam(resnet18, image, "layer3.1.bn2")
    assert not np.allclose(seen[0][0].detach().mean(0).numpy(), result.activations_mean, rtol=1e-3)
    del logits


def test_block_output_and_its_last_relu_agree(resnet18, image) -> None:
    """``layer4`` returns the tensor made by ``layer4.1.relu#2``: same activation, same map."""
    a = gradcam(resnet18, image, "layer4")
    b = gradcam(resnet18, image, "layer4.1.relu#2")
    np.testing.assert_allclose(a.cam, b.cam, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(a.activations_mean, b.activations_mean)


def small_torchvision(arch: str, size: int = 128) -> LoadedModel:
    """A torchvision architecture with random weights, fed 128×128 images to keep the test fast.

    VGG's 120-million-parameter head is swapped for one linear layer: it only costs time, and the traps
    under test (in-place ReLUs after the hooked layer) are in ``features``."""
    model = load_torchvision(arch, weights=None)
    if arch.startswith("vgg"):
        torch.manual_seed(0)
        model.module.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512 * 7 * 7, 10))
    transform = T.Compose(
        [
            T.Resize(size),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    return dataclasses.replace(model, input_size=(size, size), transform=transform, key=f"{model.key}:{size}")


@pytest.mark.parametrize(
    ("arch", "inner"),
    [
        ("mobilenet_v3_small", "features.4.block.1.1"),  # bn followed by Hardswish(inplace=True)
        ("efficientnet_b0", "features.3.0.block.1.1"),  # bn followed by SiLU(inplace=True)
        ("densenet121", "features.denseblock4.denselayer16.norm2"),  # bn followed by ReLU(inplace=True)
        ("vgg11", "features.18"),  # conv followed by ReLU(inplace=True)
    ],
)
def test_other_architectures_match_reference(arch: str, inner: str, image) -> None:
    model = small_torchvision(arch)
    x = model.preprocess(image)
    layer = default_cam_layer(model)
    assert layer == "features" and layer_info(model, layer).spatial
    for name in (layer, inner):
        result = gradcam(model, image, name)
        assert_matches_reference(result, reference_gradcam(model.module, x, name, None), f"{arch}:{name}")
    assert hook_count(model.module) == 0
    assert all(p.grad is None for p in model.module.parameters())


# ---------------------------------------------------------------------------------------------------
# (c) the model is left untouched


def test_model_untouched_after_gradcam(resnet18, image) -> None:
    snapshot = Snapshot(resnet18)
    gradcam(resnet18, image, "layer3.1.bn2")
    gradcam(resnet18, image, "layer4", 3)
    snapshot.check()


def test_flags_restored_and_frozen_parameters_work(tiny, image) -> None:
    reference = gradcam(tiny, image, "bn1", 2)
    tiny.module.train()
    tiny.module.bn2.eval()
    tiny.module.conv1.weight.requires_grad_(False)
    tiny.module.fc.requires_grad_(False)
    snapshot = Snapshot(tiny)
    seen_training: list[bool] = []
    handle = tiny.module.bn2.register_forward_pre_hook(lambda m, _i: seen_training.append(m.training))
    try:
        partly_frozen = gradcam(tiny, image, "bn1", 2)
    finally:
        handle.remove()
    assert seen_training == [False], "Grad-CAM must run the model in eval mode"
    snapshot.check()
    tiny.module.requires_grad_(False)  # everything frozen: still works, the gradient is taken on the layer
    snapshot = Snapshot(tiny)
    frozen = gradcam(tiny, image, "bn1", 2)
    snapshot.check()
    for result in (partly_frozen, frozen):
        np.testing.assert_array_equal(result.cam, reference.cam)
        np.testing.assert_array_equal(result.weights, reference.weights)


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference_mode"])
def test_caller_grad_mode_is_kept(tiny, image, mode: str) -> None:
    reference = gradcam(tiny, image, "relu", 1)
    context = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[
        mode
    ]
    with context():
        before = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        result = gradcam(tiny, image, "relu", 1)
        assert (torch.is_grad_enabled(), torch.is_inference_mode_enabled()) == before
    np.testing.assert_array_equal(result.cam, reference.cam)


@pytest.mark.parametrize("mode", ["grad", "no_grad"])
def test_model_untouched_after_exception_in_forward(tiny, image, monkeypatch, mode: str) -> None:
    tiny.module.train()
    snapshot_outside = Snapshot(tiny)

    def boom(*_args: object) -> None:
        raise RuntimeError("forward failed")

    # conv2 runs after bn1, whose hook has already switched autograd on for the rest of the pass.
    monkeypatch.setattr(tiny.module.conv2, "forward", boom)
    context = torch.enable_grad if mode == "grad" else torch.no_grad
    with context():
        snapshot = Snapshot(tiny)
        with pytest.raises(RuntimeError, match="forward failed"):
            gradcam(tiny, image, "bn1")
        snapshot.check()
    snapshot_outside.check()


def test_lock_is_held_during_the_forward_pass(tiny, image) -> None:
    holder: list[bool] = []
    handle = tiny.module.conv2.register_forward_hook(lambda *_a: holder.append(lock_is_free(tiny)))
    try:
        gradcam(tiny, image, "conv1")
    finally:
        handle.remove()
    assert holder and not any(holder), "another thread must not get the lock during the forward pass"
    assert lock_is_free(tiny)


# ---------------------------------------------------------------------------------------------------
# (d) extract after gradcam


def test_extract_after_gradcam_gives_the_same_activations(resnet18, image) -> None:
    layers = ["conv1", "layer1.0.bn1", "layer3.1.bn2", "layer3.1.relu#2", "layer4", "layer4.1.bn2"]
    before = extract(resnet18, image, layers)
    gradcam(resnet18, image, "layer3.1.bn2")
    gradcam(resnet18, image, "layer4")
    after = extract(resnet18, image, layers)
    for name in layers:
        np.testing.assert_array_equal(after.activations[name], before.activations[name], err_msg=name)
    np.testing.assert_array_equal(after.probabilities, before.probabilities)


def test_gradcam_agrees_with_extract(resnet18, image) -> None:
    result = gradcam(resnet18, image, "layer3.1.bn2")
    extraction = extract(resnet18, image, ["layer3.1.bn2"])
    assert result.class_index == extraction.top_k_indices(1)[0]
    np.testing.assert_allclose(result.probabilities, extraction.probabilities, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        result.activations_mean, extraction.activations["layer3.1.bn2"].mean(0), rtol=1e-5, atol=1e-6
    )


# ---------------------------------------------------------------------------------------------------
# (e) threads


def _run_threads(jobs: list[Callable[[], object]], workers: int = 4, rounds: int = 2) -> list[list[object]]:
    results: list[list[object]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                results[i].append([jobs[(i + j) % len(jobs)]() for j in range(len(jobs))])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def _same(a: object, b: object) -> None:
    if isinstance(a, CamResult):
        assert isinstance(b, CamResult) and (a.layer, a.class_index) == (b.layer, b.class_index)
        np.testing.assert_array_equal(a.cam, b.cam)
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.activations_mean, b.activations_mean)
    else:
        for name, array in a.activations.items():  # type: ignore[attr-defined]
            np.testing.assert_array_equal(array, b.activations[name])  # type: ignore[attr-defined]


@pytest.mark.parametrize("which", ["tiny", "resnet18"])
def test_threads_sharing_one_model_get_their_sequential_results(
    which: str, tiny, resnet18, make_image
) -> None:
    model = tiny if which == "tiny" else resnet18
    images = [make_image(seed) for seed in range(4)]
    if which == "tiny":
        jobs: list[Callable[[], object]] = [
            lambda: gradcam(model, images[0], "bn1"),
            lambda: extract(model, images[1], ["bn1", "relu#2"]),
            lambda: gradcam(model, images[2], "relu#2", 3),
            lambda: gradcam(model, images[3], "relu"),
        ]
    else:
        jobs = [
            lambda: gradcam(model, images[0], "layer3.1.bn2"),
            lambda: extract(model, images[1], ["layer3.1.bn2", "layer4"]),
            lambda: gradcam(model, images[2], "layer4", 5),
        ]
    expected = [job() for job in jobs]
    rounds = 5 if which == "tiny" else 1
    for worker, per_round in enumerate(_run_threads(jobs, rounds=rounds)):
        for got in per_round:
            for j, value in enumerate(got):  # type: ignore[arg-type]
                _same(value, expected[(worker + j) % len(jobs)])
    assert hook_count(model.module) == 0
    assert all(p.grad is None for p in model.module.parameters())


# ---------------------------------------------------------------------------------------------------
# (f) errors, default layer, upsample


def test_non_spatial_and_unknown_layers(resnet18, image) -> None:
    with pytest.raises(LayerError, match="feature maps"):
        gradcam(resnet18, image, "fc")
    with pytest.raises(LayerError, match="list_layers"):
        gradcam(resnet18, image, "layer9")
    with pytest.raises(LayerError, match="runs 2 time"):
        gradcam(resnet18, image, "layer1.0.relu#3")
    assert hook_count(resnet18.module) == 0


@pytest.mark.parametrize("bad", [4, -1, 1000, 2.0, True, "1"])
def test_class_index_out_of_range(tiny, image, bad: object) -> None:
    snapshot = Snapshot(tiny)
    with pytest.raises(CamError, match="0 to 3") as info:
        gradcam(tiny, image, "bn1", bad)  # type: ignore[arg-type]
    assert isinstance(info.value, FeatvizError)
    snapshot.check()


def test_numpy_integer_class_index_is_accepted(tiny, image) -> None:
    assert gradcam(tiny, image, "bn1", np.int64(2)).class_index == 2


class MapNet(nn.Module):
    """Not a classifier: returns feature maps (or a tuple, or one score)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> object:
        y = self.conv(x)
        if self.kind == "maps":
            return y
        if self.kind == "tuple":
            return y.mean((2, 3)), y
        return y.mean((1, 2, 3)).unsqueeze(1)  # (1, 1): one score, no classes


@pytest.mark.parametrize("kind", ["maps", "tuple", "one score"])
def test_non_classifier_is_refused(kind: str, image) -> None:
    model = loaded(MapNet(kind), (8, 8), 3, 0, f"mapnet-{kind}")
    snapshot = Snapshot(model)
    with pytest.raises(CamError, match="needs a classifier") as info:
        gradcam(model, image, "conv")
    assert isinstance(info.value, FeatvizError)
    snapshot.check()


def test_layer_the_classifier_does_not_use(image) -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.side = nn.Conv2d(4, 2, 1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            self.side(y)  # computed, never used
            return self.fc(y.mean((2, 3)))

    model = loaded(Branchy(), (8, 8), 3, 3, "branchy")
    with pytest.raises(CamError, match="do not depend on layer 'side'"):
        gradcam(model, image, "side")
    assert hook_count(model.module) == 0 and lock_is_free(model)


def test_default_cam_layer(resnet18, tiny) -> None:
    assert default_cam_layer(resnet18) == "layer4"
    assert default_cam_layer(tiny) == "relu#2"
    for model in (resnet18, tiny):
        info = layer_info(model, default_cam_layer(model))
        assert info.spatial and info.shape[1] * info.shape[2] > 1


def test_default_cam_layer_is_the_feature_extractor_output() -> None:
    model = load_torchvision("mobilenet_v3_small", weights=None)
    assert default_cam_layer(model) == "features"
    assert layer_info(model, "features").shape == (576, 7, 7)


def test_default_cam_layer_without_feature_maps() -> None:
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3 * 4 * 4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    with pytest.raises(LayerError, match="no layer that outputs feature maps"):
        default_cam_layer(loaded(Flat(), (4, 4), 3, 2, "flat"))


def test_upsample() -> None:
    small = np.arange(12, dtype=np.float32).reshape(3, 4)
    big = upsample(small, (30, 40))
    assert big.shape == (30, 40) and big.dtype == np.float32
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(small)[None, None], size=(30, 40), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_array_equal(big, expected)
    assert small.min() - 1e-5 <= big.min() and big.max() <= small.max() + 1e-5
    np.testing.assert_array_equal(upsample(small, (3, 4)), small)
    np.testing.assert_allclose(upsample(np.full((2, 2), 0.5), (5, 7)), np.full((5, 7), 0.5), rtol=1e-6)
    readonly = small.copy()
    readonly.flags.writeable = False  # CamResult arrays are read-only: no warning, no problem
    np.testing.assert_array_equal(upsample(readonly, (30, 40)), big)
    big.flags.writeable = True  # a fresh array the caller owns
    with pytest.raises(FeatvizError, match="2-D"):
        upsample(np.zeros((1, 3, 4)), (8, 8))
    with pytest.raises(FeatvizError, match="positive"):
        upsample(small, (0, 8))


def test_overlay_size_from_model_view(resnet18, image) -> None:
    result = gradcam(resnet18, image, default_cam_layer(resnet18))
    view = resnet18.model_view(image)
    overlay = upsample(result.normalized, (view.height, view.width))
    assert overlay.shape == (224, 224) and 0 <= overlay.min() and overlay.max() <= 1 + 1e-6


def test_every_spatial_tiny_layer_matches_reference(tiny, image) -> None:
    x = tiny.preprocess(image)
    for info in list_layers(tiny):
        if info.spatial:
            result = gradcam(tiny, image, info.name, 1)
            assert_matches_reference(result, reference_gradcam(tiny.module, x, info.name, 1), info.name)


# ---------------------------------------------------------------------------------------------------
# (g) vision transformers: token layers (N, T, D) reshaped to the patch grid


def vit_model(name: str, **kwargs: object) -> LoadedModel:
    """A seeded random timm vision transformer; with ``img_size`` in ``kwargs`` fed pictures of that size."""
    timm = pytest.importorskip("timm")
    from featviz_core.models import standard_preprocessing
    from featviz_core.models.sources.timm import loaded_timm

    torch.manual_seed(0)
    module = timm.create_model(name, pretrained=False, **kwargs).eval()
    model = loaded_timm(module, name, pretrained=False, tag=None)
    size = kwargs.get("img_size")
    if isinstance(size, int):
        transform, view = standard_preprocessing((size, size), 3)
        model = dataclasses.replace(model, input_size=(size, size), transform=transform, view=view)
    return model


@pytest.mark.parametrize(("name", "prefix"), [("vit_tiny_patch16_224", 1), ("deit_tiny_distilled_patch16_224", 2)])
def test_vit_gradcam_matches_pytorch_grad_cam(name: str, prefix: int, image) -> None:
    """pytorch-grad-cam's documented recipe for a ViT: the last block's norm1, prefix tokens dropped, 14×14."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = vit_model(name)
    assert default_cam_layer(model) == "blocks.11.norm1"

    def reshape_transform(tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens[:, prefix:, :].reshape(tokens.size(0), 14, 14, tokens.size(2))
        return grid.transpose(2, 3).transpose(1, 2)

    x = model.preprocess(image)
    for class_index in (None, 7):
        result = gradcam(model, image, "blocks.11.norm1", class_index)
        assert result.cam.shape == (14, 14) and result.weights.shape == (192,)
        with GradCAM(model=model.module, target_layers=[model.module.blocks[-1].norm1],
                     reshape_transform=reshape_transform) as reference:
            expected = reference(input_tensor=x, targets=[ClassifierOutputTarget(result.class_index)])[0]
        ours = upsample(result.cam, (224, 224))
        assert np.corrcoef(ours.ravel(), expected.ravel())[0, 1] >= 0.99
    recorded = extract(model, image, ["blocks.11.norm1"]).activations["blocks.11.norm1"]
    np.testing.assert_allclose(result.activations_mean, recorded.mean(0), rtol=1e-5, atol=1e-6)


def test_vit_token_layer_survives_an_inplace_op_after_it(image) -> None:
    """timm's LayerScale(inplace=True) multiplies the attention's output in place right after it: the map of
    ``blocks.3.attn`` must be the one of the same network written without the in-place op."""
    inplace = vit_model("vit_tiny_patch16_224", img_size=64, depth=4, init_values=0.5)
    plain = vit_model("vit_tiny_patch16_224", img_size=64, depth=4, init_values=0.5)  # the same seed
    for block in inplace.module.blocks:
        block.ls1.inplace = True
    assert layer_info(inplace, "blocks.3.attn").overwritten
    for class_index in (2, 11):
        got = gradcam(inplace, image, "blocks.3.attn", class_index)
        expected = gradcam(plain, image, "blocks.3.attn", class_index)
        np.testing.assert_allclose(got.cam, expected.cam, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(got.activations_mean, expected.activations_mean, rtol=1e-5, atol=1e-7)
    snapshot = Snapshot(inplace)
    gradcam(inplace, image, "blocks.1", 3)
    snapshot.check()


def test_vit_threads_sharing_one_model_get_their_sequential_results(make_image) -> None:
    model = vit_model("vit_tiny_patch16_224", img_size=64, depth=4)
    images = [make_image(seed) for seed in range(3)]
    jobs: list[Callable[[], object]] = [
        lambda: gradcam(model, images[0], "blocks.3.norm1"),
        lambda: extract(model, images[1], ["blocks.1", "blocks.3.norm1"]),
        lambda: gradcam(model, images[2], "blocks.1", 5),
    ]
    expected = [job() for job in jobs]
    for worker, per_round in enumerate(_run_threads(jobs, rounds=2)):
        for got in per_round:
            for j, value in enumerate(got):  # type: ignore[arg-type]
                _same(value, expected[(worker + j) % len(jobs)])
    assert hook_count(model.module) == 0
    assert all(p.grad is None for p in model.module.parameters())


def test_ablation_cam_on_a_token_layer_writes_back_tokens(image) -> None:
    """Ablation-CAM zeroes one channel of the patch tokens and runs on: the class token stays as it was."""
    from featviz_core.cam import cam

    model = vit_model("vit_tiny_patch16_224", img_size=64, depth=2)
    result = cam(model, image, "blocks.0", 4, "ablationcam")
    assert result.cam.shape == (4, 4) and result.weights.shape == (192,)
    x = model.preprocess(image)
    block = model.module.blocks[0]

    def score(channel: int | None) -> float:
        def zero(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
            out = out.clone()
            if channel is not None:
                out[:, 1:, channel] = 0  # the patches only; token 0 is the class token
            return out

        handle = block.register_forward_hook(zero)
        try:
            with torch.no_grad():
                return float(model.module(x)[0, 4])
        finally:
            handle.remove()

    y = score(None)
    for channel in (0, 17, 191):
        np.testing.assert_allclose(result.weights[channel], (y - score(channel)) / y, rtol=1e-3, atol=1e-6)
    assert hook_count(model.module) == 0
