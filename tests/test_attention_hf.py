"""featviz_core.attention for Hugging Face transformers models: tiny seeded ViT, distilled DeiT and DINOv2 (with
registers where the installed transformers has them), saved and loaded as a user's zip is. The class token's maps
equal the model's own ``output_attentions=True`` eager attentions; rollout equals a reference written here; the
model keeps its attention implementation and gives the same outputs after; Swin (no class token) gets the sentence."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featviz_core import LayerError, attention
from featviz_core.attention import attention_blocks
from featviz_core.layers import hook_count
from featviz_core.models.loaded import LoadedModel
from featviz_core.models.sources import load_hf
from tests.conftest import random_image
from tests.test_sources_hf import folder_zip

tr = pytest.importorskip("transformers")

TINY = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 64,
        "image_size": 48, "patch_size": 8}


def _families() -> dict[str, tuple]:  # type: ignore[type-arg]
    """name -> (config, class, prefix tokens)."""
    found = {
        "vit": (tr.ViTConfig(**TINY, num_labels=3), tr.ViTForImageClassification, ("class token",)),
        "deit": (tr.DeiTConfig(**TINY, num_labels=3), tr.DeiTForImageClassificationWithTeacher,
                 ("class token", "distillation token")),
        "dinov2": (tr.Dinov2Config(**TINY), tr.Dinov2Model, ("class token",)),
    }
    if hasattr(tr, "Dinov2WithRegistersModel"):
        found["dinov2-registers"] = (tr.Dinov2WithRegistersConfig(**TINY, num_register_tokens=3),
                                     tr.Dinov2WithRegistersModel,
                                     ("class token", "register 1", "register 2", "register 3"))
    return found


FAMILIES = sorted(_families())


def _load(tmp_path_factory: pytest.TempPathFactory, name: str, config: object, cls: type) -> LoadedModel:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(name)
    cls(config).eval().save_pretrained(folder, safe_serialization=True)  # type: ignore[operator]
    tr.ViTImageProcessor(size={"height": 48, "width": 48}).save_pretrained(folder)
    return load_hf(folder_zip(Path(folder)), filename=f"{name}.zip")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, LoadedModel]:
    return {name: _load(tmp_path_factory, name, config, cls) for name, (config, cls, _p) in _families().items()}


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return random_image(seed=4, size=(70, 90))


def _own_attentions(model: LoadedModel, image: Image.Image) -> tuple[list[np.ndarray], object]:
    """The model's own eager attention probabilities per layer (heads, T, T), float64, and its output."""
    assert model.module.config._attn_implementation == "eager"
    with torch.inference_mode():
        output = model.module(model.preprocess(image), output_attentions=True)
    return [a[0].double().numpy() for a in output.attentions], output


def _reference_rollout(per_block: list[np.ndarray]) -> np.ndarray:
    """Abnar & Zuidema (2020): A = 0.5 · mean_heads(W) + 0.5 · I per block, multiplied from the first block."""
    joint = np.eye(per_block[0].shape[-1])
    for weights in per_block:
        joint = (0.5 * weights.mean(axis=0) + 0.5 * np.eye(weights.shape[-1])) @ joint
    return joint


@pytest.mark.parametrize("name", FAMILIES)
def test_class_token_maps_equal_the_models_own_attentions(models, photo, name) -> None:
    model, prefix = models[name], _families()[name][2]
    setup = attention_blocks(model)
    assert setup is not None and setup.prefix == prefix and setup.grid == (6, 6)
    assert len(setup.blocks) == 3 and all(b.split(".")[-1] == str(i) for i, b in enumerate(setup.blocks))
    own, _output = _own_attentions(model, photo)
    hooks = hook_count(model.module)  # (transformers keeps its own hooks for output_attentions)
    n = len(prefix)
    for index in (1, 2):
        result = attention(model, photo, setup.blocks[index])
        want = own[index]
        assert result.maps.shape == (4, 6, 6) and result.heads == (0, 1, 2, 3) and result.prefix == prefix
        np.testing.assert_allclose(result.maps, want[:, 0, n:].reshape(4, 6, 6), atol=1e-6, rtol=0)
        np.testing.assert_allclose(result.prefix_share, want[:, 0, :n].sum(axis=-1), atol=1e-6, rtol=0)
        if n > 1 and prefix[1].startswith("register"):
            assert result.registers is not None and result.registers.shape == (3, 6, 6)
            np.testing.assert_allclose(result.registers, want.mean(axis=0)[1:n, n:].reshape(3, 6, 6), atol=1e-6)
        else:
            assert result.registers is None
    one = attention(model, photo, head=2)
    np.testing.assert_allclose(one.maps[0], own[-1][2, 0, n:].reshape(6, 6), atol=1e-6, rtol=0)
    assert hook_count(model.module) == hooks, "every hook featviz put on is removed"


@pytest.mark.parametrize("name", FAMILIES)
def test_rollout_equals_a_reference_written_here(models, photo, name) -> None:
    model = models[name]
    setup = attention_blocks(model)
    assert setup is not None
    own, _output = _own_attentions(model, photo)
    n = len(setup.prefix)
    for upto in (1, 3):
        result = attention(model, photo, setup.blocks[upto - 1], method="rollout")
        expected = _reference_rollout(own[:upto])[0, n:].reshape(1, 6, 6)
        assert result.maps.shape == (1, 6, 6) and result.heads == ()
        np.testing.assert_allclose(result.maps, expected, atol=1e-6, rtol=1e-5)
    assert not np.allclose(attention(model, photo).mean, result.maps[0], atol=1e-4), "cls and rollout differ"


def test_the_model_keeps_its_attention_implementation_and_outputs(models, photo) -> None:
    model = models["vit"]
    hooks = hook_count(model.module)
    with torch.inference_mode():
        before = model.module(model.preprocess(photo)).logits.clone()
    eager = attention(model, photo, method="rollout")
    attention(model, photo)
    assert model.module.config._attn_implementation == "eager" and not model.module.training
    with torch.inference_mode():
        assert torch.equal(model.module(model.preprocess(photo)).logits, before)
    assert hook_count(model.module) == hooks
    assert model.lock.acquire(blocking=False), "the lock is released"
    model.lock.release()

    model.module.set_attn_implementation("sdpa")  # as a model built in code would run: the fused kernel
    try:
        fused = attention(model, photo, method="rollout")
        assert model.module.config._attn_implementation == "sdpa"
        np.testing.assert_allclose(fused.maps, eager.maps, atol=1e-6)
    finally:
        model.module.set_attn_implementation("eager")


def test_the_pass_stops_after_the_block_asked_for(models, photo) -> None:
    model = models["vit"]
    ran: list[str] = []
    layers = model.module.vit.layers
    handles = [layers[i].register_forward_hook(lambda *_a, i=i: ran.append(f"layer {i}")) for i in range(3)]
    try:
        attention(model, photo, "vit.layers.1")
    finally:
        for handle in handles:
            handle.remove()
    assert ran == ["layer 0"], "layer 1 stops inside its attention; nothing after it runs"


def test_swin_has_no_class_token_and_gets_the_sentence(tmp_path_factory, photo) -> None:
    config = tr.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                           window_size=2, num_labels=3)
    swin = _load(tmp_path_factory, "swin", config, tr.SwinForImageClassification)
    assert attention_blocks(swin) is None
    with pytest.raises(LayerError, match="has no attention from a class token to image patches; attention maps "
                                         "are for vision transformers"):
        attention(swin, photo)


def test_an_unknown_block_of_a_hf_model_names_the_blocks(models, photo) -> None:
    with pytest.raises(LayerError, match=r"choose one of vit\.layers\.0 … vit\.layers\.2"):
        attention(models["vit"], photo, "vit.layers.3")


def test_a_clip_vision_tower_built_in_code(models, photo) -> None:
    """CLIP's vision tower (class embedding, ``self_attn`` with ``scale``), as a model built in code would give it,
    in place of the ViT's module with the same preprocessing."""
    torch.manual_seed(0)
    tower = tr.CLIPVisionModel(tr.CLIPVisionConfig(**TINY)).eval()
    tower.set_attn_implementation("eager")
    model = dataclasses.replace(models["vit"], module=tower, name="clip-tower", key="code:clip-tower")
    setup = attention_blocks(model)
    assert setup is not None and setup.prefix == ("class token",) and setup.grid == (6, 6)
    assert setup.blocks == tuple(f"encoder.layers.{i}" for i in range(3))
    assert setup.hf_modules == tuple(f"encoder.layers.{i}.self_attn" for i in range(3))
    own, _output = _own_attentions(model, photo)
    np.testing.assert_allclose(attention(model, photo, setup.blocks[1]).maps, own[1][:, 0, 1:].reshape(4, 6, 6),
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(attention(model, photo, method="rollout").maps,
                               _reference_rollout(own)[0, 1:].reshape(1, 6, 6), atol=1e-6, rtol=1e-5)
