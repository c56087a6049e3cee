"""The CAM family: each method against its formula on a hand-computed case, against pytorch-grad-cam where no
in-place operation follows the layer, against a clone-everything reference on in-place trap layers, and the
model left untouched by every method."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from featviz_core import CAM_METHODS, cam, load_demo, load_image, load_torchvision, sample_bytes
from featviz_core.cam import METHODS, CamError, CamResult
from featviz_core.cam.methods import ScoreCAM
from featviz_core.layers import hook_count, parse_layer_name
from featviz_core.models import LoadedModel
from tests.test_cam import PIXELS, HandNet, Snapshot, hand_model, lock_is_free

GRADIENT = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigengradcam"]
ALL = [*GRADIENT, "scorecam", "ablationcam", "eigencam"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return load_demo()


@pytest.fixture(scope="module")
def star() -> Image.Image:
    return load_image(sample_bytes("star"))


def test_every_method_is_listed_with_one_line() -> None:
    assert set(CAM_METHODS) == set(METHODS) >= {
        "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam", "eigencam"
    }
    for name, line in CAM_METHODS.items():
        assert line.startswith(METHODS[name].title + ": ") and "\n" not in line and len(line) < 200
    with pytest.raises(CamError, match="not a CAM method; choose one of: gradcam"):
        cam(hand_model(False), Image.fromarray(PIXELS, "L"), "conv", method="gradcam+")


# ---------------------------------------------------------------------------------------------------
# The formulas, written plainly in NumPy (float64): a and g are (C, h, w)


def projection(x: np.ndarray) -> np.ndarray:
    rows = x.reshape(x.shape[0], -1).T
    centred = rows - rows.mean(axis=0)
    _, _, vt = np.linalg.svd(centred)
    p = centred @ vt[0]
    if abs(p.min()) > abs(p.max()):
        p = -p
    return p.reshape(x.shape[1:])


def reference_map(
    method: str, a: np.ndarray, g: np.ndarray | None, masked: np.ndarray | None = None,
    ablated: np.ndarray | None = None, y: float | None = None,
) -> np.ndarray:
    """The map of ``method`` (after its ReLU). ``masked``: the score for each channel's masked input (Score-CAM);
    ``ablated``: the score with each channel zeroed (Ablation-CAM); ``y`` the score."""
    if method == "gradcam":
        m = np.tensordot(g.mean(axis=(1, 2)), a, axes=1)
    elif method == "gradcam++":
        s = a.sum(axis=(1, 2))[:, None, None]
        d = 2 * g**2 + s * g**3
        alpha = np.divide(g**2, d, out=np.zeros_like(g), where=(g != 0) & (d != 0))
        m = np.tensordot((alpha * np.maximum(g, 0)).sum(axis=(1, 2)), a, axes=1)
    elif method == "xgradcam":
        s = a.sum(axis=(1, 2))[:, None, None]
        share = np.divide(a, s, out=np.zeros_like(a), where=s != 0)
        m = np.tensordot((share * g).sum(axis=(1, 2)), a, axes=1)
    elif method == "layercam":
        m = (np.maximum(g, 0) * a).sum(axis=0)
    elif method == "hirescam":
        m = (g * a).sum(axis=0)
    elif method == "eigencam":
        m = projection(a)
    elif method == "eigengradcam":
        m = projection(g * a)
    elif method == "scorecam":
        e = np.exp(masked - masked.max())
        m = np.tensordot(e / e.sum(), a, axes=1)
    elif method == "ablationcam":
        m = np.tensordot((y - ablated) / y, a, axes=1)
    else:  # pragma: no cover
        raise AssertionError(method)
    return np.maximum(m, 0)


def minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


# ---------------------------------------------------------------------------------------------------
# (a) the hand-computed case: 1×1 conv (fixed weights) -> optional in-place ReLU -> mean -> linear


def hand_forward(x: np.ndarray, relu: bool, zero: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(conv output A (3, h, w), logits) for pixels x / 255 in [0, 1]; ``zero``: channel of A set to 0."""
    a = np.stack([w * x + b for w, b in zip(HandNet.CONV_W, HandNet.CONV_B, strict=True)])
    if zero is not None:
        a = a.copy()
        a[zero] = 0
    fired = np.maximum(a, 0) if relu else a
    return a, np.array(HandNet.FC_W) @ fired.mean(axis=(1, 2)) + np.array(HandNet.FC_B)


def hand_expected(method: str, relu: bool, c: int) -> np.ndarray:
    x = PIXELS.astype(np.float64) / 255.0
    a, logits = hand_forward(x, relu)
    # d y_c / d A_k[i, j] = W[c, k] / (h w), times [A_k > 0] when the ReLU follows
    g = np.array(HandNet.FC_W)[c][:, None, None] / x.size * (a > 0 if relu else np.ones_like(a))
    # Score-CAM: the map is already at the input's size (1×1 conv), so its mask is min-max of A_k
    masked = np.array([hand_forward(x * minmax(a[k]), relu)[1][c] for k in range(3)])
    ablated = np.array([hand_forward(x, relu, zero=k)[1][c] for k in range(3)])
    return reference_map(method, a, g, masked, ablated, logits[c])


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("class_index", [0, 1])
def test_hand_computed_case(method: str, relu: bool, class_index: int) -> None:
    expected = hand_expected(method, relu, class_index)
    result = cam(hand_model(relu), Image.fromarray(PIXELS, "L"), "conv", class_index, method)
    assert result.method == method and result.class_index == class_index and result.layer == "conv"
    assert result.cam.shape == (3, 4) and result.weights.shape == (3,)
    for array in (result.cam, result.normalized, result.weights, result.activations_mean):
        assert array.dtype == np.float32 and not array.flags.writeable
    assert expected.max() > 0, "a case that shows nothing would test nothing"
    np.testing.assert_allclose(result.cam, expected, rtol=1e-5, atol=1e-6 * expected.max())
    np.testing.assert_allclose(result.normalized, expected / expected.max(), rtol=1e-5, atol=1e-6)


def test_hand_case_methods_differ() -> None:
    """The hand case tells the methods apart (a formula swapped for another would fail above)."""
    maps = {m: hand_expected(m, True, 1) for m in ALL}
    for i, m in enumerate(ALL):
        for n in ALL[i + 1:]:
            assert not np.allclose(maps[m], maps[n], rtol=1e-3, atol=1e-6), (m, n)


# ---------------------------------------------------------------------------------------------------
# (b) against pytorch-grad-cam, on layers that no in-place operation follows

gradcam_lib = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction  # noqa: E402


class ExactGradCAMPlusPlus(gradcam_lib.GradCAMPlusPlus):
    """pytorch-grad-cam's Grad-CAM++ with its 1e-6 removed from the denominator (the paper's formula): with
    gradients below ~1e-3 (resnet18's deep layers) that constant dominates and the library's map drifts
    (correlation 0.996-0.998 with the exact one, measured)."""

    def get_cam_weights(self, input_tensor, target_layers, target_category, activations, grads):  # type: ignore[no-untyped-def]
        g2 = grads**2
        d = 2 * g2 + activations.sum(axis=(2, 3))[:, :, None, None] * g2 * grads
        alpha = np.divide(g2, d, out=np.zeros_like(g2), where=(grads != 0) & (d != 0))
        return (np.maximum(grads, 0) * alpha).sum(axis=(2, 3))


class SignedEigenCAM(gradcam_lib.EigenCAM):
    """pytorch-grad-cam's Eigen-CAM with its sign-corrected projection (its plain one has an arbitrary sign)."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):  # type: ignore[no-untyped-def]
        return get_2d_projection_with_sign_correction(activations)


class SignedEigenGradCAM(gradcam_lib.EigenGradCAM):
    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):  # type: ignore[no-untyped-def]
        return get_2d_projection_with_sign_correction(grads * activations)


LIBRARY = {
    "gradcam": gradcam_lib.GradCAM,
    "gradcam++": ExactGradCAMPlusPlus,
    "xgradcam": gradcam_lib.XGradCAM,
    "layercam": gradcam_lib.LayerCAM,
    "hirescam": gradcam_lib.HiResCAM,
    "eigengradcam": SignedEigenGradCAM,
    "eigencam": SignedEigenCAM,
    "scorecam": gradcam_lib.ScoreCAM,
    "ablationcam": gradcam_lib.AblationCAM,
}


def library_map(model: LoadedModel, image: Image.Image, layer: str, method: str, class_index: int) -> np.ndarray:
    """pytorch-grad-cam's map (scaled 0..1 and resized to the input, as it gives it), on a copy of the model."""
    net = copy.deepcopy(model.module).eval()
    extractor = LIBRARY[method](net, [dict(net.named_modules())[layer]])
    x = model.preprocess(image)
    with extractor:
        return extractor(x, [ClassifierOutputTarget(class_index)])[0]


def assert_agrees_with_library(result: CamResult, theirs: np.ndarray, context: str) -> None:
    ours = scale_cam_image(result.cam[None], (theirs.shape[1], theirs.shape[0]))[0]  # their scaling, on ours
    assert ours.std() > 0 and theirs.std() > 0, context
    r = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
    assert r >= 0.999, f"{context}: correlation {r:.5f}"


@pytest.mark.parametrize("method", GRADIENT + ["eigencam"])
@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer4.1.conv2"])
def test_resnet18_agrees_with_pytorch_grad_cam(resnet18, image, method: str, layer: str) -> None:
    result = cam(resnet18, image, layer, 7, method)
    assert_agrees_with_library(result, library_map(resnet18, image, layer, method, 7), f"{method} {layer}")


def small_resnet18(resnet18: LoadedModel, size: int = 96) -> LoadedModel:
    transform = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(),
                           T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return dataclasses.replace(resnet18, input_size=(size, size), transform=transform, key=f"{resnet18.key}:{size}")


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_resnet18_many_pass_methods_agree_with_pytorch_grad_cam(resnet18, image, method: str) -> None:
    model = small_resnet18(resnet18)  # 256 forward passes at 96×96 instead of 224×224
    result = cam(model, image, "layer3", 7, method)
    assert_agrees_with_library(result, library_map(model, image, "layer3", method, 7), method)


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("layer", ["block3", "block3.relu2", "block3.conv1"])
def test_demo_model_agrees_with_pytorch_grad_cam(demo, star, method: str, layer: str) -> None:
    result = cam(demo, star, layer, None, method)
    assert result.class_name == "star"
    assert_agrees_with_library(result, library_map(demo, star, layer, method, result.class_index), f"{method} {layer}")


# ---------------------------------------------------------------------------------------------------
# (c) on in-place trap layers, against a reference that copies everything


def clone_everything(module: nn.Module, layer: str, x: torch.Tensor, class_index: int) -> dict[str, np.ndarray]:
    """A, dA and what Score-CAM and Ablation-CAM need, on a copy with every ReLU out of place and a hook that
    keeps the layer's output in the graph and hands the rest of the network a copy of it."""
    net = copy.deepcopy(module).eval()
    for m in net.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    name, call = parse_layer_name(layer)
    seen: list[torch.Tensor] = []
    zero: list[int | None] = [None]

    def keep(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        seen.append(out)
        copied = out.clone()
        if zero[0] is not None:
            copied[:, zero[0]] = 0
        return copied

    handle = dict(net.named_modules())[name].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = net(x)
        a = seen[call - 1]
        (g,) = torch.autograd.grad(logits[0, class_index], a)
        a = a.detach()
        size = x.shape[-2:]
        masked, ablated = [], []
        with torch.no_grad():
            for k in range(a.shape[1]):
                mask = torch.nn.functional.interpolate(a[:, k:k + 1], size=size, mode="bilinear", align_corners=True)
                seen.clear()
                masked.append(float(net(x * torch.from_numpy(minmax(mask.double().numpy())).float())[0, class_index]))
                zero[0] = k
                ablated.append(float(net(x)[0, class_index]))
                zero[0] = None
    finally:
        handle.remove()
    return {"a": a[0].double().numpy(), "g": g[0].double().numpy(), "masked": np.array(masked),
            "ablated": np.array(ablated), "y": float(logits[0, class_index].detach())}


@pytest.mark.parametrize("layer", ["layer2.1.bn2", "layer1.0.bn1"])
def test_inplace_trap_layers_match_the_clone_everything_reference(resnet18, image, layer: str) -> None:
    model = small_resnet18(resnet18)
    ref = clone_everything(model.module, layer, model.preprocess(image), 7)
    assert ref["a"].min() < 0, "a bn output has negative values before the in-place ReLU"
    for method in ALL:
        result = cam(model, image, layer, 7, method)
        expected = reference_map(method, ref["a"], ref["g"], ref["masked"], ref["ablated"], ref["y"])
        np.testing.assert_allclose(result.cam, expected, rtol=2e-4, atol=2e-5 * expected.max(), err_msg=method)
        np.testing.assert_allclose(result.activations_mean, ref["a"].mean(0), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# (d) the model is left untouched; models without gradients; batches, progress and the lock


@pytest.mark.parametrize("method", ALL)
def test_every_method_leaves_the_model_untouched(tiny, image, method: str) -> None:
    tiny.module.train()
    tiny.module.conv1.weight.requires_grad_(False)
    snapshot = Snapshot(tiny)
    cam(tiny, image, "bn1", 1, method)
    cam(tiny, image, "relu#2", None, method)
    snapshot.check()


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "gradcam"])
def test_a_failing_progress_callback_leaves_nothing_behind(tiny, image, method: str) -> None:
    """What ui/jobs.py does to stop a job: its progress callback raises between two batches."""
    tiny.module.train()
    snapshot = Snapshot(tiny)
    calls: list[tuple[int, int]] = []

    def stop_at_second(done: int, total: int, _preview: object) -> None:
        calls.append((done, total))
        if len(calls) == 2:
            raise RuntimeError("stopped")

    runner = METHODS[method](tiny, "bn2", batch_size=2, progress=stop_at_second)
    if runner.many_passes:
        with pytest.raises(RuntimeError, match="stopped"):
            runner.run(image, 0)
        assert calls == [(0, 6), (2, 6)]
    else:
        runner.run(image, 0)
        assert calls == []  # one forward pass: nothing to report
    snapshot.check()


def test_batches_fit_the_memory_budget(resnet18, demo) -> None:
    from featviz_core.cam import auto_batch
    from featviz_core.cam.base import BATCH_MEMORY

    vgg = load_torchvision("vgg16", weights=None)
    assert auto_batch(resnet18) == 32 and auto_batch(demo) == 32  # the cap
    assert auto_batch(vgg) == BATCH_MEMORY // (2 * 4 * 64 * 224 * 224) == 10  # features.0: 64×224×224
    assert ScoreCAM(vgg, "features.28").batch == 10 and ScoreCAM(demo, "block3", batch_size=3).batch == 3


def test_score_cam_batches_give_the_same_map_and_progress_counts_them(demo, star) -> None:
    seen: list[tuple[int, int]] = []
    one = ScoreCAM(demo, "block3", batch_size=1).run(star)
    many = ScoreCAM(demo, "block3", batch_size=24, progress=lambda d, t, _p: seen.append((d, t))).run(star)
    np.testing.assert_allclose(many.cam, one.cam, rtol=1e-5, atol=1e-7 * float(one.cam.max()))
    assert seen == [(0, 64), (24, 64), (48, 64), (64, 64)]


def test_a_concurrent_extract_finishes_during_score_cam(demo, star) -> None:
    """The lock is held for one batch at a time: an extract started between two batches completes while
    Score-CAM waits for it (if the lock were held for the whole job, the extract could not finish)."""
    import threading

    from featviz_core import extract

    finished: list[bool] = []
    waited: list[bool] = []

    def progress(done: int, total: int, _preview: object) -> None:
        if 0 < done < total and not waited:  # between two batches
            worker = threading.Thread(target=lambda: finished.append(bool(extract(demo, star, ["block2"]).layers)))
            worker.start()
            worker.join(timeout=120)
            waited.append(not worker.is_alive())

    ScoreCAM(demo, "block3", batch_size=16, progress=progress).run(star)
    assert waited == [True] and finished == [True]
    assert lock_is_free(demo) and hook_count(demo.module) == 0


def test_models_without_gradients(tiny, image) -> None:
    """A model run outside autograd (onnxruntime): gradient methods and Ablation-CAM refuse in one sentence;
    Score-CAM and Eigen-CAM, which only record the layer and run the model, work and give the same maps."""
    frozen = dataclasses.replace(tiny, supports_gradients=False)
    for method in GRADIENT:
        with pytest.raises(CamError, match="needs gradients.*Score-CAM or Eigen-CAM"):
            cam(frozen, image, "bn2", 1, method)
    with pytest.raises(CamError, match="must change layer 'bn2'"):
        cam(frozen, image, "bn2", 1, "ablationcam")
    for method in ("scorecam", "eigencam"):
        np.testing.assert_array_equal(cam(frozen, image, "bn2", 1, method).cam, cam(tiny, image, "bn2", 1, method).cam)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", ALL)
def test_on_the_gpu_the_maps_equal_the_cpu_ones(demo, star, method: str) -> None:
    gpu = dataclasses.replace(demo, module=copy.deepcopy(demo.module).cuda(), key="demo:cuda")
    here, there = cam(demo, star, "block3", None, method), cam(gpu, star, "block3", None, method)
    np.testing.assert_allclose(there.cam, here.cam, rtol=1e-3, atol=1e-4 * float(here.cam.max()))
    assert next(gpu.module.parameters()).is_cuda and hook_count(gpu.module) == 0


def test_cam_results_say_how_they_were_made(demo, star) -> None:
    for method in ("gradcam", "eigencam"):
        result = cam(demo, star, "block3", 2, method)
        assert (result.method, result.class_index, result.class_name) == (method, 2, "triangle")
        assert result.target is not None and result.target.channel == 2 and result.target.output is None
        assert 0 < result.probability < 1 and result.probabilities.shape == (6,)


class Permute(nn.Module):
    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class ChannelsLast(nn.Module):
    """conv -> to (N, H, W, C) -> LayerNorm over channels (a channels-last layer, as in ConvNeXt) -> back."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.to_nhwc = Permute(0, 2, 3, 1)
        self.norm = nn.LayerNorm(6)
        self.to_nchw = Permute(0, 3, 1, 2)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.to_nchw(self.norm(self.to_nhwc(self.conv(x))))
        return self.fc(torch.relu(y).mean((2, 3)))


@pytest.mark.parametrize("method", ALL)
def test_a_channels_last_layer_gives_the_map_of_the_same_values_in_channels_first(image, method: str) -> None:
    """``norm`` outputs (N, H, W, C); ``to_nchw`` outputs the same values as (N, C, H, W): same map."""
    from featviz_core import layer_info

    model = dataclasses.replace(hand_model(False), module=ChannelsLast().eval(), input_channels=3,
                                input_size=(10, 14), transform=T.Compose([T.Resize((10, 14)), T.ToTensor()]),
                                categories=None, key="test:channels-last")
    assert layer_info(model, "norm").channels_last and not layer_info(model, "to_nchw").channels_last
    assert layer_info(model, "norm").shape == layer_info(model, "to_nchw").shape == (6, 10, 14)
    shown = 0
    for c in range(4):
        last, first = cam(model, image, "norm", c, method), cam(model, image, "to_nchw", c, method)
        np.testing.assert_allclose(last.cam, first.cam, rtol=1e-5, atol=1e-6 * max(float(first.cam.max()), 1e-6))
        np.testing.assert_allclose(last.weights, first.weights, rtol=1e-5, atol=1e-7)
        shown += int(last.cam.max() > 0)
    assert shown > 0, "some class has a map that is not empty"


def test_a_model_run_by_onnxruntime_gets_score_cam_one_image_at_a_time() -> None:
    """An ONNX graph made for one image at a time, run by onnxruntime: Score-CAM's batches are refused, so it
    goes on one by one, and its map is the formula's on onnxruntime's own scores."""
    pytest.importorskip("onnxruntime")
    from featviz_core import extract, load_onnx
    from tests.conftest import random_image
    from tests.onnx_builders import small_cnn

    model = load_onnx(small_cnn("ThresholdedRelu", alpha=0.1).SerializeToString(), "tiny.onnx")
    assert not model.supports_gradients
    image, layer = random_image(1), "act/ThresholdedRelu"
    x = model.preprocess(image)
    with pytest.raises(Exception, match="dimensions"):
        model.module(x.repeat(2, 1, 1, 1))  # the graph takes one image only
    a = extract(model, image, [layer]).activations[layer].astype(np.float64)
    c = int(extract(model, image, [layer]).top_k_indices(1)[0])
    masked = []
    for k in range(a.shape[0]):
        mask = torch.nn.functional.interpolate(torch.from_numpy(a[None, k:k + 1]), size=x.shape[-2:],
                                               mode="bilinear", align_corners=True)[0, 0].numpy()
        masked.append(float(model.module(x * torch.from_numpy(minmax(mask)).float())[0, c]))
    expected = reference_map("scorecam", a, None, np.array(masked))
    runner = ScoreCAM(model, layer)
    assert runner.batch > 1
    result = runner.run(image)
    assert runner.batch == 1 and expected.max() > 0
    np.testing.assert_allclose(result.cam, expected, rtol=1e-5, atol=1e-6 * expected.max())
    eigen = cam(model, image, layer, None, "eigencam")
    np.testing.assert_allclose(eigen.cam, reference_map("eigencam", a, None), rtol=1e-5, atol=1e-6)
    assert hook_count(model.module) == 0 and lock_is_free(model)


def test_available_methods_say_what_a_run_refuses(tiny, image) -> None:
    """The page offers what available_methods allows; a refused method's sentence is the one its run raises."""
    from featviz_core.cam.methods import available_methods

    assert available_methods(tiny) == dict.fromkeys(METHODS)
    frozen = dataclasses.replace(tiny, supports_gradients=False)
    offered = available_methods(frozen)
    assert [m for m, why in offered.items() if why is None] == ["scorecam", "eigencam"]
    for method in GRADIENT:
        with pytest.raises(CamError) as refused:
            cam(frozen, image, "bn2", 1, method)
        assert str(refused.value) == offered[method]
    assert offered["ablationcam"] is not None and "must change a layer" in offered["ablationcam"]
