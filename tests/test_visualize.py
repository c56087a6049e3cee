"""featviz_core.visualize.optimize: the objective rises, the model is left untouched, locks, threads, the demo's edges."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from featviz_core import FeatvizError, LayerError, extract, layer_info, load_image
from featviz_core.demo import load_demo
from featviz_core.images import list_samples, sample_bytes
from featviz_core.layers import hook_count
from featviz_core.models import LoadedModel, view_transform
from featviz_core.visualize import Visualization, visualize
from featviz_core.visualize.optimize import VisualizeError
from featviz_core.visualize.param import input_map
from tests.conftest import make_tiny
from tests.test_cam import Snapshot, lock_is_free

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def vggish(seed: int = 1, size: int = 64) -> LoadedModel:
    """A tiny seeded VGG-like network: conv-ReLU-pool twice, conv-ReLU, pool, linear; He-initialised
    convolutions with zero biases (as trained networks start), ImageNet normalisation, in-place ReLUs."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.zeros_(module.bias)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return LoadedModel(
        module=net, name="vggish", key=f"test:vggish:{seed}", categories=list("abcd"), input_channels=3,
        input_size=(size, size),
        transform=T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)]),
        view=view_transform(size, size), source="test", provenance="tiny seeded test network",
    )


def channel_means(model: LoadedModel, image: Image.Image, layer: str) -> np.ndarray:
    return extract(model, image, [layer]).activations[layer].mean(axis=(1, 2))


def grey(model: LoadedModel) -> Image.Image:
    height, width = model.input_size
    return Image.new("RGB", (width, height), (128, 128, 128))


def samples() -> dict[str, Image.Image]:
    return {s.name: load_image(sample_bytes(s.name)) for s in list_samples()}


# ---------------------------------------------------------------------------------------------------
# (a) the objectives do what they say


def test_channel_objective_beats_grey_and_every_sample() -> None:
    model, layer = vggish(), "7"  # the last ReLU
    ours = samples()
    references = {name: channel_means(model, image, layer) for name, image in ours.items()}
    plain = channel_means(model, grey(model), layer)
    for channel in range(8):
        result = visualize(model, layer, channel, size=64, steps=256, seed=0)
        reached = float(result.reached[0])
        best = max(float(values[channel]) for values in references.values())
        assert reached > 0 and reached >= 10 * float(plain[channel]), (channel, reached, plain[channel])
        assert reached >= 2 * best, (channel, reached, best)
        assert result.activation[-32:].mean() > 2 * result.activation[:8].mean(), "the objective rises"


def test_negative_objective_lowers_the_channel() -> None:
    model, layer = vggish(), "3"  # a convolution: both signs
    plain = channel_means(model, grey(model), layer)
    lowest = np.min([channel_means(model, image, layer) for image in samples().values()], axis=0)
    for channel in range(4):
        down = visualize(model, layer, channel, size=64, steps=128, objective="negative")
        assert down.objective == "negative"
        assert down.reached[0] < min(plain[channel], lowest[channel]) - 0.05, (channel, down.reached, plain)
        assert down.activation[-16:].mean() < down.activation[:4].mean(), "the objective falls"


def _gram_similarity(model: LoadedModel, layer: str, images: np.ndarray) -> float:
    """Mean cosine similarity of the layer's Gram matrices between the pictures (lucent's measure)."""
    pixels = torch.tensor(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        recorded = {}
        hook = dict(model.module.named_modules())[layer].register_forward_hook(
            lambda _m, _i, out: recorded.setdefault("out", out.clone()))
        try:
            model.module(input_map(model)(pixels))
        finally:
            hook.remove()
    flat = recorded["out"].flatten(2)
    grams = torch.nn.functional.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)
    similarity = grams @ grams.T
    n = len(images)
    return float((similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1)))


def test_diversity_gives_four_different_pictures() -> None:
    model, layer, channel = load_demo(), "block3.relu2", 4
    diverse = visualize(model, layer, channel, objective="diversity", size=64, steps=256)
    alike = visualize(model, layer, channel, objective="channel", size=64, steps=256, batch=4)
    assert diverse.images.shape == alike.images.shape == (4, 64, 64, 3) and diverse.batch == 4
    pixels = diverse.images.astype(np.float32)
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(pixels[i] - pixels[j]).mean() > 20, (i, j)
    assert _gram_similarity(model, layer, diverse.images) < 0.8 * _gram_similarity(model, layer, alike.images)
    # each picture still excites the channel (more than any sample does)
    best = max(float(channel_means(model, image, layer)[channel]) for image in samples().values())
    assert diverse.reached.min() > best


def test_neuron_objective_fires_the_centre(tiny) -> None:
    result = visualize(tiny, "relu#2", 2, objective="neuron", size=48, steps=96)
    assert result.activation[-8:].mean() > result.activation[:2].mean() + 0.5
    assert result.reached.shape == (1,)


# ---------------------------------------------------------------------------------------------------
# (b) results: shapes, types, determinism


def test_result_is_read_only_and_says_what_it_is(tiny) -> None:
    result = visualize(tiny, "bn1", 1, size=40, steps=5, seed=3)
    assert isinstance(result, Visualization) and dataclasses.is_dataclass(result)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.seed = 4  # type: ignore[misc]
    assert result.images.dtype == np.uint8 and result.images.shape == (1, 40, 40, 3)
    assert result.activation.dtype == np.float32 and result.activation.shape == (5,)
    for array in (result.images, result.activation, result.reached):
        assert not array.flags.writeable
    assert (result.layer, result.channel, result.objective, result.size, result.steps, result.seed) == (
        "bn1", 1, "channel", 40, 5, 3)
    assert result.model_key == tiny.key and "bn1" in result.key
    grey_model = make_tiny(in_channels=1)
    assert visualize(grey_model, "conv1", 0, size=36, steps=3).images.shape == (1, 36, 36)


def test_same_seed_same_pictures_other_seed_other_pictures(tiny) -> None:
    a = visualize(tiny, "relu#2", 3, size=48, steps=24, seed=7)
    b = visualize(tiny, "relu#2", 3, size=48, steps=24, seed=7)
    c = visualize(tiny, "relu#2", 3, size=48, steps=24, seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.activation, b.activation)
    assert not np.array_equal(a.images, c.images)


def test_progress_reports_every_step_with_a_preview(tiny) -> None:
    seen: list[tuple[int, int, tuple[int, ...]]] = []
    result = visualize(tiny, "conv2", 0, size=40, steps=6,
                       progress=lambda step, steps, preview: seen.append((step, steps, preview.shape)))
    assert seen == [(step, 6, (1, 40, 40, 3)) for step in range(1, 7)]
    assert result.steps == 6


# ---------------------------------------------------------------------------------------------------
# (c) the model is left as it was


def test_model_untouched_after_a_run(resnet18) -> None:
    snapshot = Snapshot(resnet18)
    visualize(resnet18, "layer1.0.bn1", 5, size=48, steps=3)
    snapshot.check()


def test_model_untouched_when_the_callback_stops_the_run(tiny) -> None:
    tiny.module.train()
    tiny.module.bn2.eval()
    tiny.module.conv1.weight.requires_grad_(False)
    snapshot = Snapshot(tiny)

    class Stop(Exception):
        pass

    def progress(step: int, _steps: int, _preview: object) -> None:
        if step == 3:
            raise Stop

    for mode in (torch.enable_grad, torch.no_grad, torch.inference_mode):
        with mode(), pytest.raises(Stop):
            visualize(tiny, "bn1", 2, size=40, steps=50, progress=progress)
        snapshot.check()
    seen_training: list[bool] = []
    handle = tiny.module.conv1.register_forward_pre_hook(lambda m, _i: seen_training.append(m.training))
    try:
        visualize(tiny, "bn1", 2, size=40, steps=2)
    finally:
        handle.remove()
    assert seen_training and not any(seen_training), "the model runs in eval mode"
    snapshot.check()


def test_forward_pass_stops_at_the_target_layer(tiny) -> None:
    layer_info(tiny, "relu")  # the one-off dry run that lists the layers runs the whole model
    later: list[str] = []
    handle = tiny.module.conv2.register_forward_pre_hook(lambda *_a: later.append("conv2"))
    try:
        visualize(tiny, "relu", 1, size=40, steps=4)
    finally:
        handle.remove()
    assert later == [], "nothing after the target layer may run"
    assert hook_count(tiny.module) == 0


def test_value_before_the_inplace_relu_is_the_objective(tiny) -> None:
    """bn1 is followed by ReLU(inplace=True): what is optimized is bn1's own output (it can be negative)."""
    result = visualize(tiny, "bn1", 4, objective="negative", size=40, steps=64)
    assert result.activation[-1] < 0 and result.reached[0] < 0
    pixels = torch.tensor(result.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        direct = tiny.module.bn1(tiny.module.conv1(input_map(tiny)(pixels)))[0, 4].mean()
    assert abs(float(direct) - float(result.reached[0])) < 0.02  # the uint8 picture vs the float one


def test_a_dead_relu_channel_is_started_through_its_input() -> None:
    """Demo channels that a grey picture does not fire at all still get a picture that fires them."""
    model = load_demo()
    plain = channel_means(model, grey(model), "block1.relu1")
    dead = [c for c in range(16) if plain[c] == 0][:2]
    assert dead
    for channel in dead:
        assert visualize(model, "block1.relu1", channel, size=48, steps=48).reached[0] > 0.05


class _ToNHWC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class _ChannelsLastNet(nn.Module):
    """conv1, then its output as (N, H, W, C) (as ConvNeXt's LayerNorm layers give theirs)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.nhwc = _ToNHWC()
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.nhwc(self.conv1(x)).mean(dim=(1, 2)))


def test_a_channels_last_layer_is_read_channel_by_channel() -> None:
    net = _ChannelsLastNet().eval()
    model = LoadedModel(module=net, name="nhwc-net", key="test:nhwc", categories=None, input_channels=3,
                        input_size=(24, 32), transform=T.ToTensor(), view=view_transform(None, (24, 32)),
                        source="test", provenance="test")
    assert layer_info(model, "nhwc").channels_last and layer_info(model, "nhwc").shape == (6, 24, 32)
    for channel in (1, 4):
        direct = visualize(model, "conv1", channel, size=40, steps=12, seed=2)
        permuted = visualize(model, "nhwc", channel, size=40, steps=12, seed=2)
        np.testing.assert_allclose(permuted.activation, direct.activation, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# (d) the lock: one step at a time


def test_lock_is_held_during_each_forward_pass(tiny) -> None:
    free: list[bool] = []
    handle = tiny.module.conv1.register_forward_hook(lambda *_a: free.append(lock_is_free(tiny)))
    try:
        visualize(tiny, "bn1", 0, size=40, steps=3, progress=lambda *_a: free.append(not lock_is_free(tiny)))
    finally:
        handle.remove()
    assert free and not any(free), "locked while the model runs, free between the steps"


def test_a_concurrent_extract_finishes_while_a_visualization_runs(tiny, image) -> None:
    expected = extract(tiny, image, ["bn2"]).activations["bn2"]
    got: dict[str, object] = {}
    started, finished = threading.Event(), threading.Event()

    def other_session() -> None:
        started.wait(60)
        got["maps"] = extract(tiny, image, ["bn2"]).activations["bn2"]
        finished.set()

    class Done(Exception):
        pass

    steps_seen: list[int] = []

    def progress(step: int, _steps: int, _preview: object) -> None:
        steps_seen.append(step)
        started.set()
        if finished.is_set():
            raise Done  # the extract finished while the visualization was still running

    thread = threading.Thread(target=other_session)
    thread.start()
    with pytest.raises(Done):
        visualize(tiny, "relu#2", 1, size=40, steps=10_000, progress=progress)
    thread.join(60)
    assert steps_seen[-1] < 10_000
    np.testing.assert_array_equal(got["maps"], expected)
    assert hook_count(tiny.module) == 0 and lock_is_free(tiny)


def test_two_sessions_at_once_get_their_sequential_results(tiny) -> None:
    jobs = [
        dict(layer="relu#2", channel=1, size=48, steps=40, seed=1),
        dict(layer="bn1", channel=3, size=40, steps=40, seed=2, objective="negative"),
    ]
    expected = [visualize(tiny, **job) for job in jobs]  # type: ignore[arg-type]
    results: list[Visualization | None] = [None, None]
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = visualize(tiny, **jobs[i])  # type: ignore[arg-type]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        assert got is not None
        np.testing.assert_array_equal(got.images, want.images)
        np.testing.assert_array_equal(got.activation, want.activation)
    assert hook_count(tiny.module) == 0


# ---------------------------------------------------------------------------------------------------
# (e) the demo model: first-block channels see oriented edges


def _orientation(power: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> tuple[float, float]:
    """Dominant orientation (degrees, mod 180) of a power spectrum and how strongly it dominates (0–1)."""
    phi = np.arctan2(fy, fx)
    keep = (fx**2 + fy**2) > 0
    z = (power * np.exp(2j * phi))[keep].sum()
    return float(np.degrees(0.5 * np.angle(z)) % 180), float(abs(z) / power[keep].sum())


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    f = np.fft.fftfreq(n)
    return np.broadcast_to(f[:, None], (n, n)), np.broadcast_to(f[None, :], (n, n))


def test_demo_first_block_pictures_have_their_filters_orientation() -> None:
    model = load_demo()
    weights = model.module.block1.conv1.weight.detach().numpy()  # (16, 3, 5, 5)
    filters = []
    for channel in range(weights.shape[0]):
        u, s, vt = np.linalg.svd(weights[channel].reshape(3, -1))  # colour × space
        spatial, colour = vt[0].reshape(5, 5), u[:, 0]
        angle, strength = _orientation(np.abs(np.fft.fft2(spatial, s=(64, 64))) ** 2, *_grid(64))
        filters.append((strength, channel, angle, colour, s[0] ** 2 / (s**2).sum()))
    oriented = [f for f in sorted(filters, reverse=True) if f[0] > 0.4 and f[4] > 0.6][:3]
    assert len(oriented) == 3, "the trained first layer has clearly oriented edge filters"
    angles = []
    for _strength, channel, expected, colour, _share in oriented:
        picture = visualize(model, "block1.relu1", channel, size=128, steps=256).images[0]
        seen = (picture.astype(np.float64) / 255) @ colour  # the picture in the filter's colour direction
        seen = (seen - seen.mean()) * np.outer(np.hanning(128), np.hanning(128))
        found, strength = _orientation(np.abs(np.fft.fft2(seen)) ** 2, *_grid(128))
        error = abs((found - expected + 90) % 180 - 90)
        assert strength > 0.3, (channel, strength)  # the picture is oriented, not blobs
        assert error < 15, (channel, expected, found)
        angles.append(found)


# ---------------------------------------------------------------------------------------------------
# (f) refusals in one sentence


def test_a_model_outside_autograd_is_refused(tiny) -> None:
    onnx_like = dataclasses.replace(tiny, supports_gradients=False)
    with pytest.raises(VisualizeError) as caught:
        visualize(onnx_like, "bn1", 0)
    message = str(caught.value)
    assert "autograd" in message and "\n" not in message and message.count(". ") == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (dict(layer="bn1", channel=6), VisualizeError, "from 0 to 5"),
        (dict(layer="bn1", channel=-1), VisualizeError, "from 0 to 5"),
        (dict(layer="bn1", channel=1.5), VisualizeError, "whole number"),
        (dict(layer="nope", channel=0), LayerError, "list_layers"),
        (dict(layer="fc", channel=0), LayerError, "fc"),
        (dict(layer="bn1", channel=0, objective="biggest"), VisualizeError, "channel, neuron, negative, diversity"),
        (dict(layer="bn1", channel=0, size=8), VisualizeError, "picture size"),
        (dict(layer="bn1", channel=0, steps=0), VisualizeError, "steps"),
    ],
)
def test_bad_requests_say_what_to_do(tiny, kwargs, error, words) -> None:
    with pytest.raises(error, match=words) as caught:
        visualize(tiny, **kwargs)
    assert isinstance(caught.value, FeatvizError)
    assert hook_count(tiny.module) == 0 and lock_is_free(tiny)


def test_a_vision_transformer_token_layer_is_visualized_on_its_patch_grid() -> None:
    """A channel of a token layer is one embedding dimension over the patch grid; with a model that takes any
    size, a picture of another size gives another grid."""
    from tests.test_cam import vit_model

    model = vit_model("vit_tiny_patch16_224", img_size=64, depth=2)
    assert layer_info(model, "blocks.1").tokens
    snapshot = Snapshot(model)
    result = visualize(model, "blocks.1", 5, size=64, steps=24, seed=0)
    assert result.images.shape == (1, 64, 64, 3) and np.isfinite(result.activation).all()
    assert result.activation[-4:].mean() > result.activation[:4].mean(), "the objective rises"
    snapshot.check()
    dynamic = vit_model("vit_tiny_patch16_224", img_size=64, depth=2, dynamic_img_size=True)
    neuron = visualize(dynamic, "blocks.1", 5, objective="neuron", size=96, steps=4, seed=0)
    assert neuron.images.shape == (1, 96, 96, 3) and np.isfinite(neuron.reached).all()
