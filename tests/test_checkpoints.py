"""Tests for featviz_core.models.sources.checkpoint: user checkpoints -> LoadedModel, safely."""

from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import shlex
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from featviz_core import load_checkpoint, parse_class_names
from featviz_core.errors import ModelLoadError
from featviz_core.models import LoadedModel
from featviz_core.models.sources import classification_models, detect, state_dicts

# ---------------------------------------------------------------------------------------------------
# helpers


def _save(obj: object, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def _resnet18(num_classes: int = 3, in_channels: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model.eval()


def _fixed_input(channels: int = 3, size: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(123)
    return torch.randn(1, channels, size, size, generator=generator)


def _outputs_equal(original: nn.Module, loaded: LoadedModel, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.equal(original(x), loaded.module(x))


def _same_weights(original: nn.Module, loaded: LoadedModel) -> bool:
    """Every parameter and buffer of ``loaded`` equals the original's (keys and values)."""
    ours, theirs = original.state_dict(), loaded.module.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def _compact_random_state_dict(arch: str, num_classes: int, seed: int = 0, **kwargs: object) -> dict:
    """A seeded random state dict with exactly ``arch``'s keys and shapes, cheap to build and save.

    The model is built on the meta device (no memory); each floating entry is one random row broadcast
    to the full shape, so even vgg11 saves to a few hundred KB. Detection only looks at keys and shapes.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    state = OrderedDict()
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and tensor.ndim > 0:
            row = torch.randn(tensor.shape[-1], generator=generator)
            state[key] = row.expand(tensor.shape)
        else:
            state[key] = torch.zeros(tensor.shape, dtype=tensor.dtype)
    return state


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return _resnet18(num_classes=3)


@pytest.fixture(scope="module")
def resnet_bytes(resnet: nn.Module) -> bytes:
    return _save(resnet.state_dict())


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 256, size=(260, 300, 3), dtype=np.uint8), mode="RGB")


# ---------------------------------------------------------------------------------------------------
# loading state dicts


def test_bare_state_dict(resnet: nn.Module, resnet_bytes: bytes, image: Image.Image) -> None:
    loaded = load_checkpoint(resnet_bytes, filename="/home/me/model.pt")

    assert isinstance(loaded, LoadedModel)
    assert loaded.name == "resnet18"
    assert loaded.source == "checkpoint"
    assert loaded.categories is None
    assert loaded.input_channels == 3
    assert loaded.input_size == (224, 224)
    assert not loaded.module.training
    assert loaded.key.startswith("checkpoint:") and loaded.key.endswith(":resnet18")
    assert len(loaded.key.split(":")[1]) == 16
    assert loaded.provenance.startswith(
        "your checkpoint model.pt — detected architecture resnet18 (3 classes, 3 input channels)"
    )
    # timm's resnet18 (and its blur-pool variant) have the same keys and shapes: said, not hidden
    assert loaded.provenance.endswith("choose it in the menu if that is what you trained")
    assert _outputs_equal(resnet, loaded, _fixed_input())
    # preprocessing is the DEFAULT weights' transforms, and Grad-CAM still gets gradients
    x = loaded.preprocess(image)
    expected = torchvision.models.ResNet18_Weights.DEFAULT.transforms()(image).unsqueeze(0)
    assert torch.equal(x, expected)
    assert loaded.model_view(image).size == (224, 224)
    assert all(p.requires_grad for p in loaded.module.parameters())


def test_same_bytes_same_key_and_explicit_arch(resnet_bytes: bytes) -> None:
    first = load_checkpoint(resnet_bytes)
    second = load_checkpoint(resnet_bytes, arch="resnet18")
    assert first.key == second.key
    assert "architecture resnet18" in second.provenance and "detected" not in second.provenance


def _wrapped(state: dict) -> dict[str, object]:
    def prefixed(prefix: str) -> OrderedDict:
        return OrderedDict((prefix + k, v) for k, v in state.items())

    return {
        "state_dict": {"state_dict": state, "epoch": 3, "optimizer": {"state": {}, "param_groups": []}},
        "model": {"model": state, "epoch": 3},
        "model_state_dict": {"model_state_dict": state, "loss": 0.25},
        "net": {"net": state},
        "weights": {"weights": state},
        "nested": {"model": {"state_dict": state}},
        "module prefix": prefixed("module."),
        "torch.compile prefix": prefixed("_orig_mod."),
        "lightning": {
            "state_dict": prefixed("model."),
            "epoch": 1,
            "global_step": 10,
            "hyper_parameters": {"lr": 0.1, "name": "run"},
            "pytorch-lightning_version": "2.4.0",
        },
        "lightning with extra modules": {
            "state_dict": {**prefixed("model."), "criterion.weight": torch.ones(3)},
        },
        "imagenet example": {
            "epoch": 90,
            "arch": "resnet18",
            "state_dict": prefixed("module."),
            "best_acc1": torch.tensor(71.2),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
        },
    }


WRAPPERS = list(_wrapped({}).keys())


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_wrappers_and_prefixes(wrapper: str, resnet: nn.Module) -> None:
    data = _save(_wrapped(resnet.state_dict())[wrapper])
    loaded = load_checkpoint(data)
    assert loaded.name == "resnet18"
    assert _same_weights(resnet, loaded)


def test_batchnorm_counters_missing_or_extra(resnet: nn.Module) -> None:
    without = {k: v for k, v in resnet.state_dict().items() if not k.endswith("num_batches_tracked")}
    loaded = load_checkpoint(_save(without))
    assert _same_weights(resnet, loaded)

    extra = dict(resnet.state_dict())
    extra["fc.num_batches_tracked"] = torch.tensor(5)
    assert load_checkpoint(_save(extra)).name == "resnet18"


def test_module_versions_are_kept() -> None:
    """MNASNet refuses to load without the version numbers torch keeps in ``state_dict()._metadata``."""
    torch.manual_seed(3)
    model = torchvision.models.mnasnet0_5(weights=None, num_classes=4).eval()
    state = OrderedDict(("module." + k, v) for k, v in model.state_dict().items())
    state._metadata = OrderedDict(  # type: ignore[attr-defined]
        (f"module.{k}" if k else "module", v) for k, v in model.state_dict()._metadata.items()
    )
    loaded = load_checkpoint(_save({"state_dict": state}))
    assert loaded.name == "mnasnet0_5"
    assert _same_weights(model, loaded)


def test_half_precision_checkpoint_loads_as_float32(resnet: nn.Module) -> None:
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in resnet.state_dict().items()}
    loaded = load_checkpoint(_save(half))
    assert all(p.dtype == torch.float32 for p in loaded.module.parameters())


def test_legacy_serialization_format(resnet: nn.Module) -> None:
    data = _save(resnet.state_dict(), _use_new_zipfile_serialization=False)
    assert _same_weights(resnet, load_checkpoint(data))


def test_num_classes_inferred() -> None:
    model = _resnet18(num_classes=12)
    loaded = load_checkpoint(_save(model.state_dict()))
    assert loaded.categories is None
    with torch.no_grad():
        assert loaded.module(_fixed_input()).shape == (1, 12)
    assert "(12 classes, 3 input channels)" in loaded.provenance


def test_one_channel_resnet(image: Image.Image) -> None:
    model = _resnet18(num_classes=4, in_channels=1)
    loaded = load_checkpoint(_save(model.state_dict()), filename="xray.pth")

    assert loaded.input_channels == 1
    assert "(4 classes, 1 input channel)" in loaded.provenance
    x = loaded.preprocess(image)
    assert x.shape == (1, 1, 224, 224)
    grey = image.convert("L")
    expected = torchvision.transforms.functional.to_tensor(loaded.model_view(grey))
    mean, std = np.mean([0.485, 0.456, 0.406]), np.mean([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[0], (expected - mean) / std, rtol=0, atol=1e-5)
    assert _outputs_equal(model, loaded, _fixed_input(channels=1))


def test_one_channel_efficientnet() -> None:
    torch.manual_seed(1)
    model = torchvision.models.efficientnet_b0(weights=None, num_classes=2)
    model.features[0][0] = nn.Conv2d(1, 32, kernel_size=3, stride=2, padding=1, bias=False)
    model.eval()
    loaded = load_checkpoint(_save(model.state_dict()))
    assert (loaded.name, loaded.input_channels) == ("efficientnet_b0", 1)
    assert _outputs_equal(model, loaded, _fixed_input(channels=1))


def test_other_channel_counts_are_refused() -> None:
    model = _resnet18(num_classes=3, in_channels=4)
    with pytest.raises(ModelLoadError, match="4 input channels"):
        load_checkpoint(_save(model.state_dict()))


# ---------------------------------------------------------------------------------------------------
# architecture detection

DETECTABLE = [
    "resnet18",
    "resnet34",
    "resnet50",
    "wide_resnet50_2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "densenet121",
    "vgg11",
]


@pytest.mark.parametrize("arch", DETECTABLE)
def test_detects_architecture(arch: str) -> None:
    data = _save(_compact_random_state_dict(arch, num_classes=7, seed=DETECTABLE.index(arch)))
    loaded = load_checkpoint(data, filename="model.pt")
    assert loaded.name == arch
    assert loaded.key.endswith(f":{arch}")
    assert f"detected architecture {arch} (7 classes, 3 input channels)" in loaded.provenance


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("inception_v3", {"aux_logits": True, "init_weights": False}),
        ("inception_v3", {"aux_logits": False, "init_weights": False}),
        ("googlenet", {"aux_logits": True, "init_weights": False}),
        ("googlenet", {"aux_logits": False, "init_weights": False}),
    ],
)
def test_detects_models_with_or_without_aux_classifiers(arch: str, kwargs: dict) -> None:
    loaded = load_checkpoint(_save(_compact_random_state_dict(arch, num_classes=5, **kwargs)))
    assert loaded.name == arch
    assert loaded.input_size == ((299, 299) if arch == "inception_v3" else (224, 224))


def test_real_efficientnet_detected_and_equal() -> None:
    torch.manual_seed(2)
    model = torchvision.models.efficientnet_b0(weights=None, num_classes=6).eval()
    loaded = load_checkpoint(_save(model.state_dict()))
    assert loaded.name == "efficientnet_b0"
    assert _outputs_equal(model, loaded, _fixed_input())


def test_every_torchvision_architecture_has_a_distinct_signature() -> None:
    """Detection stops at the first exact match: that is only right if no two architectures share
    keys and shapes (up to the class count and the input channels)."""
    seen: dict[tuple, str] = {}
    for arch in classification_models():
        sig = detect.signature(detect.Arch("torchvision", arch))
        assert sig is not None, arch
        assert sig.first_conv is not None and sig.class_keys, arch
        for keys in {sig.keys, sig.keys_without_aux}:
            shapes = []
            for key in sorted(keys):
                shape = sig.shapes[key]
                if key in sig.class_keys:
                    shape = ("classes", *shape[1:])
                elif key == sig.first_conv_key:
                    shape = (shape[0], "channels", *shape[2:])
                shapes.append((key, shape))
            fingerprint = tuple(shapes)
            assert fingerprint not in seen, f"{arch} looks like {seen.get(fingerprint)}"
            seen[fingerprint] = arch


def test_explicit_wrong_arch(resnet_bytes: bytes) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(resnet_bytes, arch="resnet34")
    message = str(info.value)
    assert "does not fit resnet34" in message
    assert "missing" in message and "layer1.2.conv1.weight" in message
    assert "It does fit resnet18" in message


def test_unknown_arch_name(resnet_bytes: bytes) -> None:
    with pytest.raises(ModelLoadError, match="not a torchvision or timm architecture"):
        load_checkpoint(resnet_bytes, arch="resnet19")


def test_mismatched_shapes(resnet: nn.Module) -> None:
    state = dict(resnet.state_dict())
    state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    data = _save(state)

    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(data, arch="resnet18")
    message = str(info.value)
    assert "other shapes" in message and "layer1.0.conv1.weight is 32×64×3×3 in the file" in message

    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(data)
    message = str(info.value)
    assert "No torchvision or timm architecture matches" in message
    assert "closest is resnet18" in message
    assert "Choose the architecture explicitly" in message


def test_replaced_head_is_explained(resnet: nn.Module) -> None:
    state = {k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    state["fc.1.weight"], state["fc.1.bias"] = torch.zeros(3, 512), torch.zeros(3)
    with pytest.raises(ModelLoadError, match=r"fc\.weight.*fc\.1\.weight"):
        load_checkpoint(_save(state), arch="resnet18")


def test_custom_model_matches_nothing() -> None:
    custom = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    custom(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(_save(custom.state_dict()))
    message = str(info.value)
    assert "No torchvision or timm architecture matches" in message
    assert "state_dict" in message
    assert "--model your_module:factory" in message, "a model class of one's own has its own way in"


def test_no_weights_in_file() -> None:
    with pytest.raises(ModelLoadError, match="holds no model weights.*epoch"):
        load_checkpoint(_save({"epoch": 3, "lr": 0.1}))


# ---------------------------------------------------------------------------------------------------
# class names


def test_parse_class_names_text() -> None:
    data = "\ufeff  cat \r\n\r\n dog\n\n  bird of prey  \n".encode()
    assert parse_class_names(data) == ["cat", "dog", "bird of prey"]
    assert parse_class_names(b"only one") == ["only one"]


@pytest.mark.parametrize(
    "payload",
    [
        ["cat", "dog", "bird"],
        {"0": "cat", "1": "dog", "2": "bird"},
        {"2": "bird", "0": "cat", "1": "dog"},
        {"0": ["n001", "cat"], "1": ["n002", "dog"], "2": ["n003", "bird"]},
        {"cat": 0, "dog": 1, "bird": 2},
    ],
)
def test_parse_class_names_json(payload: object) -> None:
    assert parse_class_names(json.dumps(payload).encode()) == ["cat", "dog", "bird"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"  \n\n ", "empty"),
        ("caf\u00e9\n".encode("latin-1"), "UTF-8"),
        (b'["cat", "dog"', "line"),  # not closed: read as lines, no error -> checked below
        (b'["cat", "dog",]', "JSON"),
        (b'{"0": "cat", "2": "dog"}', "0 to 1"),
        (b'{"a": "cat"}', "indices"),
        (b"[]", "empty list"),
    ],
)
def test_parse_class_names_errors(data: bytes, match: str) -> None:
    if match == "line":
        assert parse_class_names(data) == ['["cat", "dog"']
        return
    with pytest.raises(ModelLoadError, match=match):
        parse_class_names(data)


def test_class_names_length(resnet_bytes: bytes) -> None:
    names = parse_class_names(b"cat\ndog\nbird\n")
    loaded = load_checkpoint(resnet_bytes, categories=names)
    assert loaded.categories == ["cat", "dog", "bird"]
    assert loaded.category(2) == "bird"
    assert "class names from your file" in loaded.provenance
    other = load_checkpoint(resnet_bytes, categories=["cow", "hen", "pig"])
    unnamed = load_checkpoint(resnet_bytes)
    assert len({loaded.key, other.key, unnamed.key}) == 3, "cached extractions carry names: keys must differ"

    with pytest.raises(ModelLoadError, match="has 2 lines but the model has 3 classes"):
        load_checkpoint(resnet_bytes, categories=["cat", "dog"])


# ---------------------------------------------------------------------------------------------------
# refusals: never unpickle anything but tensors


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _torchscript_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(_TinyNet()), buffer)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _save(_resnet18()), "whole pickled model"),
        (lambda: _save(_TinyNet()), "pickled Python objects"),
        (_torchscript_bytes, "TorchScript"),
        (lambda: os.urandom(4096), "not a PyTorch checkpoint"),
        (lambda: b"", "empty"),
        (lambda: b"hello, this is text\n", "not a PyTorch checkpoint"),
        (lambda: _save({"state_dict": {"w": torch.ones(2)}, "acc": np.float64(0.5)}), "pickled Python"),
        (lambda: b"\x89HDF\r\n\x1a\n" + bytes(64), "Keras"),
    ],
    ids=["resnet-module", "custom-module", "torchscript", "random", "empty", "text", "numpy", "hdf5"],
)
def test_refused_files(make, match: str) -> None:
    with pytest.raises(ModelLoadError, match=match) as info:
        load_checkpoint(make())
    assert "state_dict" in str(info.value)
    assert info.value.__cause__ is None


def test_other_frameworks_are_named() -> None:
    with pytest.raises(ModelLoadError, match="ONNX") as info:
        load_checkpoint(b"\x08\x07\x12\x07pytorch" + bytes(100), filename="C:\\models\\net.onnx")
    assert "state_dict" in str(info.value)


def test_truncated_checkpoint(resnet_bytes: bytes) -> None:
    with pytest.raises(ModelLoadError, match="damaged, truncated"):
        load_checkpoint(resnet_bytes[: len(resnet_bytes) // 2])


def test_size_limit_checked_first(monkeypatch: pytest.MonkeyPatch, resnet_bytes: bytes) -> None:
    monkeypatch.setattr(state_dicts, "MAX_CHECKPOINT_BYTES", 1000)
    monkeypatch.setattr(state_dicts, "_torch_load", lambda data: pytest.fail("read an over-limit file"))
    with pytest.raises(ModelLoadError, match="too large") as info:
        load_checkpoint(resnet_bytes)
    assert "state_dict" in str(info.value)


def test_unpacked_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * 100_000)
    monkeypatch.setattr(state_dicts, "MAX_CHECKPOINT_BYTES", 50_000)
    with pytest.raises(ModelLoadError, match="too large once unpacked"):
        load_checkpoint(buffer.getvalue())


class _TouchFile:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


class _SystemCall:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.path))}",))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("payload", [_TouchFile, _SystemCall])
@pytest.mark.parametrize(
    "writer",
    [
        lambda obj: _save(obj),
        lambda obj: _save({"state_dict": {"w": torch.ones(1)}, "extra": obj}),
        lambda obj: _save(obj, _use_new_zipfile_serialization=False),
        lambda obj: pickle.dumps(obj, protocol=2),
        lambda obj: pickle.dumps(obj),
    ],
    ids=["torch.save", "inside-checkpoint", "legacy-format", "pickle-2", "pickle-default"],
)
def test_malicious_pickle_never_runs(tmp_path: pathlib.Path, payload, writer) -> None:
    target = tmp_path / "pwned"
    data = writer(payload(target))
    assert not target.exists()
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(data)
    assert not target.exists()
    assert "state_dict" in str(info.value)


def test_code_running_pickle_is_named(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ModelLoadError, match="tries to run code") as info:
        load_checkpoint(_save(_SystemCall(tmp_path / "pwned")))
    assert "system" in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_only_model_load_error_escapes(monkeypatch: pytest.MonkeyPatch, resnet_bytes: bytes) -> None:
    def broken(*args: object) -> None:
        raise KeyError("internal")

    from featviz_core.models.sources import checkpoint

    monkeypatch.setattr(checkpoint, "_preprocessing", broken)
    with pytest.raises(ModelLoadError, match="could not be loaded") as info:
        load_checkpoint(resnet_bytes)
    assert info.value.__cause__ is None and info.value.__suppress_context__

    with pytest.raises(ModelLoadError):
        load_checkpoint("not bytes")  # type: ignore[arg-type]


def test_shipped_torchvision_index_matches_a_fresh_build() -> None:
    """Detection looks checkpoints up in the shipped index: it must be what the installed torchvision gives
    (regenerate with `python -m featviz_core.models.sources.detect` after upgrading torchvision)."""
    shipped = json.loads(detect.TORCHVISION_INDEX.read_text(encoding="utf-8"))
    assert shipped["torchvision"] == torchvision.__version__
    assert shipped["architectures"] == detect.torchvision_fingerprints()
