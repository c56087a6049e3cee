"""Extraction overhead on every model source: each source's LoadedModel, one layer (its default), against a
bare ``model.preprocess(image)`` + forward of the same module (target <= 1.05x). Seeded random weights, no
downloads: timm by name, a timm checkpoint and a torchvision safetensors file through load_checkpoint, a
model class through load_from_code, and the demo model. (ONNX files: the ``onnx`` section.)"""

from __future__ import annotations

import io
from typing import Any

import torch

from featviz_core import LoadedModel, default_layer, load_checkpoint, load_demo, load_from_code, load_timm

from .extraction import TARGET, bench_image, measure_model

__all__ = ["run"]


def _models() -> dict[str, LoadedModel]:
    import timm
    import torchvision
    from safetensors.torch import save

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(timm.create_model("convnext_nano", num_classes=5).state_dict(), buffer)
    return {
        "timm convnext_nano": load_timm("convnext_nano", pretrained=False),
        "timm efficientnet_b0": load_timm("efficientnet_b0", pretrained=False),
        "checkpoint (timm convnext_nano)": load_checkpoint(buffer.getvalue()),
        "safetensors (torchvision resnet18)": load_checkpoint(save(torchvision.models.resnet18().state_dict())),
        "code (tests.custom_models:build_detector)": load_from_code("tests.custom_models:build_detector"),
        "demo": load_demo(),
    }


def run(rounds: int = 30, warmup: int = 2) -> dict[str, Any]:
    image = bench_image()
    rows = []
    for source, model in _models().items():
        layer = default_layer(model)
        measured = measure_model(model, image, {"1 layer": [layer]}, rounds=rounds, warmup=warmup, fx=False)
        one = measured["sets"]["1 layer"]
        rows.append({
            "source": source, "model": model.name, "layer": layer, "bare_s": measured["preprocess_forward_s"],
            "extract_s": one["extract_s"], "extract_over_bare": one["extract_over_bare"], "pass": one["pass"],
        })
    return {"target": f"extract <= {TARGET}x (preprocess + forward)", "rounds": rounds, "sources": rows}
