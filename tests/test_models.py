"""load_torchvision: exact preprocessing, the weights cache, downloads with progress, offline failure."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from featviz_core import ModelLoadError, classification_models, load_torchvision
from featviz_core.models.sources import download as models_module
from featviz_core.models.sources import weights_are_cached, weights_cache_path


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    calls: list[str] = []

    def refuse(url: str, timeout: float):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(models_module, "_open_url", refuse)
    return calls


def test_every_classification_architecture_is_offered() -> None:
    names = classification_models()
    for expected in ("resnet18", "resnet50", "vgg16", "densenet121", "efficientnet_b0", "inception_v3",
                     "mobilenet_v3_large", "convnext_tiny", "regnet_y_400mf", "alexnet"):
        assert expected in names
    assert "fcn_resnet50" not in names and "fasterrcnn_resnet50_fpn" not in names


def test_preprocessing_is_exactly_the_weights_transforms(resnet18, image) -> None:
    expected = torchvision.models.ResNet18_Weights.DEFAULT.transforms()(image).unsqueeze(0)
    assert torch.equal(resnet18.preprocess(image), expected)
    assert resnet18.input_size == (224, 224)
    assert resnet18.model_view(image).size == (224, 224)


def test_model_view_matches_the_tensor_geometry(resnet18, image) -> None:
    view = resnet18.model_view(image)
    tensor = resnet18.preprocess(image)[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    restored = (tensor * std + mean).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert abs(restored.astype(int) - np.asarray(view).astype(int)).max() <= 1


def test_inception_input_size() -> None:
    assert load_torchvision("inception_v3", weights=None).input_size == (299, 299)


def test_pretrained_weights_load_from_the_cache_without_network(torch_home, no_network, image) -> None:
    torch.manual_seed(3)
    reference = torchvision.models.resnet18()
    path = weights_cache_path("resnet18")
    assert path.startswith(str(torch_home)) and os.path.basename(path) == "resnet18-f37072fd.pth"
    assert not weights_are_cached("resnet18")
    os.makedirs(os.path.dirname(path))
    torch.save(reference.state_dict(), path)
    assert weights_are_cached("resnet18")
    model = load_torchvision("resnet18")
    assert no_network == []
    for key, value in reference.state_dict().items():
        assert torch.equal(model.module.state_dict()[key], value)
    assert model.key == "torchvision:resnet18:IMAGENET1K_V1" and model.weights == "IMAGENET1K_V1"
    assert model.categories is not None and len(model.categories) == 1000 and model.categories[281] == "tabby"
    assert not model.module.training


def test_no_cache_and_no_network_says_what_to_do(torch_home, no_network) -> None:
    with pytest.raises(ModelLoadError) as error:
        load_torchvision("resnet18")
    message = str(error.value)
    assert "resnet18" in message and "demo model" in message and "checkpoint" in message
    assert no_network, "the download was attempted"
    assert not os.listdir(os.path.join(torch_home, "hub", "checkpoints")), "no partial file left behind"


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_download_reports_progress_and_checks_the_hash(tmp_path, monkeypatch) -> None:
    payload = os.urandom(300_000)
    digest = hashlib.sha256(payload).hexdigest()[:8]
    monkeypatch.setattr(models_module, "_open_url", lambda url, timeout: FakeResponse(payload))
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "checkpoints" / f"net-{digest}.pth"
    models_module.download("https://example.invalid/net.pth", str(dest), lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == payload
    assert seen[0] == (0, len(payload)) and seen[-1] == (len(payload), len(payload))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 3

    damaged = tmp_path / "checkpoints" / "net-00000000.pth"
    with pytest.raises(ModelLoadError, match="damaged"):
        models_module.download("https://example.invalid/net.pth", str(damaged), None)
    assert not damaged.exists()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [dest.name]


def test_damaged_cache_file_is_reported(torch_home, no_network) -> None:
    path = weights_cache_path("resnet18")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="Delete that file"):
        load_torchvision("resnet18")


@pytest.mark.parametrize(("name", "weights", "needle"), [
    ("resnet19", "DEFAULT", "resnet18"),
    ("resnet18", "IMAGENET9K", "IMAGENET1K_V1"),
])
def test_bad_names_are_explained(name, weights, needle) -> None:
    with pytest.raises(ModelLoadError, match=needle):
        load_torchvision(name, weights=weights)


def test_random_weights_are_seeded_and_labelled() -> None:
    a = load_torchvision("resnet18", weights=None)
    b = load_torchvision("resnet18", weights=None)
    assert torch.equal(a.module.conv1.weight, b.module.conv1.weight)
    assert a.key == "torchvision:resnet18:random" and "random" in a.provenance and a.weights is None


@pytest.mark.parametrize(("error", "words"), [
    (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "could not reach"),
    (urllib.error.URLError(TimeoutError("timed out")), "took too long"),
    (urllib.error.HTTPError("https://x", 503, "Service Unavailable", {}, None), "503"),
])
def test_download_failures_are_told_in_plain_words(torch_home, monkeypatch, error, words) -> None:
    def fail(url: str, timeout: float):
        raise error

    monkeypatch.setattr(models_module, "_open_url", fail)
    with pytest.raises(ModelLoadError) as raised:
        load_torchvision("resnet18")
    assert words in str(raised.value) and "Errno" not in str(raised.value)
