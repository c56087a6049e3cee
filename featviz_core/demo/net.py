"""TinyVGG: the architecture of the bundled demo model.

In the spirit of CNN Explainer's TinyVGG: three blocks of two convolutions (each followed by its own ReLU)
and a 2x2 max-pool, then a global average pool and one linear layer. Every layer is a named submodule, so
the layer list reads ``block1.conv1``, ``block1.relu1``, ..., ``pool``, ``classifier``. The ReLUs are not
in-place and never reused, so each has its own feature map.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CLASSES", "INPUT_SIZE", "MEAN", "STD", "TinyVGG", "parameter_count"]

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "stripes", "checkerboard")
"""The demo classes, in the order of the model's outputs (drawn by :mod:`featviz_core.demo.shapes`)."""

INPUT_SIZE = 64
"""Height and width of the input, in pixels."""

# Per-channel statistics of the generated training images (featviz_core.demo.shapes.dataset(1000, seed=0)),
# rounded. Training and preprocessing both use these constants, so retraining keeps the preprocessing.
MEAN = (0.5, 0.5, 0.5)
STD = (0.29, 0.29, 0.29)


class _Block(nn.Sequential):
    """conv1 - relu1 - conv2 - relu2 - pool, with those names."""

    def __init__(self, in_channels: int, out_channels: int, first_kernel: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, first_kernel, padding=first_kernel // 2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)


class TinyVGG(nn.Module):
    """A small VGG-style classifier for 3x64x64 images."""

    def __init__(self, num_classes: int, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.block1 = _Block(3, w1, first_kernel=5)
        self.block2 = _Block(w1, w2)
        self.block3 = _Block(w2, w3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(w3, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He initialisation, as torchvision's VGG: trains fast without BN
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.classifier(self.flatten(self.pool(x)))


def parameter_count(module: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
