"""TinyVGG3D: the bundled 3-D demo model, the volume counterpart of :mod:`featviz_core.demo.net`.

Three blocks of (Conv3d - ReLU - MaxPool3d) on a one-channel 32×32×32 volume, then a global average pool and one
linear layer over the classes of :mod:`featviz_core.demo.volume_shapes`. Every layer is a named submodule
(``block1.conv``, ``block1.relu``, ...), no ReLU is in-place, so each has its own feature maps (C, D, H, W).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VOLUME_CLASSES", "VOLUME_SIZE", "VOLUME_MEAN", "VOLUME_STD", "TinyVGG3D"]

VOLUME_CLASSES: tuple[str, ...] = ("sphere", "cube", "shell", "rod")
"""The 3-D demo classes, in the order of the model's outputs."""

VOLUME_SIZE = 32
"""Depth, height and width of the input, in voxels."""

VOLUME_MEAN = 0.05
VOLUME_STD = 0.2
"""Statistics of the generated training volumes (values 0..1), rounded; training and preprocessing share them."""


class _Block3d(nn.Sequential):
    """conv - relu - pool, with those names."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool3d(2)


class TinyVGG3D(nn.Module):
    """A small 3-D classifier for 1×32×32×32 volumes."""

    def __init__(self, num_classes: int = len(VOLUME_CLASSES), widths: tuple[int, int, int] = (6, 12, 24)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.block1 = _Block3d(1, w1)
        self.block2 = _Block3d(w1, w2)
        self.block3 = _Block3d(w2, w3)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(w3, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.classifier(self.flatten(self.pool(x)))
