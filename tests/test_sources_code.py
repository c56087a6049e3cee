"""featviz_core.models.sources.code: a model class of the user's own, named as package.module:factory."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from featviz_core import ModelLoadError, Preprocessing, extract, list_layers, load_from_code, load_spec
from featviz_core.cam import CamError, gradcam
from featviz_core.layers import hook_count
from tests.custom_models import NOTHING_FITS, FaceDetector, LeNet5, ONet, build_detector


def _state_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


def test_a_detector_with_tuple_output_shows_feature_maps(make_image) -> None:
    model = load_from_code("tests.custom_models:build_detector")
    assert (model.source, model.input_size, model.input_channels) == ("code", (224, 224), 3)
    layers = {info.name: info for info in list_layers(model) if info.spatial}
    assert {"backbone.2", "heatmap", "boxes"} <= set(layers)
    image = make_image(1)
    result = extract(model, image, ["backbone.1", "heatmap"])
    assert result.probabilities is None and result.top_k(5) == [], "a detector has no class scores"
    reference = build_detector().eval()
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):  # type: ignore[no-untyped-def]
        def hook(_m, _i, out) -> None:  # type: ignore[no-untyped-def]
            seen[name] = out.detach().clone()  # returns None: the module's output stays as it was

        return hook

    handles = [reference.backbone[1].register_forward_hook(keep("bn")),
               reference.heatmap.register_forward_hook(keep("heat"))]
    with torch.no_grad():
        reference(model.preprocess(image))
    for handle in handles:
        handle.remove()
    assert seen["bn"].min() < 0, "recorded before the in-place ReLU"
    np.testing.assert_array_equal(result.activations["backbone.1"], seen["bn"][0].numpy())
    np.testing.assert_array_equal(result.activations["heatmap"], seen["heat"][0].numpy())
    assert hook_count(model.module) == 0
    with pytest.raises(CamError, match="one vector of class scores"):
        gradcam(model, image, "backbone.5")


def test_weights_from_a_file_are_loaded_safely(tmp_path, make_image) -> None:
    torch.manual_seed(9)
    trained = FaceDetector().eval()
    path = tmp_path / "faces.pt"
    path.write_bytes(_state_bytes(trained))
    model = load_from_code("tests.custom_models:FaceDetector", weights=str(path))
    assert "weights from faces.pt" in model.provenance
    for key, value in trained.state_dict().items():
        assert torch.equal(model.module.state_dict()[key], value)
    from safetensors.torch import save

    wrapped = save({f"module.{k}": v for k, v in trained.state_dict().items()})
    again = load_from_code("tests.custom_models:FaceDetector", weights=wrapped)
    assert "(safetensors)" in again.provenance
    x = model.preprocess(make_image(2))
    with torch.no_grad():
        assert torch.equal(model.module(x)[1], again.module(x)[1])


def test_factory_preprocessing_and_overrides(make_image) -> None:
    model = load_from_code("tests.custom_models:build_with_preprocessing")
    assert model.input_size == (64, 96)
    tensor = model.preprocess(make_image(3, size=(300, 100)))
    assert tensor.shape == (1, 3, 64, 96) and 0 <= float(tensor.min()) and float(tensor.max()) <= 1
    assert load_from_code("tests.custom_models:build_dict").input_size == (48, 48)
    overridden = load_from_code("tests.custom_models:build_detector", input_size=(32, 40), normalization="-1-1")
    assert overridden.input_size == (32, 40)
    assert float(overridden.preprocess(make_image(4)).min()) < 0


def test_grey_models_and_class_names(tmp_path) -> None:
    names = tmp_path / "classes.txt"
    names.write_text("normal\nbenign\nmalignant\n")
    model = load_from_code("tests.custom_models:GreyClassifier", classes=str(names), input_size=32)
    assert model.input_channels == 1 and model.categories == ["normal", "benign", "malignant"]


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        ("tests.custom_models", {}, "of the form package.module:factory"),
        ("no_such_package.nets:build", {}, "Could not import no_such_package.nets: ModuleNotFoundError"),
        ("tests.custom_models:missing", {}, "has no attribute missing"),
        ("tests.custom_models:broken", {}, "broken raised RuntimeError: this factory is broken on purpose"),
        ("tests.custom_models:not_a_model", {}, "returned str, not a torch nn.Module"),
        ("tests.custom_models:NOTHING_FITS", {}, "could not run on a 3×224×224 input.*--input-size"),
        ("tests.custom_models:LeNet5", {"input_size": 64}, "could not run on a 1×64×64 input.*--input-size"),
        ("tests.custom_models:FaceDetector", {"weights": b"not weights"}, "not a PyTorch checkpoint"),
    ],
)
def test_mistakes_are_explained(spec, kwargs, match) -> None:
    with pytest.raises(ModelLoadError, match=match):
        load_from_code(spec, **kwargs)


def test_weights_of_another_model_are_refused() -> None:
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
    with pytest.raises(ModelLoadError, match="do not fit.*not in the file"):
        load_from_code("tests.custom_models:FaceDetector", weights=_state_bytes(other))


def test_a_python_file_path_works_too(tmp_path) -> None:
    source = tmp_path / "my_net.py"
    source.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3))\n")
    model = load_from_code(f"{source}:make", input_size=16)
    assert [i.name for i in list_layers(model) if i.spatial] == ["0"]


def test_load_spec_covers_every_source(tmp_path) -> None:
    assert load_spec("demo").source == "demo"
    assert load_spec("tv:resnet18:random").key == "torchvision:resnet18:random"
    assert load_spec("timm:resnet18:random").key == "timm:resnet18:random"
    assert load_spec("tests.custom_models:build_detector").source == "code"
    path = tmp_path / "weights.pth"
    torch.manual_seed(0)
    import torchvision

    path.write_bytes(_state_bytes(torchvision.models.resnet18(num_classes=2)))
    assert load_spec(str(path)).name == "resnet18"
    with pytest.raises(ModelLoadError, match="not a model featviz knows"):
        load_spec("nonsense")


@pytest.mark.parametrize(("spec", "size", "channels"), [
    ("tests.custom_models:LeNet5", 32, 1),
    ("tests.custom_models:ONet", 48, 3),
    ("tests.custom_models:NEEDS_BIG_INPUT", 300, 3),
])
def test_a_model_with_a_fixed_input_size_gets_it(spec, size, channels, make_image) -> None:
    model = load_from_code(spec)
    assert (model.input_size, model.input_channels) == ((size, size), channels)
    assert f"featviz chose {size}×{size}, the size this model accepts" in model.provenance
    assert f"{size}x{size}" in model.key
    assert model.preprocess(make_image(5, size=(300, 200))).shape == (1, channels, size, size)
    spatial = [info for info in list_layers(model) if info.spatial]
    assert spatial and hook_count(model.module) == 0, "the search leaves no hook behind"
    assert all(p.device.type == "cpu" for p in model.module.parameters()), "the search never moves the model"
    result = extract(model, make_image(6), [spatial[0].name])
    assert np.isfinite(result.activations[spatial[0].name]).all()


def test_a_given_size_is_kept_and_a_fitting_default_is_not_searched() -> None:
    assert load_from_code("tests.custom_models:build_detector").provenance.endswith("224×224 input)")
    assert "featviz chose" not in load_from_code("tests.custom_models:LeNet5", input_size=32).provenance


def test_a_module_in_memory_gets_the_same_treatment() -> None:
    from featviz_core.models.sources import load_module

    lenet = LeNet5()
    model = load_module(lenet, classes=[str(d) for d in range(10)])
    assert model.module is lenet and not lenet.training and model.input_size == (32, 32)
    assert model.provenance.startswith("your model LeNet5 from Python") and model.categories[3] == "3"
    onet = load_module(ONet(), Preprocessing(normalization="-1-1"), name="onet")
    assert onet.input_size == (48, 48) and onet.name == "onet"
    with pytest.raises(ModelLoadError, match=r"NOTHING_FITS could not run.*preprocessing=Preprocessing"):
        load_module(NOTHING_FITS, name="NOTHING_FITS")
    with pytest.raises(ModelLoadError, match="needs a torch nn.Module, not str"):
        load_module("resnet18")  # type: ignore[arg-type]
