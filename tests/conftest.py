"""Shared fixtures: tiny seeded models and images, built in memory."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from featviz_core.models import LoadedModel, load_torchvision, view_transform


class TinyNet(nn.Module):
    """A small CNN with the traps of real ones: an in-place ReLU reused twice, and a residual add."""

    def __init__(self, in_channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(x))
        y += x
        y = self.relu(y)
        return self.fc(torch.flatten(self.pool(y), 1))


def make_tiny(seed: int = 0, in_channels: int = 3, size: int = 16) -> LoadedModel:
    torch.manual_seed(seed)
    net = TinyNet(in_channels).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics so bn outputs have both signs
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    mean, std = [0.5] * in_channels, [0.25] * in_channels
    return LoadedModel(
        module=net,
        name="tinynet",
        key=f"test:tinynet:{seed}:{in_channels}",
        categories=["a", "b", "c", "d"],
        input_channels=in_channels,
        input_size=(size, size),
        transform=T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)]),
        view=view_transform(size, size),
        source="test",
        provenance="tiny seeded test network",
    )


@pytest.fixture
def tiny() -> LoadedModel:
    return make_tiny()


@pytest.fixture(scope="session")
def resnet18() -> LoadedModel:
    return load_torchvision("resnet18", weights=None)


def random_image(seed: int = 0, size: tuple[int, int] = (96, 80), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


@pytest.fixture
def image() -> Image.Image:
    return random_image(0)


@pytest.fixture
def make_image() -> Callable[..., Image.Image]:
    return random_image


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()
