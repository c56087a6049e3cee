"""featviz_core.models.sources.checkpoint with timm architectures and safetensors files."""

from __future__ import annotations

import argparse
import io
import json
import struct
import time

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from featviz_core import extract, list_layers, load_checkpoint
from featviz_core.errors import ModelLoadError

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _save(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _timm(name: str, **kwargs: object) -> nn.Module:
    torch.manual_seed(11)
    module = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():  # non-trivial norm statistics, so a mix-up of any buffer shows in the outputs
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return module


def _input(channels: int = 3, size: int = 96) -> torch.Tensor:
    return torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(5))


def _same_outputs(original: nn.Module, loaded: nn.Module, channels: int = 3) -> bool:
    x = _input(channels)
    with torch.no_grad():
        return torch.equal(original(x), loaded(x))


CASES = {
    "resnet50d, 3 classes": ("resnet50d", {"num_classes": 3}, 3, 3),
    "convnext_nano, grey, 5 classes": ("convnext_nano", {"num_classes": 5, "in_chans": 1}, 5, 1),
    "efficientnet_b0, 3 classes": ("efficientnet_b0", {"num_classes": 3}, 3, 3),
    "regnety_002, 1000 classes": ("regnety_002", {}, 1000, 3),
}


@pytest.fixture(scope="module", params=sorted(CASES), ids=sorted(CASES))
def case(request):  # type: ignore[no-untyped-def]
    name, kwargs, classes, channels = CASES[request.param]
    return name, _timm(name, **kwargs), classes, channels


def test_timm_state_dicts_are_detected_exactly(case) -> None:
    name, module, classes, channels = case
    started = time.perf_counter()
    loaded = load_checkpoint(_save(module.state_dict()))
    elapsed = time.perf_counter() - started
    assert (loaded.name, loaded.source) == (name, "checkpoint")
    assert f"detected architecture {name} (timm) ({classes} class" in loaded.provenance
    assert loaded.input_channels == channels
    assert _same_outputs(module, loaded.module, channels)
    print(f"{name}: detected and loaded in {elapsed:.2f} s")


def test_the_same_weights_as_safetensors(case) -> None:
    name, module, classes, channels = case
    data = safetensors_torch.save(module.state_dict())
    loaded = load_checkpoint(data, filename="fine-tuned.safetensors")
    assert loaded.name == name and "your safetensors file fine-tuned.safetensors" in loaded.provenance
    assert _same_outputs(module, loaded.module, channels)


def test_timm_preprocessing_and_names_for_imagenet_heads(make_image) -> None:
    from timm.data import create_transform, resolve_model_data_config

    module = _timm("regnety_002")
    loaded = load_checkpoint(_save(module.state_dict()))
    image = make_image(2)
    expected = create_transform(**resolve_model_data_config(module), is_training=False)(image)
    assert torch.equal(loaded.preprocess(image), expected.unsqueeze(0))
    assert loaded.categories is not None and loaded.categories[0] == "tench"


def test_timm_training_checkpoint_with_args_ema_and_compile_prefix() -> None:
    """What timm's train.py writes: arch, args (an argparse.Namespace), state_dict and state_dict_ema."""
    module = _timm("resnet50d", num_classes=3)
    compiled = {f"_orig_mod.{k}": v for k, v in module.state_dict().items()}
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in module.state_dict().items()}
    checkpoint = {
        "epoch": 7, "arch": "resnet50d", "state_dict": compiled, "state_dict_ema": ema,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "version": 2, "metric": 0.93,
        "args": argparse.Namespace(model="resnet50d", lr=0.1, epochs=30),
    }
    loaded = load_checkpoint(_save(checkpoint), filename="last.pth.tar")
    assert loaded.name == "resnet50d" and "'state_dict' entry" in loaded.provenance
    assert _same_outputs(module, loaded.module)
    only_ema = load_checkpoint(_save({"arch": "resnet50d", "model_ema": module.state_dict()}))
    assert "'model_ema' entry" in only_ema.provenance and _same_outputs(module, only_ema.module)


def test_module_prefix_and_architecture_named_in_safetensors_metadata() -> None:
    module = _timm("efficientnet_b0", num_classes=3)
    state = {f"module.{k}": v for k, v in module.state_dict().items()}
    data = safetensors_torch.save(state, metadata={"arch": "timm/tf_efficientnet_b0"})
    loaded = load_checkpoint(data, filename="weights.safetensors")
    assert loaded.name == "tf_efficientnet_b0", "the name the file gives wins among equal fits"
    plain = load_checkpoint(safetensors_torch.save(module.state_dict()))
    assert plain.name == "efficientnet_b0" and "also fit" in plain.provenance
    assert "tf_efficientnet_b0 (timm)" in plain.provenance.split("also fit")[1]


def test_torchvision_state_dict_as_safetensors(make_image) -> None:
    torch.manual_seed(2)
    module = torchvision.models.resnet18(num_classes=4).eval()
    loaded = load_checkpoint(safetensors_torch.save(module.state_dict()))
    assert loaded.name == "resnet18" and "detected architecture resnet18 (4 classes" in loaded.provenance
    image = make_image(4)
    layer = "layer2.0.relu"
    maps = extract(loaded, image, [layer]).activations[layer]
    assert maps.shape == (128, 28, 28)
    assert _same_outputs(module, loaded.module)


def test_explicit_timm_architecture_and_misfit_message() -> None:
    module = _timm("resnet50d", num_classes=3)
    data = _save(module.state_dict())
    assert load_checkpoint(data, arch="timm:resnet50d").name == "resnet50d"
    with pytest.raises(ModelLoadError, match="does not fit resnet26d.*It does fit resnet50d"):
        load_checkpoint(data, arch="timm:resnet26d")


def test_layers_of_a_timm_checkpoint_are_listed(make_image) -> None:
    loaded = load_checkpoint(_save(_timm("convnext_nano", num_classes=5, in_chans=1).state_dict()))
    layers = [i for i in list_layers(loaded) if i.spatial]
    assert any(i.channels_last for i in layers) or all(i.shape[1] == i.shape[2] for i in layers)
    maps = extract(loaded, make_image(3, mode="L"), [layers[5].name]).activations[layers[5].name]
    assert maps.ndim == 3 and np.isfinite(maps).all()


# ---------------------------------------------------------------------------------------------------
# safetensors files that are not what they claim


def _header(length: int, body: bytes = b"") -> bytes:
    return struct.pack("<Q", length) + body


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_header(20, b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'), "damaged"),
        (_header(1 << 40, b'{"x": 1}'), "more than the format allows"),
        (_header(2000, b"{" + b" " * 100), "damaged"),
        (_header(8, b'{"x": 1}'), "damaged"),
        (_header(2, b"{}"), "no tensors|damaged"),
        (b"\x00" * 4, "damaged|not a PyTorch"),
    ],
    ids=["lying offsets", "huge header", "truncated", "not a tensor table", "empty table", "tiny"],
)
def test_broken_safetensors_are_refused_politely(data: bytes, match: str) -> None:
    with pytest.raises(ModelLoadError, match=match) as info:
        load_checkpoint(data, filename="model.safetensors")
    assert "Traceback" not in str(info.value)


def test_garbage_named_safetensors_is_refused() -> None:
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_checkpoint(garbage, filename="model.safetensors")


def test_safetensors_metadata_is_never_code() -> None:
    """A header may carry any strings; they are only ever compared with architecture names."""
    module = _timm("resnet50d", num_classes=3)
    data = safetensors_torch.save(module.state_dict(), metadata={"arch": "__import__('os').system('x')"})
    assert load_checkpoint(data).name == "resnet50d"
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    assert header["__metadata__"]["arch"].startswith("__import__")
