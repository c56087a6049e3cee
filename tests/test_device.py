"""featviz_core.models.device: CUDA, then MPS, then CPU; FEATVIZ_DEVICE overrides; safe fallback to the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featviz_core import FeatvizError, extract, list_layers, load_torchvision
from featviz_core.models import choose_device, describe_device, place
from featviz_core.models import device as device_module

CUDA = torch.cuda.is_available()


def test_override_and_refusals(monkeypatch) -> None:
    monkeypatch.setenv("FEATVIZ_DEVICE", "cpu")
    assert choose_device() == torch.device("cpu")
    monkeypatch.setenv("FEATVIZ_DEVICE", "tpu")
    with pytest.raises(FeatvizError, match="use cpu, cuda or mps"):
        choose_device()
    if not CUDA:
        with pytest.raises(FeatvizError, match="has none"):
            choose_device("cuda")
    monkeypatch.delenv("FEATVIZ_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    assert choose_device() == torch.device("cpu")
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert choose_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device() == torch.device("cuda"), "CUDA first"
    assert describe_device(torch.device("cpu")) == "CPU" and "MPS" in describe_device(torch.device("mps"))


def test_cpu_placement_changes_nothing(tiny) -> None:
    placed = place(tiny, "cpu")
    assert placed.model is tiny and placed.fallback is None


@pytest.mark.parametrize(("error", "why"), [("CUDA out of memory. Tried to allocate 2.00 GiB", "does not fit"),
                                            ("aten::foo is not implemented for MPS", "does not support")])
def test_a_model_that_cannot_run_there_stays_on_the_cpu(tiny, image, monkeypatch, error, why) -> None:
    moved = device_module._moved

    def failing(model, device):  # type: ignore[no-untyped-def]
        if device.type != "cpu":
            raise RuntimeError(error)
        return moved(model, device)

    monkeypatch.setattr(device_module, "_moved", failing)
    placed = place(tiny, "mps")
    assert placed.device == torch.device("cpu") and placed.model.device == torch.device("cpu")
    assert placed.fallback is not None and why in placed.fallback and placed.fallback.endswith(".")
    layer = [i.name for i in list_layers(placed.model) if i.spatial][0]
    assert extract(placed.model, image, [layer]).activations[layer].shape[0] == 6


@pytest.mark.skipif(not CUDA, reason="no CUDA GPU on this machine: the device tests run where one exists")
def test_values_on_the_gpu_equal_the_cpu_within_float32_tolerance(image) -> None:
    from featviz_core import gradcam

    cpu = load_torchvision("resnet18", weights=None)
    gpu = place(load_torchvision("resnet18", weights=None), "cuda")
    assert gpu.fallback is None and gpu.model.device.type == "cuda" and gpu.model.key.endswith("@cuda")
    layers = ["layer1.0.bn1", "layer1.0.relu#2", "layer3.1.conv2", "layer4"]
    a, b = extract(cpu, image, layers), extract(gpu.model, image, layers)
    for name in layers:
        np.testing.assert_allclose(b.activations[name], a.activations[name], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.probabilities, a.probabilities, rtol=1e-4, atol=1e-6)
    ca, cb = gradcam(cpu, image, "layer4"), gradcam(gpu.model, image, "layer4")
    np.testing.assert_allclose(cb.cam, ca.cam, rtol=1e-3, atol=1e-4 * float(ca.cam.max()))
