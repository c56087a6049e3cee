"""Convolution filters: the list in forward order, exact copies, honest RGB scaling, channel-to-filter links."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import make_tiny
from torch import nn

from featviz_core import FeatvizError, LayerError, list_layers
from featviz_core.layers import hook_count
from featviz_core.layers.filters import (
    ConvInfo,
    FilterWeights,
    conv_for_layer,
    conv_layers,
    filter_weights,
    reduce_inputs,
    rgb_tiles,
)

# ---------------------------------------------------------------------------------------------------
# conv_layers


def test_conv_layers_tiny(tiny) -> None:
    convs = conv_layers(tiny)
    assert [c.name for c in convs] == ["conv1", "conv2"]
    first, second = convs
    assert first == ConvInfo("conv1", 3, 6, (3, 3), 1, True, (1, 1), True)
    assert second.in_channels == 6 and second.out_channels == 6 and not second.is_first
    assert first.label == "conv1 · 6 filters of 3×3×3"


def test_conv_layers_resnet18_order_and_first(resnet18) -> None:
    convs = conv_layers(resnet18)
    names = [c.name for c in convs]
    assert len(names) == 20 == len(set(names))
    assert names[0] == "conv1" and convs[0].is_first and sum(c.is_first for c in convs) == 1
    assert convs[0].kernel_size == (7, 7) and convs[0].stride == (2, 2) and convs[0].in_channels == 3
    assert names[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]
    assert (
        names.index("layer2.0.conv2") < names.index("layer2.0.downsample.0") < names.index("layer2.1.conv1")
    )
    # the order is the forward order of list_layers
    order = [i.module_name for i in list_layers(resnet18)]
    assert names == sorted(names, key=order.index)
    expected = [n for n, m in resnet18.module.named_modules() if isinstance(m, nn.Conv2d)]
    assert sorted(names) == sorted(expected)


def test_conv_layers_reused_and_unused_convs() -> None:
    """A convolution called twice is listed once, at its first call; one that never runs comes last."""

    class Reuse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = nn.Conv2d(3, 3, 1)
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.shared = nn.Conv2d(4, 4, 3, padding=1, groups=2)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.shared(self.shared(self.stem(x)))
            return self.fc(x.mean((2, 3)))

    model = dataclasses.replace(make_tiny(), module=Reuse().eval(), key="test:reuse")
    convs = conv_layers(model)
    assert [c.name for c in convs] == ["stem", "shared", "unused"]
    assert convs[0].is_first and convs[1].groups == 2
    weights = filter_weights(model, "shared#2")
    assert weights.layer == "shared" and weights.weights.shape == (4, 2, 3, 3) and weights.groups == 2
    assert not weights.is_rgb_input
    assert conv_for_layer(model, "shared#2") == "shared"


# ---------------------------------------------------------------------------------------------------
# filter_weights


def test_filter_weights_tiny_exact_copy(tiny) -> None:
    first = filter_weights(tiny, "conv1")
    assert isinstance(first, FilterWeights)
    assert first.weights.shape == (6, 3, 3, 3) and first.weights.dtype == np.float32
    np.testing.assert_array_equal(first.weights, tiny.module.conv1.weight.detach().numpy())
    np.testing.assert_array_equal(first.bias, tiny.module.conv1.bias.detach().numpy())
    assert first.is_rgb_input and first.layer == "conv1" and first.out_channels == 6
    assert first.kernel_size == (3, 3) and first.in_channels == 3 and first.groups == 1
    second = filter_weights(tiny, "conv2")
    assert second.weights.shape == (6, 6, 3, 3) and not second.is_rgb_input


def test_filter_weights_is_a_copy(tiny) -> None:
    weights = filter_weights(tiny, "conv1")
    assert not weights.weights.flags.writeable
    before = weights.weights.copy()
    with torch.no_grad():
        tiny.module.conv1.weight.add_(1.0)
    np.testing.assert_array_equal(weights.weights, before)
    assert hook_count(tiny.module) == 0


def test_filter_weights_resnet18(resnet18) -> None:
    first = filter_weights(resnet18, "conv1")
    assert first.weights.shape == (64, 3, 7, 7) and first.is_rgb_input and first.bias is None
    inner = filter_weights(resnet18, "layer2.0.downsample.0")
    assert inner.weights.shape == (128, 64, 1, 1) and not inner.is_rgb_input
    np.testing.assert_array_equal(
        inner.weights, resnet18.module.layer2[0].downsample[0].weight.detach().numpy()
    )


def test_grey_model_first_conv_is_not_rgb() -> None:
    grey = make_tiny(in_channels=1)
    weights = filter_weights(grey, "conv1")
    assert weights.weights.shape == (6, 1, 3, 3) and not weights.is_rgb_input
    with pytest.raises(FeatvizError, match="3 input channels"):
        rgb_tiles(weights)
    assert reduce_inputs(weights, 0).shape == (6, 3, 3)


@pytest.mark.parametrize(("name", "needle"), [("bn1", "BatchNorm2d, not a convolution"), ("fc", "Linear")])
def test_non_conv_layer_refused(tiny, name: str, needle: str) -> None:
    with pytest.raises(LayerError, match=needle) as info:
        filter_weights(tiny, name)
    assert "conv_layers(model)" in str(info.value)


def test_unknown_layer_refused(resnet18) -> None:
    for name in ("layer9.conv", "", "layer1.0.relu#2"):
        with pytest.raises(LayerError, match=r"conv_layers\(model\)"):
            filter_weights(resnet18, name)


# ---------------------------------------------------------------------------------------------------
# rgb_tiles


def test_rgb_tiles_symmetric_scale() -> None:
    w = np.zeros((2, 3, 2, 2), dtype=np.float32)
    w[0, 0, 0, 0] = 0.5  # max |w|: +s -> 255
    w[1, 2, 1, 1] = -0.5  # -s -> 0
    w[0, 1, 1, 0] = 0.25  # s/2 -> 191.25 -> 191
    w[1, 1, 0, 1] = -0.125  # -s/4 -> 95.625 -> 96
    tiles, scale = rgb_tiles(w)
    assert tiles.shape == (2, 2, 2, 3) and tiles.dtype == np.uint8
    assert scale == 0.5
    assert tiles[0, 0, 0, 0] == 255 and tiles[1, 1, 1, 2] == 0
    assert tiles[0, 1, 0, 1] == 191 and tiles[1, 0, 1, 1] == 96
    zeros = w == 0
    assert np.all(tiles[zeros.transpose(0, 2, 3, 1)] == 128), "0 is mid-grey, 127.5 rounded half up"


def test_rgb_tiles_one_scale_for_all_kernels() -> None:
    """A weak filter stays pale next to a strong one (no per-filter stretching)."""
    w = np.zeros((2, 3, 1, 1), dtype=np.float32)
    w[0, :, 0, 0] = [1.0, -1.0, 0.0]
    w[1, :, 0, 0] = [0.01, -0.01, 0.0]
    tiles, scale = rgb_tiles(w)
    assert scale == 1.0
    assert tiles[0, 0, 0].tolist() == [255, 0, 128]
    assert tiles[1, 0, 0].tolist() == [129, 126, 128]  # 128.775 -> 129, 126.225 -> 126


def test_rgb_tiles_rounding_is_consistent() -> None:
    """Values map through 127.5 + 127.5 v / s, rounded half up, so +v and -v sit symmetrically about 127.5."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 3, 5, 5)).astype(np.float32)
    tiles, scale = rgb_tiles(w)
    assert scale == pytest.approx(float(np.abs(w).max()))
    expected = np.floor(127.5 + 127.5 * w.astype(np.float64) / scale + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(tiles, expected.transpose(0, 2, 3, 1))
    flipped, flipped_scale = rgb_tiles(-w)
    assert flipped_scale == scale
    # floor(128 + t) + floor(128 - t) is 255, or 256 when t is a whole number: never lopsided
    assert set(np.unique(flipped.astype(int) + tiles.astype(int)).tolist()) <= {255, 256}
    assert tiles.min() == 0 or tiles.max() == 255


def test_rgb_tiles_of_real_first_convs(tiny, resnet18) -> None:
    for model, name in ((tiny, "conv1"), (resnet18, "conv1")):
        weights = filter_weights(model, name)
        tiles, scale = rgb_tiles(weights)
        o, _i, kh, kw = weights.weights.shape
        assert tiles.shape == (o, kh, kw, 3)
        assert scale == float(np.abs(weights.weights).max())
        assert tiles.min() == 0 or tiles.max() == 255
        np.testing.assert_array_equal(rgb_tiles(weights.weights)[0], tiles)


def test_rgb_tiles_all_zero_and_errors() -> None:
    tiles, scale = rgb_tiles(np.zeros((4, 3, 3, 3), np.float32))
    assert scale == 0.0 and np.all(tiles == 128)
    with pytest.raises(FeatvizError, match="3 input channels"):
        rgb_tiles(np.zeros((4, 6, 3, 3), np.float32))
    with pytest.raises(FeatvizError, match="4 dimensions"):
        rgb_tiles(np.zeros((3, 3, 3), np.float32))
    bad = np.zeros((1, 3, 1, 1), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(FeatvizError, match="NaN"):
        rgb_tiles(bad)


# ---------------------------------------------------------------------------------------------------
# reduce_inputs


def test_reduce_inputs_mean_and_channel(tiny) -> None:
    weights = filter_weights(tiny, "conv2")
    w = tiny.module.conv2.weight.detach().numpy()
    mean = reduce_inputs(weights)
    assert mean.shape == (6, 3, 3) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, w.mean(axis=1), rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(reduce_inputs(weights, "mean"), mean)
    for channel in (0, 5, np.int64(3)):
        one = reduce_inputs(weights, channel)
        assert one.shape == (6, 3, 3) and one.dtype == np.float32
        np.testing.assert_array_equal(one, w[:, int(channel)])
    np.testing.assert_array_equal(reduce_inputs(weights.weights, 2), w[:, 2])


def test_reduce_inputs_resnet18(resnet18) -> None:
    weights = filter_weights(resnet18, "layer1.0.conv1")
    assert reduce_inputs(weights).shape == (64, 3, 3)
    np.testing.assert_array_equal(reduce_inputs(weights, 63), weights.weights[:, 63])


@pytest.mark.parametrize("how", [6, -1, 100, "max", True, 1.5, None])
def test_reduce_inputs_bounds(tiny, how: object) -> None:
    weights = filter_weights(tiny, "conv2")
    with pytest.raises(FeatvizError, match="0 to 5"):
        reduce_inputs(weights, how)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# conv_for_layer


def test_conv_for_layer_resnet18(resnet18) -> None:
    assert conv_for_layer(resnet18, "layer1.0.bn1") == "layer1.0.conv1"
    assert conv_for_layer(resnet18, "layer1.0.relu") == "layer1.0.conv1"
    assert conv_for_layer(resnet18, "layer1.0.relu#2") == "layer1.0.conv2"
    assert conv_for_layer(resnet18, "layer1.0") == "layer1.0.conv2"
    assert conv_for_layer(resnet18, "layer4") == "layer4.1.conv2"
    assert conv_for_layer(resnet18, "layer2.0.conv1") == "layer2.0.conv1"
    assert conv_for_layer(resnet18, "maxpool") == "conv1"  # pooling keeps the channels
    assert conv_for_layer(resnet18, "layer2.0.downsample.1") == "layer2.0.downsample.0"
    assert conv_for_layer(resnet18, "fc") is None
    with pytest.raises(LayerError):
        conv_for_layer(resnet18, "layer9")


def test_conv_for_layer_channels_match_filters(resnet18) -> None:
    """Whatever it names has as many filters as the layer has channels, for every spatial layer."""
    convs = {c.name: c for c in conv_layers(resnet18)}
    for info in list_layers(resnet18):
        if info.spatial:
            name = conv_for_layer(resnet18, info.name)
            assert name is not None, info.name
            assert convs[name].out_channels == info.channels, info.name


def test_conv_for_layer_tiny(tiny) -> None:
    assert conv_for_layer(tiny, "bn1") == "conv1"
    assert conv_for_layer(tiny, "relu") == "conv1"
    assert conv_for_layer(tiny, "relu#2") == "conv2"
    assert conv_for_layer(tiny, "pool") is None  # a global pool (1×1) does not scale with the input: no map


def test_conv_for_layer_unknown_when_channels_come_from_a_concatenation(tiny) -> None:
    class Concat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(3, 4, 3, padding=1)
            self.merge = nn.Identity()
            self.gate = nn.Conv2d(8, 8, 1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.merge(torch.cat([self.a(x), self.b(x)], 1))  # 8 channels, made by two convolutions
            y = self.act(y * torch.sigmoid(self.gate(y.mean((2, 3), keepdim=True))))  # an SE-like gate
            return self.fc(y.mean((2, 3)))

    model = dataclasses.replace(tiny, module=Concat().eval(), key="test:concat")
    assert conv_for_layer(model, "merge") is None
    assert conv_for_layer(model, "act") is None  # the 1×1 gate is stepped over, then b has 4 channels
    assert conv_for_layer(model, "a") == "a"
