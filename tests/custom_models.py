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


class LeNet5(nn.Module):
    """LeCun's LeNet-5 on 32×32 grey images: its first Linear layer takes 16×5×5 features, so 32×32 only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                        nn.Linear(84, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class ONet(nn.Module):
    """Like MTCNN's output network: 48×48 faces, ceil-mode pooling, a 128×3×3 flatten into one Linear layer,
    and three heads (face or not, box, five landmarks)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3), nn.PReLU(32), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(32, 64, 3), nn.PReLU(64), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(64, 64, 3), nn.PReLU(64), nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(64, 128, 2), nn.PReLU(128),
        )
        self.dense = nn.Sequential(nn.Linear(128 * 3 * 3, 256), nn.PReLU(256))
        self.face, self.box, self.landmarks = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.dense(self.body(x).permute(0, 3, 2, 1).flatten(1))
        return torch.softmax(self.face(hidden), dim=1), self.box(hidden), self.landmarks(hidden)


NOTHING_FITS = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(7, 2))
"""4 channels times any map size is never 7 features: no input size fits."""


CT_CLASSES = ("no finding", "finding")
"""The two outputs of :func:`build_densenet3d` (its weights are random: the names only label them)."""


def build_densenet3d() -> tuple[nn.Module, Preprocessing]:
    """MONAI's 3-D DenseNet121 (one grey input channel, two classes) with seeded random weights, fed 64³
    volumes scaled to 0..1: the kind of network a CT classifier is, small enough for a browser test on a CPU."""
    from monai.networks.nets import DenseNet121

    torch.manual_seed(3)
    module = DenseNet121(spatial_dims=3, in_channels=1, out_channels=len(CT_CLASSES))
    return module, Preprocessing(input_size=(64, 64, 64), normalization="0-1", categories=list(CT_CLASSES))
