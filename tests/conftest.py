"""Shared fixtures: tiny seeded models and images, built in memory."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms as T

from featviz_core.models import LoadedModel, view_transform
from featviz_core.models.sources import load_torchvision


class TinyNet(nn.Module):
    """A small CNN with the traps of real ones: an in-place ReLU reused twice, and a residual add."""

    def __init__(self, in_channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(x))
        y += x
        y = self.relu(y)
        return self.fc(torch.flatten(self.pool(y), 1))


def make_tiny(seed: int = 0, in_channels: int = 3, size: int = 16) -> LoadedModel:
    torch.manual_seed(seed)
    net = TinyNet(in_channels).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics so bn outputs have both signs
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    mean, std = [0.5] * in_channels, [0.25] * in_channels
    return LoadedModel(
        module=net,
        name="tinynet",
        key=f"test:tinynet:{seed}:{in_channels}",
        categories=["a", "b", "c", "d"],
        input_channels=in_channels,
        input_size=(size, size),
        transform=T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)]),
        view=view_transform(size, size),
        source="test",
        provenance="tiny seeded test network",
    )


@pytest.fixture
def tiny() -> LoadedModel:
    return make_tiny()


@pytest.fixture(scope="session")
def resnet18() -> LoadedModel:
    return load_torchvision("resnet18", weights=None)


def random_image(seed: int = 0, size: tuple[int, int] = (96, 80), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


@pytest.fixture
def image() -> Image.Image:
    return random_image(0)


@pytest.fixture
def make_image() -> Callable[..., Image.Image]:
    return random_image


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------
# The app, driven by Streamlit's AppTest (one in-process session per test)

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def place_resnet18_weights(torch_home: os.PathLike[str] | str, seed: int = 0) -> str:
    """A seeded random resnet18 state dict under torchvision's file name: the app treats it as the
    downloaded ImageNet weights, with no network."""
    path = os.path.join(torch_home, "hub", "checkpoints", "resnet18-f37072fd.pth")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        torch.manual_seed(seed)
        torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def imagenet_home(tmp_path_factory) -> str:
    home = str(tmp_path_factory.mktemp("torch_home_imagenet"))
    place_resnet18_weights(home)
    return home


@pytest.fixture
def make_app(monkeypatch, tmp_path):
    """``make_app(imagenet=False, query=None, page=None)`` -> an AppTest that has run once.

    Offline (FEATVIZ_OFFLINE=1) with an empty TORCH_HOME, so the first view is the demo model; with
    ``imagenet`` set to a TORCH_HOME holding resnet18 weights, the first view is resnet18. ``state`` presets
    session-state values (widget keys) before the first run.
    """
    from streamlit.testing.v1 import AppTest

    def make(imagenet: str | None = None, query: dict | None = None, page: str | None = None,
             run: bool = True, state: dict | None = None, offline: bool = True) -> AppTest:
        if offline:
            monkeypatch.setenv("FEATVIZ_OFFLINE", "1")
        else:
            monkeypatch.delenv("FEATVIZ_OFFLINE", raising=False)
        monkeypatch.setenv("TORCH_HOME", imagenet or str(tmp_path / "empty_torch_home"))
        at = AppTest.from_file(APP, default_timeout=180)
        for key, value in (query or {}).items():
            at.query_params[key] = value
        for key, value in (state or {}).items():
            at.session_state[key] = value
        if run:
            at.run()
            if page:
                at.switch_page(page).run()
        return at

    return make


def light_charts(at) -> list:  # type: ignore[no-untyped-def]
    """The charts an AppTest run drew with ``ui/light_chart.py``, in page order (not the element that only
    fetches their code)."""
    from ui.light_chart import COMPONENT, PREFETCH_KEY

    return [node for node in at._tree if node.type == "bidi_component" and node.proto.component_name == COMPONENT
            and node.key != PREFETCH_KEY]


def plotly_figures(at) -> list[dict]:
    """The Plotly figures an AppTest run drew, in page order, as dicts: ``st.plotly_chart``'s and the mosaic's
    (drawn by ``ui/light_chart.py``, with its Plotly ``config`` as one more key)."""
    from ui.light_chart import figure_of

    light = {id(node) for node in light_charts(at)}
    return [json.loads(node.proto.spec) if node.type == "plotly_chart" else figure_of(node.proto.bytes)
            for node in at._tree  # what at.get walks, in the same order
            if node.type == "plotly_chart" or id(node) in light]


def decode_array(value) -> np.ndarray:
    """A Plotly typed array (``{"dtype", "bdata", "shape"}``) or a plain list -> numpy."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if value.get("shape"):
            array = array.reshape([int(s) for s in str(value["shape"]).split(",")])
        return array
    return np.asarray(value)


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def upload_image(make_app, name: str, data: bytes, mime: str = "image/png", **kwargs):  # type: ignore[no-untyped-def]
    """An app whose sidebar image is ``data``, uploaded through the sidebar's "Upload an image" widget."""
    state = {"image_source": "Upload", **kwargs.pop("state", {})}
    at = make_app(state=state, **kwargs)
    at.file_uploader(key="upload").upload(name, data, mime).run()
    return at


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): on a
    busy 2-CPU machine, OpenMP threads waiting for each other made the CAM tests 5x slower (8 s -> 50 s); the
    results do not depend on it. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
