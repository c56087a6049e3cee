"""Train the demo model: ``python -m featviz_core.demo.train`` (about 2 minutes on 2 CPU cores).

Generates the training set with :func:`featviz_core.demo.shapes.dataset` (seed 0), trains
:class:`~featviz_core.demo.net.TinyVGG` with a fixed torch seed on 2 threads, writes the float32 state dict to
``featviz_core/demo/tinyvgg.pt`` and prints the accuracy on a held-out generated set (seed 1). Results are
reproducible on the same machine and library versions; other CPUs may differ in the last digits.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .net import MEAN, STD, TinyVGG, parameter_count
from .shapes import CLASSES, dataset

__all__ = ["HELDOUT_SEED", "TRAIN_SEED", "accuracy", "augment", "normalize", "train"]

TRAIN_SEED = 0
HELDOUT_SEED = 1
WEIGHTS_PATH = Path(__file__).resolve().parent / "tinyvgg.pt"


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> what the model takes (the same as the loaded model's preprocessing)."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Label-preserving augmentation of a batch in [0, 1].

    Flips and transposes (every class keeps its name under them), brightness/contrast jitter and occasional
    greyscale (grey photos are fed in too). Colours, positions, sizes and noise already vary in the generator.
    """
    n = images.shape[0]

    def chance(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) < p).view(n, 1, 1, 1)

    x = torch.where(chance(0.5), images.flip(3), images)
    x = torch.where(chance(0.5), x.flip(2), x)
    x = torch.where(chance(0.5), x.transpose(2, 3), x)
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    x = torch.where(chance(0.1), grey, x)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=generator)
    brightness = torch.empty(n, 1, 1, 1).uniform_(-0.15, 0.15, generator=generator)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp(0.0, 1.0)


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` on images in [0, 1]."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        logits = model(normalize(images[i : i + batch]))
        correct += int((logits.argmax(1) == labels[i : i + batch]).sum())
    return correct / len(images)


def train(
    n_per_class: int = 1500,
    epochs: int = 7,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    first_layer_scale: float = 0.3,
    log: bool = True,
    heldout: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TinyVGG:
    """Train a fresh TinyVGG on generated shapes and return it (in eval mode, contiguous float32)."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    images, labels = dataset(n_per_class, seed=TRAIN_SEED)
    if log:
        print(f"generated {len(images)} training images in {time.perf_counter() - started:.1f} s")
    model = TinyVGG(len(CLASSES))
    with torch.no_grad():
        # A small random start for the first layer, so its filters end up shaped by the images (smooth edge
        # and colour detectors) rather than by the initial noise, which a few epochs would barely move.
        model.block1.conv1.weight.mul_(first_layer_scale)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    batch_size = min(batch_size, len(images))
    steps_per_epoch = len(images) // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            x = normalize(augment(images[idx], generator)).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        if log:
            elapsed = time.perf_counter() - started
            score = f", held-out accuracy {accuracy(model, *heldout):.2%}" if heldout is not None else ""
            print(f"epoch {epoch + 1}/{epochs}: loss {total / steps_per_epoch:.4f}{score} ({elapsed:.0f} s)")
    model = model.to(memory_format=torch.contiguous_format).eval()
    return model


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Train the featviz demo model (TinyVGG on generated shapes)."
    )
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH, help="where to write the state dict")
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--n-per-class", type=int, default=1500, help="training images per class")
    parser.add_argument("--heldout-per-class", type=int, default=200)
    args = parser.parse_args(argv)

    torch.set_num_threads(2)
    started = time.perf_counter()
    model = train(n_per_class=args.n_per_class, epochs=args.epochs)
    seconds = time.perf_counter() - started
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Saved through a buffer: torch.save names the archive after the file, and the bytes (hence the model's
    # cache key, a hash of the file) should not depend on where the file was first written.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    args.out.write_bytes(buffer.getvalue())

    images, labels = dataset(args.heldout_per_class, seed=HELDOUT_SEED)
    acc = accuracy(model, images, labels)
    print(f"parameters: {parameter_count(model)}")
    print(f"training time: {seconds:.0f} s ({torch.get_num_threads()} threads)")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    print(f"held-out accuracy (seed {HELDOUT_SEED}, {len(images)} images): {acc:.2%}")
    with torch.inference_mode():
        predicted = model(normalize(images)).argmax(1)
    for k, name in enumerate(CLASSES):
        mask = labels == k
        print(f"  {name:>12}: {float((predicted[mask] == k).float().mean()):.2%}")


if __name__ == "__main__":
    _main()
