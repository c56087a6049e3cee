"""``python -m featviz_core.demo.train_volume``: train the 3-D demo model (TinyVGG3D) on generated volumes and
write ``tinyvgg3d.pt`` beside this file. About a minute on two CPU cores; deterministic for the seeds below."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .volume_net import VOLUME_CLASSES, VOLUME_MEAN, VOLUME_STD, TinyVGG3D
from .volume_shapes import volumes

__all__ = ["HELDOUT_SEED", "TRAIN_SEED", "accuracy", "train"]

TRAIN_SEED = 0
HELDOUT_SEED = 1
WEIGHTS = Path(__file__).resolve().parent / "tinyvgg3d.pt"


def _normalise(data: np.ndarray) -> torch.Tensor:
    """As the model's preprocessing feeds it: values windowed to 0..1 (the noise clipped), then mean/std."""
    return (torch.from_numpy(np.clip(data, 0.0, 1.0)) - VOLUME_MEAN) / VOLUME_STD


def accuracy(model: nn.Module, data: np.ndarray, labels: np.ndarray) -> float:
    """The share of ``data`` (n, 1, D, H, W) the model classifies right."""
    with torch.inference_mode():
        predicted = model.eval()(_normalise(data)).argmax(dim=1).numpy()
    return float((predicted == labels).mean())


def train(samples: int = 640, epochs: int = 5, batch: int = 32) -> tuple[TinyVGG3D, float]:
    """The trained model and its accuracy on 200 held-out volumes."""
    torch.manual_seed(TRAIN_SEED)
    data, labels = volumes(samples, seed=TRAIN_SEED)
    model = TinyVGG3D(len(VOLUME_CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = _normalise(data), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    for _epoch in range(epochs):
        model.train()
        order = torch.randperm(samples, generator=generator)
        for start in range(0, samples, batch):
            index = order[start:start + batch]
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    held_data, held_labels = volumes(200, seed=HELDOUT_SEED)
    return model.eval(), accuracy(model, held_data, held_labels)


def main() -> int:
    started = time.perf_counter()
    model, score = train()
    torch.save(model.state_dict(), WEIGHTS)
    print(f"held-out accuracy {score:.3f}; {time.perf_counter() - started:.0f} s; wrote {WEIGHTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
