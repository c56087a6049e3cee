"""ActivationRecorder and list_layers: hooks that leave nothing behind, names for repeated calls."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from featviz_core import ActivationRecorder, LayerError, default_layer, extract, layer_info, list_layers
from featviz_core.layers import Tap, hook_count, parse_layer_name


def reference_calls(module: torch.nn.Module, module_name: str, x: torch.Tensor) -> list[np.ndarray]:
    """Every output of ``module_name`` in one forward pass, copied at once by a plain hook."""
    seen: list[np.ndarray] = []
    target = dict(module.named_modules())[module_name]
    handle = target.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()[0].numpy()))
    try:
        with torch.no_grad():
            module(x)
    finally:
        handle.remove()
    return seen


def test_parse_layer_name() -> None:
    assert parse_layer_name("layer1.0.relu#2") == ("layer1.0.relu", 2)
    assert parse_layer_name("layer1.0.relu") == ("layer1.0.relu", 1)
    assert parse_layer_name("odd#name") == ("odd#name", 1)


def test_bn1_keeps_negative_values_despite_inplace_relu(resnet18, image) -> None:
    maps = extract(resnet18, image, ["layer1.0.bn1", "layer1.0.relu"]).activations
    assert maps["layer1.0.bn1"].min() < 0, "bn1 must be recorded before the in-place ReLU overwrites it"
    assert maps["layer1.0.relu"].min() >= 0
    expected = reference_calls(resnet18.module, "layer1.0.bn1", resnet18.preprocess(image))[0]
    np.testing.assert_array_equal(maps["layer1.0.bn1"], expected)


def test_reused_relu_gives_one_entry_per_call(resnet18, image) -> None:
    names = {info.name: info for info in list_layers(resnet18)}
    assert names["layer1.0.relu"].calls == 2 and names["layer1.0.relu#2"].calls == 2
    assert "layer1.0.relu#3" not in names
    maps = extract(resnet18, image, ["layer1.0.relu", "layer1.0.relu#2"]).activations
    first, second = reference_calls(resnet18.module, "layer1.0.relu", resnet18.preprocess(image))
    np.testing.assert_array_equal(maps["layer1.0.relu"], first)
    np.testing.assert_array_equal(maps["layer1.0.relu#2"], second)
    assert not np.array_equal(first, second)


def test_no_hook_left_after_extract(resnet18, image) -> None:
    assert hook_count(resnet18.module) == 0
    extract(resnet18, image, [i.name for i in list_layers(resnet18) if i.spatial])
    assert hook_count(resnet18.module) == 0


def test_no_hook_left_after_exception_in_forward(resnet18, image, monkeypatch) -> None:
    def boom(*_args: object) -> None:
        raise RuntimeError("forward failed")

    monkeypatch.setattr(resnet18.module.layer3, "forward", boom)
    with pytest.raises(RuntimeError, match="forward failed"):
        extract(resnet18, image, ["layer1.0.conv1", "layer4.1.relu#2"])
    assert hook_count(resnet18.module) == 0
    assert resnet18.lock.acquire(blocking=False), "the lock must be released after an exception"
    resnet18.lock.release()


def test_hooks_are_removed_also_when_registering_fails(tiny, monkeypatch) -> None:
    def refuse(*_args: object) -> None:
        raise RuntimeError("registering failed")

    # conv1's and conv2's output hooks are in place when conv2's input hook fails
    monkeypatch.setattr(tiny.module.conv2, "register_forward_pre_hook", refuse)
    taps = [Tap("conv1"), Tap("conv2", keep_input=True)]
    tiny.module.train()
    with pytest.raises(RuntimeError, match="registering failed"), ActivationRecorder(tiny.module, taps=taps,
                                                                                      lock=tiny.lock):
        pass
    assert hook_count(tiny.module) == 0 and tiny.module.training and tiny.module.conv1.training
    assert tiny.lock.acquire(blocking=False), "the lock must be released after an exception"
    tiny.lock.release()
    tiny.module.eval()


def test_training_flags_restored(tiny, image) -> None:
    tiny.module.train()
    tiny.module.bn2.eval()
    before = {name: m.training for name, m in tiny.module.named_modules()}
    seen_training: list[bool] = []
    handle = tiny.module.conv1.register_forward_pre_hook(lambda m, _i: seen_training.append(m.training))
    try:
        extract(tiny, image, ["conv1"])
    finally:
        handle.remove()
    assert seen_training and not any(seen_training), "every forward pass must run in eval mode"
    assert {name: m.training for name, m in tiny.module.named_modules()} == before


def test_recorder_exit_twice_is_safe(tiny) -> None:
    recorder = ActivationRecorder(tiny.module, ["conv1"], lock=tiny.lock)
    with recorder:
        assert hook_count(tiny.module) == 1
    recorder.__exit__(None, None, None)
    assert hook_count(tiny.module) == 0


def test_recorder_unknown_module_releases_lock(tiny) -> None:
    with pytest.raises(LayerError), ActivationRecorder(tiny.module, ["nope"], lock=tiny.lock):
        pass
    assert hook_count(tiny.module) == 0
    assert tiny.lock.acquire(blocking=False)
    tiny.lock.release()


def test_recorder_holds_the_lock_during_forward(tiny, image) -> None:
    holder: list[bool] = []

    def probe(*_args: object) -> None:
        result: list[bool] = []
        t = threading.Thread(target=lambda: result.append(tiny.lock.acquire(blocking=False)))
        t.start()
        t.join()
        holder.append(result[0])

    handle = tiny.module.conv2.register_forward_hook(probe)
    try:
        extract(tiny, image, ["conv1"])
    finally:
        handle.remove()
    assert holder and not any(holder), "another thread must not get the lock while hooks are registered"


def test_a_tap_can_keep_a_summary_taken_as_the_pass_runs(resnet18, image) -> None:
    """``reduce`` runs in the hook, before the in-place ReLU after bn1 changes its output; only the summary is
    kept (not the output), and the rest of the network gets the output as it was."""
    x = resnet18.preprocess(image)
    expected = torch.from_numpy(reference_calls(resnet18.module, "layer1.0.bn1", x)[0]).mean(dim=0)
    tap = Tap("layer1.0.bn1", clone=False, reduce=lambda out: out.mean(dim=1))
    with ActivationRecorder(resnet18.module, taps=[tap]) as recorder, torch.no_grad():
        logits = recorder.run(x)
    kept = recorder.outputs["layer1.0.bn1"]
    assert kept.shape == (1, 56, 56) and kept.min() < 0
    torch.testing.assert_close(kept[0], expected)
    with torch.no_grad():
        torch.testing.assert_close(logits, resnet18.module(x))
    assert hook_count(resnet18.module) == 0


def test_list_layers_shapes_and_kinds(resnet18) -> None:
    layers = list_layers(resnet18)
    by_name = {info.name: info for info in layers}
    assert by_name["conv1"].shape == (64, 112, 112) and by_name["conv1"].spatial
    assert by_name["layer2.0.conv1"].label == "layer2.0.conv1 · Conv2d · 128×28×28"
    assert by_name["fc"].shape == (1000,) and not by_name["fc"].spatial
    assert by_name["conv1"].params == 64 * 3 * 7 * 7
    assert by_name["layer1.0.bn1"].overwritten and not by_name["layer1.0.conv1"].overwritten
    names = [info.name for info in layers]
    assert names.index("layer1.0.relu") < names.index("layer1.0.conv2") < names.index("layer1.0.relu#2")
    assert len(names) == len(set(names))
    assert hook_count(resnet18.module) == 0


def test_default_layer_is_mid_level_and_spatial(resnet18, tiny) -> None:
    name = default_layer(resnet18)
    assert name.startswith("layer2") and layer_info(resnet18, name).spatial
    assert layer_info(tiny, default_layer(tiny)).spatial


@pytest.mark.parametrize(
    ("name", "needle"),
    [("layer5", "list_layers"), ("fc", "feature maps"), ("layer1.0.relu#3", "runs 2 time"), ("avgpool#2", "")],
)
def test_layer_errors_say_what_to_do(resnet18, name, needle) -> None:
    with pytest.raises(LayerError) as error:
        layer_info(resnet18, name)
    assert needle in str(error.value)
    assert "list_layers" in str(error.value)


class _ChannelsLast(torch.nn.Module):
    """Conv -> (N, H, W, C) LayerNorm -> back, the way ConvNeXt and Swin blocks are written."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.norm = torch.nn.LayerNorm(channels)
        self.head = torch.nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x).permute(0, 2, 3, 1))
        return self.head(y.mean(dim=(1, 2)))


@pytest.mark.parametrize("channels", [8, 16])  # 16 = the input's side: the shape alone cannot tell
def test_channels_last_outputs_are_read_as_channels(channels, make_image) -> None:
    from torchvision import transforms as T

    from featviz_core.models import LoadedModel, view_transform

    torch.manual_seed(0)
    net = _ChannelsLast(channels).eval()
    model = LoadedModel(
        module=net, name="nhwc", key=f"test:nhwc:{channels}", categories=None, input_channels=3,
        input_size=(16, 16), transform=T.Compose([T.Resize(16), T.CenterCrop(16), T.ToTensor()]),
        view=view_transform(16, 16), source="test", provenance="channels-last test network",
    )
    info = layer_info(model, "norm")
    assert info.channels_last and info.shape == (channels, 16, 16)
    assert not layer_info(model, "conv").channels_last
    picture = make_image(3)
    maps = extract(model, picture, ["norm"]).activations["norm"]
    expected = reference_calls(net, "norm", model.preprocess(picture))[0]  # (H, W, C)
    np.testing.assert_array_equal(maps, np.transpose(expected, (2, 0, 1)))
    assert maps.flags.c_contiguous and not maps.flags.writeable


class _ChannelsLastNeedsItsSize(_ChannelsLast):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 128:
            raise RuntimeError("this network needs 128 px or more")
        return super().forward(x)


@pytest.mark.parametrize("net_class", [_ChannelsLast, _ChannelsLastNeedsItsSize])
def test_an_ambiguous_layout_is_settled_by_the_cheapest_second_size_that_runs(net_class, monkeypatch) -> None:
    from torchvision import transforms as T

    from featviz_core.layers import discovery
    from featviz_core.models import LoadedModel, view_transform

    torch.manual_seed(0)
    net = net_class(128).eval()  # 128 channels on a 128 px input: the shape alone cannot tell
    model = LoadedModel(
        module=net, name="nhwc", key=f"test:nhwc-big:{net_class.__name__}", categories=None, input_channels=3,
        input_size=(128, 128), transform=T.Compose([T.Resize(128), T.CenterCrop(128), T.ToTensor()]),
        view=view_transform(128, 128), source="test", provenance="channels-last test network",
    )
    sizes: list[tuple[int, int]] = []
    trace = discovery._trace

    def traced(m: LoadedModel, size: tuple[int, int]) -> object:
        sizes.append(tuple(size))
        return trace(m, size)

    monkeypatch.setattr(discovery, "_trace", traced)
    info = layer_info(model, "norm")
    assert info.channels_last and info.shape == (128, 128, 128)
    assert not layer_info(model, "conv").channels_last
    half_runs = net_class is _ChannelsLast
    assert sizes == ([(128, 128), (64, 64)] if half_runs else [(128, 128), (64, 64), (160, 160)])
    assert hook_count(net) == 0


def test_convnext_block_internals_have_their_channels_first() -> None:
    from featviz_core import load_torchvision

    model = load_torchvision("convnext_tiny", weights=None)
    layers = {info.name: info for info in list_layers(model)}
    assert layers["features.1.0.block.2"].shape == (96, 56, 56)  # LayerNorm on (N, H, W, C)
    assert layers["features.1.0.block.3"].shape == (384, 56, 56)  # the MLP's first Linear
    assert layers["features.1.0.block.0"].shape == (96, 56, 56) and not layers["features.1.0.block.0"].channels_last
