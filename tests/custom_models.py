"""Models of "a user's own code", for the ``--model package.module:factory`` source (tests only)."""

from __future__ import annotations

import torch
from torch import nn

from featviz_core import Preprocessing


class FaceDetector(nn.Module):
    """A small detection CNN: a heatmap head (faces, eyes) and a box head; no classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        )
        self.heatmap = nn.Conv2d(16, 2, 1)
        self.boxes = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return torch.sigmoid(self.heatmap(features)), self.boxes(features)


def build_detector() -> nn.Module:
    torch.manual_seed(0)
    return FaceDetector()


def build_with_preprocessing() -> tuple[nn.Module, Preprocessing]:
    return build_detector(), Preprocessing(input_size=(64, 96), normalization="0-1", categories=None)


def build_dict() -> dict:
    return {"model": build_detector(), "input_size": 48}


class GreyClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


def broken() -> nn.Module:
    raise RuntimeError("this factory is broken on purpose")


def not_a_model() -> str:
    return "hello"


NEEDS_BIG_INPUT = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 298 * 298, 2))


def build_vit() -> tuple[nn.Module, Preprocessing]:
    """A small timm vision transformer with seeded random weights (3 heads, 12 blocks, 14×14 patches)."""
    import timm

    torch.manual_seed(0)
    module = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5)
    return module, Preprocessing(input_size=(224, 224), normalization="imagenet",
                                 categories=["cat", "dog", "bird", "fish", "frog"])
