"""Receptive fields: the analytic value of a known stack, every way of measuring it, patches padded at borders."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from featviz_core import find_exemplars
from featviz_core.layers import hook_count
from featviz_core.layers import receptive_field as rf_module
from featviz_core.layers.receptive_field import PAD_COLOUR, ReceptiveField, crop_patch, receptive_field
from featviz_core.models import LoadedModel, view_transform
from tests.data_builders import png_bytes


def wrap(net: nn.Module, size: int, key: str, *, grey: bool = False) -> LoadedModel:
    channels = 1 if grey else 3
    return LoadedModel(
        module=net.eval(), name=key, key=key, categories=None, input_channels=channels, input_size=(size, size),
        transform=T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor()]), view=view_transform(size, size),
        source="test", provenance="test stack",
    )


def stack(pool: type[nn.Module] = nn.MaxPool2d, seed: int = 0) -> nn.Module:
    """Two 3×3 convolutions (padding 1) and a 2×2 pool of stride 2: fields 3, 5, then 5 + (2 − 1) · 1 = 6."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         pool(2))


@pytest.mark.parametrize("gradients", [True, False], ids=["gradient", "perturbation"])
@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d])
def test_two_3x3_convs_and_a_stride_2_pool_have_the_analytic_field(gradients, pool) -> None:
    model = wrap(stack(pool), 16, f"stack-{pool.__name__}-{gradients}")
    model = dataclasses.replace(model, supports_gradients=gradients)
    expected = {"0": (3, 1.0, 0.5), "2": (5, 1.0, 0.5), "4": (6, 2.0, 1.0)}
    for layer, (size, stride, offset) in expected.items():
        field = receptive_field(model, layer)
        assert field.method == ("gradient" if gradients else "perturbation")
        assert field.size == (size, size) and field.stride == (stride, stride), layer
        assert field.offset == (offset, offset), layer
    # cell (y, x) of the pooled map sees input rows 2y−2 .. 2y+3
    assert receptive_field(model, "4").box(3, 5) == (4, 8, 10, 14)


def test_valid_convolutions_give_the_measured_stride_not_the_size_ratio() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.MaxPool2d(2))  # 20 -> 18 -> 16 -> 8
    field = receptive_field(wrap(net, 20, "valid"), "3")
    assert field.size == (6, 6) and field.stride == (2.0, 2.0)
    assert field.offset == (3.0, 3.0)  # cell 0 sees rows 0..5


def test_field_is_cached_per_model_and_layer_and_leaves_the_model_clean() -> None:
    model = wrap(stack(), 16, "cached")
    before = [p.requires_grad for p in model.module.parameters()]
    first = receptive_field(model, "2")
    assert receptive_field(model, "2") is first
    assert receptive_field(model, "4") is not first
    assert hook_count(model.module) == 0 and not model.module.training
    assert all(p.grad is None for p in model.module.parameters())
    assert [p.requires_grad for p in model.module.parameters()] == before


def test_a_model_that_cannot_be_probed_gets_an_estimate_that_says_so(monkeypatch) -> None:
    def fails(*_args, **_kwargs):
        raise RuntimeError("this model runs somewhere else")

    monkeypatch.setattr(rf_module, "_gradient_boxes", fails)
    monkeypatch.setattr(rf_module, "_perturbation_boxes", fails)
    field = receptive_field(wrap(stack(), 16, "estimate"), "4")
    assert field.method == "estimate" and field.note.startswith("Estimated, not measured")
    assert field.stride == (2.0, 2.0) and field.size == (6, 6)  # three times the stride


def test_a_field_larger_than_the_image_says_it_reaches_the_border() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(6) for m in (nn.Conv2d(3, 3, 5, padding=2), nn.ReLU())])
    field = receptive_field(wrap(net, 12, "deep"), "10")
    assert min(field.size) >= 12 and "border" in field.note  # at least the whole image


def test_patches_at_the_border_are_padded_not_shifted() -> None:
    pixels = np.arange(10 * 8 * 3, dtype=np.uint8).reshape(10, 8, 3)
    image = Image.fromarray(pixels, "RGB")
    patch = np.asarray(crop_patch(image, (-2, -3, 3, 2)))  # rows -2..2, columns -3..1
    assert patch.shape == (5, 5, 3)
    np.testing.assert_array_equal(patch[2:, 3:], pixels[0:3, 0:2])
    assert (patch[:2] == PAD_COLOUR).all() and (patch[:, :3] == PAD_COLOUR).all()
    inner = np.asarray(crop_patch(image, (4, 3, 7, 6)))
    np.testing.assert_array_equal(inner, pixels[4:7, 3:6])
    far = np.asarray(crop_patch(image, (8, 6, 13, 11)))  # bottom-right corner
    np.testing.assert_array_equal(far[:2, :2], pixels[8:10, 6:8])
    assert (far[2:] == PAD_COLOUR).all() and (far[:, 2:] == PAD_COLOUR).all()
    field = ReceptiveField(size=(5, 5), stride=(1.0, 1.0), offset=(0.5, 0.5), method="gradient", note="")
    assert field.box(0, 0) == (-2, -2, 3, 3)


def test_an_exemplar_peaking_in_the_corner_gets_a_padded_patch() -> None:
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(1.0)  # sums a 3×3 neighbourhood
    model = wrap(net, 12, "corner", grey=True)
    pixels = np.zeros((12, 12), np.uint8)
    pixels[0, 0] = 255  # the one bright pixel: the first peak is at map cell (0, 0)
    result = find_exemplars(model, "0", [("corner.png", png_bytes(Image.fromarray(pixels, "L")))], k=1,
                            num_workers=0)
    assert result.top(0)[0].position == (0, 0)
    patch = np.asarray(result.patch(0, 0))
    assert patch.shape == (3, 3, 3)
    assert (patch[0] == PAD_COLOUR).all() and (patch[:, 0] == PAD_COLOUR).all()
    assert (patch[1, 1] == 255).all(), "the bright pixel sits where it is, one cell in from the padding"
    assert (patch[1:, 1:].sum(axis=-1) == [[765, 0], [0, 0]]).all()
