"""State dicts of torchvision's video classifiers (r3d_18, mc3_18, r2plus1d_18, s3d) through "Your checkpoint":
detected, opened as 3-D models and read exactly as the module they were saved from."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save as save_safetensors
from torch import nn

from featviz_core import extract, load_checkpoint
from featviz_core.errors import InputKindError, ModelLoadError
from featviz_core.images import Volume
from featviz_core.models.sources.torchvision import VIDEO_FRAMES
from tests.test_volumes_3d import clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _seeded(name: str, num_classes: int = 5, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    module = torchvision.models.get_model_builder(name)(weights=None, num_classes=num_classes).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, as a trained model has
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm3d):
                sub.running_mean.uniform_(-0.2, 0.2)
                sub.running_var.uniform_(0.5, 1.5)
    return module


def _torch_bytes(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


def _hooks(module: nn.Module, tensor: torch.Tensor, names: list[str]) -> dict[str, np.ndarray]:
    """The reference: forward hooks on the original module keeping a clone of each output."""
    modules = dict(module.named_modules())
    kept: dict[str, torch.Tensor] = {}

    def keeper(name: str):
        def hook(_module, _inputs, output) -> None:
            kept.setdefault(name, output.detach().clone())

        return hook

    handles = [modules[name].register_forward_hook(keeper(name)) for name in names]
    try:
        with torch.no_grad():
            logits = module(tensor)
    finally:
        for handle in handles:
            handle.remove()
    kept["logits"] = logits
    return {name: t[0].numpy() for name, t in kept.items()}


@pytest.fixture(scope="module")
def r3d5() -> nn.Module:
    return _seeded("r3d_18")


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
def test_an_r3d18_state_dict_is_detected_and_read_as_the_module_it_came_from(r3d5: nn.Module, fmt: str) -> None:
    if fmt == "torch":
        data, filename = _torch_bytes(r3d5), "finetuned.pt"
    else:
        state = {k: v.contiguous() for k, v in r3d5.state_dict().items()}
        data, filename = save_safetensors(state), "finetuned.safetensors"
    model = load_checkpoint(data, filename=filename)
    assert model.name == "r3d_18" and model.is_volumetric and model.input_depth == VIDEO_FRAMES
    assert model.input_shape == (3, VIDEO_FRAMES, 112, 112)
    assert model.module.fc.out_features == 5 and model.categories is None
    assert "detected architecture r3d_18 (5 classes, 3 input channels)" in model.provenance
    assert "a 3-D model" in model.provenance
    volume = clip(20, 60, 80)
    names = ["stem.1", "layer1.0.conv1.0", "layer2", "layer4"]
    extraction = extract(model, volume, names)
    reference = _hooks(r3d5, model.preprocess_volume(volume), names)
    for name in names:
        assert extraction.activations[name].ndim == 4  # (C, D, H, W) maps
        np.testing.assert_array_equal(extraction.activations[name], reference[name])
    assert (extraction.activations["stem.1"] < 0).any()  # kept before the in-place ReLU that follows it
    probabilities = torch.softmax(torch.from_numpy(reference["logits"]), 0).numpy()
    assert extraction.probabilities is not None and extraction.probabilities.shape == (5,)
    np.testing.assert_allclose(extraction.probabilities, probabilities, rtol=1e-5, atol=1e-7)
    with pytest.raises(InputKindError):
        model.transform(None)  # type: ignore[arg-type]


def test_the_preprocessing_is_the_video_weights_transforms(r3d5: nn.Module) -> None:
    model = load_checkpoint(_torch_bytes(r3d5), filename="model.pt")
    volume = clip(32, 60, 80)
    frames = np.floor((np.arange(VIDEO_FRAMES) + 0.5) * 32 / VIDEO_FRAMES).astype(int)
    raw = torch.from_numpy(np.asarray(volume.array)[:, frames]).round().to(torch.uint8).permute(1, 0, 2, 3)
    expected = torchvision.models.get_model_weights("r3d_18").DEFAULT.transforms()(raw.contiguous())[None]
    torch.testing.assert_close(model.preprocess_volume(volume), expected)


@pytest.mark.parametrize("name", ["mc3_18", "r2plus1d_18", "s3d"])
def test_every_video_architecture_is_told_apart(name: str) -> None:
    module = _seeded(name, num_classes=7, seed=1)
    model = load_checkpoint(_torch_bytes(module), filename="weights.pt")  # no hint in the file name
    assert model.name == name and model.is_volumetric and not model.provenance.count("also fit")
    for key, tensor in module.state_dict().items():
        torch.testing.assert_close(model.module.state_dict()[key], tensor, rtol=0, atol=0)


def test_the_architecture_chosen_by_name_and_a_wrong_choice_says_what_fits(r3d5: nn.Module) -> None:
    data = _torch_bytes(r3d5)
    assert load_checkpoint(data, arch="r3d_18").is_volumetric
    with pytest.raises(ModelLoadError, match="It does fit r3d_18"):
        load_checkpoint(data, arch="mc3_18")
    with pytest.raises(ModelLoadError, match="does not fit resnet18"):
        load_checkpoint(data, arch="resnet18")


def test_a_grey_r3d18_takes_one_channel_of_the_scan() -> None:
    module = _seeded("r3d_18", num_classes=2)
    module.stem[0] = nn.Conv3d(1, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
    model = load_checkpoint(_torch_bytes(module.eval()), filename="grey_r3d_18.pt")
    assert model.name == "r3d_18" and model.input_shape == (1, VIDEO_FRAMES, 112, 112)
    rng = np.random.default_rng(3)
    scan = Volume(array=rng.uniform(-1000, 1000, (24, 48, 48)).astype(np.float32), spacing=(2.0, 1.0, 1.0),
                  kind="volume", modality="CT", window=(40.0, 400.0), description="noise")  # fmt: skip
    tensor = model.preprocess_volume(scan)
    assert tuple(tensor.shape) == (1, 1, VIDEO_FRAMES, 112, 112)
    extraction = extract(model, scan, ["layer3"])
    np.testing.assert_array_equal(extraction.activations["layer3"], _hooks(module, tensor, ["layer3"])["layer3"])
