"""ModelSpec (featviz_core/models/spec.py): one parser and writer of model strings; ModelSource and the capabilities
pages read; the models' cache keys (featviz_core/models/keys.py)."""

from __future__ import annotations

import dataclasses

import pytest

from featviz_core import ModelLoadError
from featviz_core.models import ModelSource, ModelSpec
from featviz_core.models.keys import bytes_digest, model_key, names_digest


@pytest.mark.parametrize(
    ("text", "source", "name", "pretrained", "written"),
    [
        ("demo", ModelSource.DEMO, "", True, "demo"),
        (" Demo ", ModelSource.DEMO, "", True, "demo"),
        ("resnet18", ModelSource.TORCHVISION, "resnet18", True, "tv:resnet18"),
        ("tv:resnet18", ModelSource.TORCHVISION, "resnet18", True, "tv:resnet18"),
        ("torchvision:resnet18", ModelSource.TORCHVISION, "resnet18", True, "tv:resnet18"),
        ("tv:resnet18:random", ModelSource.TORCHVISION, "resnet18", False, "tv:resnet18:random"),
        ("timm:resnet50.a1_in1k", ModelSource.TIMM, "resnet50.a1_in1k", True, "timm:resnet50.a1_in1k"),
        ("timm:resnet50d:random", ModelSource.TIMM, "resnet50d", False, "timm:resnet50d:random"),
        ("runs/best.pth", ModelSource.CHECKPOINT, "runs/best.pth", True, "runs/best.pth"),
        ("model.safetensors", ModelSource.CHECKPOINT, "model.safetensors", True, "model.safetensors"),
        ("exports/net.ONNX", ModelSource.ONNX, "exports/net.ONNX", True, "exports/net.ONNX"),
        ("pkg.module:factory", ModelSource.CODE, "pkg.module:factory", True, "pkg.module:factory"),
        ("hf:google/vit-base-patch16-224", ModelSource.HF, "google/vit-base-patch16-224", True,
         "hf:google/vit-base-patch16-224"),
        ("saved/vit.zip", ModelSource.HF, "saved/vit.zip", True, "saved/vit.zip"),
        ("checkpoint", ModelSource.CHECKPOINT, "", True, "checkpoint"),
        ("onnx", ModelSource.ONNX, "", True, "onnx"),
        ("code", ModelSource.CODE, "", True, "code"),
    ],
)
def test_parse_and_write_back(text: str, source: ModelSource, name: str, pretrained: bool, written: str) -> None:
    spec = ModelSpec.parse(text)
    assert (spec.source, spec.name, spec.pretrained) == (source, name, pretrained)
    assert str(spec) == written and ModelSpec.parse(str(spec)) == spec


def test_only_random_may_follow_a_library_name() -> None:
    with pytest.raises(ModelLoadError, match="only ':random' may follow"):
        ModelSpec.parse("tv:resnet18:pretrained")


def test_specs_say_in_words_what_they_name() -> None:
    assert ModelSpec.parse("timm:convnext_atto:random").describe() == "timm model convnext_atto"
    assert ModelSpec.parse("resnet18").describe() == "torchvision model resnet18"
    assert ModelSpec.parse("net.onnx").describe() == "the ONNX file net.onnx"
    assert ModelSpec.parse("hf:org/vit").describe() == "Hugging Face model org/vit"


def test_the_source_is_typed_and_capabilities_follow_from_it(tiny) -> None:
    assert tiny.source is ModelSource.TEST and tiny.source == "test"  # a plain word is typed on the way in
    random = dataclasses.replace(tiny, source="timm", weights=None)
    assert random.source is ModelSource.TIMM and random.has_random_weights and not random.takes_class_names
    assert not dataclasses.replace(random, weights="resnet18.a1_in1k").has_random_weights
    own = dataclasses.replace(tiny, source=ModelSource.CHECKPOINT)
    assert own.takes_class_names and not own.has_random_weights
    with pytest.raises(ModelLoadError, match="not a model source"):
        dataclasses.replace(tiny, source="somewhere")


def test_model_keys_are_built_in_one_place() -> None:
    assert model_key(ModelSource.TORCHVISION, "resnet18", "random") == "torchvision:resnet18:random"
    assert model_key(ModelSource.ONNX, "ab12", "224x224", "imagenet") == "onnx:ab12:224x224:imagenet"
    assert bytes_digest(b"weights") == bytes_digest(bytearray(b"weights")) and len(bytes_digest(b"")) == 16
    assert names_digest(["cat", "dog"]) != names_digest(["dog", "cat"]) and len(names_digest(["a"])) == 8
