"""featviz_core.visualize.param: the Fourier picture, the random moves, the model's own normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from featviz_core import FeatvizError
from featviz_core.demo import load_demo
from featviz_core.models import LoadedModel, view_transform
from featviz_core.visualize.param import (
    PAD,
    FourierImage,
    Robustness,
    apply_grid,
    input_map,
    robustness_grid,
    to_uint8,
)
from tests.conftest import TinyNet, make_tiny


def _model(transform: T.Compose, channels: int = 3, size: int = 16) -> LoadedModel:
    return LoadedModel(
        module=TinyNet(channels).eval(), name="tinynet", key="test:param", categories=None,
        input_channels=channels, input_size=(size, size), transform=transform, view=view_transform(size, size),
        source="test", provenance="test",
    )


# ---------------------------------------------------------------------------------------------------
# The model's normalisation


def test_input_map_recovers_normalize_of_every_model_kind(resnet18) -> None:
    cases = [
        (resnet18, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision: weights.transforms()
        (load_demo(), (0.5,) * 3, (0.29,) * 3),
        (make_tiny(), (0.5,) * 3, (0.25,) * 3),
        (make_tiny(in_channels=1), (0.5,), (0.25,)),  # a grey model: one picture channel
    ]
    for model, mean, std in cases:
        found = input_map(model)
        assert found.channels == len(mean) and found.is_diagonal, model.name
        np.testing.assert_allclose(found.matrix, np.diag(1 / np.array(std)), rtol=1e-5, err_msg=model.name)
        np.testing.assert_allclose(found.offset, -np.array(mean) / np.array(std), rtol=1e-5, atol=1e-6)
        pixels = torch.rand(2, len(mean), 5, 7, generator=torch.Generator().manual_seed(0))
        expected = T.Normalize(mean, std)(pixels)
        torch.testing.assert_close(found(pixels), expected, rtol=1e-5, atol=1e-5)


def test_input_map_of_a_colour_mixing_preprocessing() -> None:
    """A grey-converting preprocessing (RGB in, three equal channels out) is read as a full 3×3 matrix."""
    weights = torch.tensor([0.299, 0.587, 0.114])
    transform = T.Compose([T.ToTensor(), T.Lambda(lambda t: (weights[:, None, None] * t).sum(0).expand(3, -1, -1)),
                           T.Normalize((0.5,) * 3, (0.2,) * 3)])
    found = input_map(_model(transform))
    assert not found.is_diagonal
    np.testing.assert_allclose(found.matrix, np.tile(weights.numpy() / 0.2, (3, 1)), rtol=1e-4)
    pixels = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(found(pixels), transform.transforms[1](pixels[0]).sub(0.5).div(0.2)[None],
                               rtol=1e-4, atol=1e-5)


def test_input_map_refuses_a_preprocessing_that_is_not_affine() -> None:
    gamma = T.Compose([T.ToTensor(), T.Lambda(lambda t: t**2.2)])
    with pytest.raises(FeatvizError, match="not a plain rescaling"):
        input_map(_model(gamma))


# ---------------------------------------------------------------------------------------------------
# The random moves


def _lucid_steps(image: torch.Tensor, moves: Robustness) -> torch.Tensor:
    """lucid's order, written out: pad (grey) -> crop (jitter) -> scale and rotate about the centre in the
    same frame (grey outside) -> crop (jitter)."""
    padded = F.pad(image, [moves.pad] * 4, value=0.5)
    y, x = moves.shift1
    size = padded.shape[-1] - moves.jitter1
    frame = padded[:, :, y:y + size, x:x + size]
    theta = math.radians(moves.angle)
    c, s = math.cos(theta) / moves.scale, math.sin(theta) / moves.scale
    affine = torch.tensor([[[c, s, 0.0], [-s, c, 0.0]]], dtype=torch.float32)
    grid = F.affine_grid(affine.expand(frame.shape[0], 2, 3), list(frame.shape), align_corners=False)
    turned = F.grid_sample(frame - 0.5, grid, align_corners=False) + 0.5
    y, x = moves.shift2
    out = size - moves.jitter2
    return turned[:, :, y:y + out, x:x + out]


def test_moves_without_scale_or_rotation_copy_pixels_as_pad_and_crops() -> None:
    image = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    padded = F.pad(image, [PAD] * 4, value=0.5)
    for shift1, shift2 in [((0, 0), (0, 0)), ((7, 3), (1, 2)), ((2, 7), (3, 0))]:
        moves = Robustness(shift1=shift1, scale=1.0, angle=0.0, shift2=shift2)
        out = apply_grid(image, robustness_grid(moves, 20, torch.device("cpu")))
        size = moves.output_size(20)
        assert out.shape[-1] == size == 20 + 2 * PAD - 8 - 4
        y, x = shift1[0] + shift2[0], shift1[1] + shift2[1]
        crop = padded[:, :, y:y + size, x:x + size]
        torch.testing.assert_close(out, crop, rtol=0, atol=1e-5)  # the same pixels, up to float rounding


def test_one_resampling_equals_lucids_steps() -> None:
    image = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    image = F.avg_pool2d(F.pad(image, [1] * 4, mode="replicate"), 3, stride=1)  # smooth: interpolation agrees
    for moves in [Robustness((3, 5), 1.07, 8.0, (2, 1)), Robustness((6, 0), 0.92, -9.5, (0, 3))]:
        ours = apply_grid(image, robustness_grid(moves, 48, torch.device("cpu")))
        theirs = _lucid_steps(image, moves)
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)


def test_a_smaller_view_keeps_the_centre_of_the_moved_frame() -> None:
    image = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    image = F.avg_pool2d(F.pad(image, [1] * 4, mode="replicate"), 3, stride=1)  # smooth: interpolation agrees
    device = torch.device("cpu")
    for moves in [Robustness((3, 5), 1.07, 8.0, (2, 1)), Robustness((0, 7), 0.95, -4.0, (3, 0))]:
        whole = moves.output_size(48)
        margin = (whole - 48) // 2
        assert (whole, margin) == (60, 6)
        centre = (slice(None), slice(None), slice(margin, margin + 48), slice(margin, margin + 48))
        ours = apply_grid(image, robustness_grid(moves, 48, device, view=48))
        assert ours.shape == (1, 3, 48, 48)
        torch.testing.assert_close(ours, apply_grid(image, robustness_grid(moves, 48, device))[centre], rtol=0, atol=1e-6)
        torch.testing.assert_close(ours, _lucid_steps(image, moves)[centre], rtol=0, atol=5e-6)


def test_moves_are_drawn_in_range_and_repeat_for_a_seed() -> None:
    draws = [Robustness.draw(torch.Generator().manual_seed(5)) for _ in range(2)]
    assert draws[0] == draws[1]
    generator = torch.Generator().manual_seed(6)
    many = [Robustness.draw(generator) for _ in range(400)]
    assert {m.shift1[0] for m in many} == set(range(8)) and {m.shift2[1] for m in many} == set(range(4))
    scales, angles = [m.scale for m in many], [m.angle for m in many]
    assert 0.9 <= min(scales) < 0.92 and 1.08 < max(scales) <= 1.1
    assert -10 <= min(angles) < -9 and 9 < max(angles) <= 10


# ---------------------------------------------------------------------------------------------------
# The Fourier picture


def test_fourier_picture_is_seeded_bounded_and_low_frequency() -> None:
    def picture(seed: int, channels: int = 3) -> FourierImage:
        return FourierImage(2, channels, 64, torch.Generator().manual_seed(seed), torch.device("cpu"))

    a, b, c = picture(0), picture(0), picture(1)
    torch.testing.assert_close(a(), b(), rtol=0, atol=0)
    assert not torch.equal(a(), c())
    values = a()
    assert values.shape == (2, 3, 64, 64) and values.min() >= 0 and values.max() <= 1
    assert picture(0, channels=1)().shape == (2, 1, 64, 64)
    # 1/frequency scaling: the start has most of its energy in low frequencies (white noise would not)
    raw = a.raw().detach()[0, 0]
    power = torch.fft.rfft2(raw - raw.mean()).abs() ** 2
    fy = torch.fft.fftfreq(64)[:, None]
    fx = torch.fft.rfftfreq(64)[None, :]
    low = (fx**2 + fy**2).sqrt() < 0.1
    assert float(power[low].sum() / power.sum()) > 0.5, "white noise would put about 6 % there"
    # the gradient reaches the spectrum (what the optimizer changes)
    (grad,) = torch.autograd.grad(a().mean(), a.spectrum)
    assert float(grad.abs().sum()) > 0


def test_to_uint8_colour_and_grey() -> None:
    colour = to_uint8(torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2))
    assert colour.shape == (1, 2, 2, 3) and colour.dtype == np.uint8 and not colour.flags.writeable
    assert colour[0, 0, 0].tolist() == [0, 128, 255]
    grey = to_uint8(torch.full((2, 1, 3, 4), 0.25))
    assert grey.shape == (2, 3, 4) and int(grey[0, 0, 0]) == 64
