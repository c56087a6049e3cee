"""Feature visualization on every model source: the model's own normalisation is read from its preprocessing
whatever built it (torchvision and the demo are in test_param.py / test_visualize.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featviz_core import list_layers, load_from_code, load_onnx, load_timm
from featviz_core.layers import hook_count
from featviz_core.visualize import visualize
from featviz_core.visualize.optimize import VisualizeError
from featviz_core.visualize.param import input_map
from tests.onnx_builders import export
from tests.test_cam import Snapshot

IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _rises(model, layer: str, channel: int = 0, size: int = 48, steps: int = 32) -> np.ndarray:  # type: ignore[no-untyped-def]
    snapshot = Snapshot(model)
    result = visualize(model, layer, channel, size=size, steps=steps, seed=0)
    snapshot.check()
    assert result.activation[-6:].mean() > result.activation[:3].mean(), layer
    return result.images


def test_timm_model() -> None:
    model = load_timm("resnet18", pretrained=False)
    found = input_map(model)
    mean, std = IMAGENET  # timm's resnet18 config
    np.testing.assert_allclose(np.diag(found.matrix), 1 / std, rtol=1e-4)
    np.testing.assert_allclose(found.offset, -mean / std, rtol=1e-4)
    images = _rises(model, "layer1.0.bn1", channel=3)
    assert images.shape == (1, 48, 48, 3)


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_onnx_file_converted_to_pytorch() -> None:
    model = load_onnx(export(_Small(), size=64, dynamic=True), "small.onnx", input_size=(64, 64),
                      normalization="-1-1")
    if not model.supports_gradients:  # pragma: no cover - the converter handles this graph today
        pytest.skip("this ONNX graph runs in onnxruntime only")
    found = input_map(model)
    np.testing.assert_allclose(np.diag(found.matrix), [2.0] * 3, rtol=1e-5)
    np.testing.assert_allclose(found.offset, [-1.0] * 3, atol=1e-6)
    convs = [info.name for info in list_layers(model) if info.spatial]
    _rises(model, convs[-1], channel=1)


def test_onnx_file_run_by_onnxruntime_is_refused(tiny) -> None:
    import dataclasses

    runtime = dataclasses.replace(tiny, supports_gradients=False, name="model.onnx")
    with pytest.raises(VisualizeError, match="runs outside PyTorch's autograd"):
        visualize(runtime, "conv1", 0)
    assert hook_count(tiny.module) == 0


def test_models_from_code_colour_and_grey() -> None:
    detector = load_from_code("tests.custom_models:build_with_preprocessing")  # 0-1, tuple outputs
    found = input_map(detector)
    np.testing.assert_allclose(found.matrix, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(found.offset, 0, atol=1e-6)
    _rises(detector, "backbone.5", channel=2)
    grey = load_from_code("tests.custom_models:GreyClassifier", input_size=32, normalization="0-255")
    assert grey.input_channels == 1
    found = input_map(grey)
    np.testing.assert_allclose(found.matrix, [[255.0]], rtol=1e-5)
    assert _rises(grey, "conv", channel=1).shape == (1, 48, 48)
