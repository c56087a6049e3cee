"""Extraction on a CUDA GPU against a bare CUDA forward pass of the same model (target <= 1.05x).

Both sides synchronize before the clock stops (GPU work is asynchronous); extract's time includes bringing
the layer's maps back to the CPU, which a bare pass does not do, so the ratio is an upper bound. Skipped,
with the reason, where no CUDA GPU exists (the figures in the README then say "not measured yet").
"""

from __future__ import annotations

from typing import Any

import torch

from featviz_core import default_layer, extract, load_torchvision
from featviz_core.models import describe_device, place

from .common import interleaved, ratio, summary
from .extraction import TARGET, bench_image

__all__ = ["run"]


def run(rounds: int = 30, warmup: int = 5, models: tuple[str, ...] = ("resnet18", "resnet50")) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA GPU on this machine"}
    device = torch.device("cuda")
    image = bench_image()
    results = []
    for name in models:
        model = place(load_torchvision(name, weights=None), device).model
        layer = default_layer(model)
        tensor = model.preprocess(image).to(device)

        def bare(model=model, tensor=tensor) -> None:  # type: ignore[no-untyped-def]
            with torch.inference_mode():
                model.module(tensor)
            torch.cuda.synchronize()

        def pre_bare(model=model) -> None:  # type: ignore[no-untyped-def]
            t = model.preprocess(image).to(device)
            with torch.inference_mode():
                model.module(t)
            torch.cuda.synchronize()

        def ours(model=model, layer=layer) -> None:  # type: ignore[no-untyped-def]
            extract(model, image, [layer])
            torch.cuda.synchronize()

        times = interleaved({"forward": bare, "preprocess+forward": pre_bare, "extract": ours},
                            rounds=rounds, warmup=warmup)
        stats = {k: summary(v) for k, v in times.items()}
        over = ratio(stats["extract"]["median"], stats["preprocess+forward"]["median"])
        results.append({
            "model": name, "layer": layer, "forward_s": stats["forward"]["median"],
            "preprocess_forward_s": stats["preprocess+forward"]["median"], "extract_s": stats["extract"]["median"],
            "extract_over_bare": over, "pass": over is not None and over <= TARGET, "rounds": rounds,
        })
    return {"device": describe_device(device), "target": f"extract <= {TARGET}x preprocess + forward",
            "models": results}
