"""How an output becomes a map (featviz_core/layers/layout.py): vision transformers' tokens on their patch grid
(timm, transformers, torchvision), channels-last layers, and what is never a map (attention internals, queries,
keys and values, window partitions, pools). Every timm family: tests/test_layout_families.py."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from featviz_core import default_layer, extract, layer_info, list_layers
from featviz_core.cam import default_cam_layer
from featviz_core.layers import hook_count
from featviz_core.layers.layout import (
    MapLayout,
    TokenGrid,
    confirm_output,
    from_chw,
    prefix_tokens,
    read_output,
    to_chw,
    token_grid,
)
from featviz_core.models import LoadedModel, standard_preprocessing
from tests.conftest import random_image

timm = pytest.importorskip("timm")

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

INTERNAL = ("q_norm", "k_norm", "qkv", "attn_drop", "softmax", "q_proj", "k_proj", "v_proj", "rel_pos")


# ---------------------------------------------------------------------------------------------------
# Helpers


def with_size(model: LoadedModel, size: tuple[int, int]) -> LoadedModel:
    """``model`` fed pictures of ``size`` = (H, W) (timm's data config keeps a model's default size even when
    it was made with another ``img_size``)."""
    transform, view = standard_preprocessing(size, 3)
    return dataclasses.replace(model, input_size=size, transform=transform, view=view, key=f"{model.key}:{size}")


def build_timm(name: str, size: tuple[int, int] | None = None, **kwargs: Any) -> LoadedModel:
    """A seeded random timm model (``img_size`` in ``kwargs`` builds it for that size), fed pictures of ``size``."""
    from featviz_core.models.sources.timm import loaded_timm

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = timm.create_model(name, pretrained=False, **kwargs).eval()
    model = loaded_timm(module, name, pretrained=False, tag=None)
    return with_size(model, size) if size is not None else model


timm_model = functools.lru_cache(maxsize=None)(build_timm)
""":func:`build_timm`, each model built once for this module."""


def plain_outputs(module: torch.nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The first output of each module in ``names``, copied at once by a plain hook."""
    seen: dict[str, torch.Tensor] = {}
    modules = dict(module.named_modules())

    def keep(name: str) -> Any:
        def hook(_module: torch.nn.Module, _inputs: Any, out: torch.Tensor) -> None:  # returns None: output kept
            if name not in seen:
                seen[name] = out.detach().clone()

        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def hand_map(out: torch.Tensor, prefix: int, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """A token output (1, T, D) reshaped by hand: on ``grid`` after ``prefix`` tokens when T says so, else a
    stage's square grid without prefix. (maps (D, H, W), prefix tokens (prefix, D) or None)."""
    tokens = out[0]
    count, dim = tokens.shape
    if count == prefix + grid[0] * grid[1]:
        patches = tokens[prefix:]
        h, w = grid
    else:
        prefix, side = 0, int(round(count**0.5))
        assert side * side == count, f"{count} tokens are neither prefix + the patch grid nor a square stage"
        patches, h, w = tokens, side, side
    maps = patches.T.reshape(dim, h, w).numpy()
    return maps, (tokens[:prefix].numpy() if prefix else None)


# model, its kwargs, the size it is fed, its prefix tokens, its patch grid
MODELS = {
    "vit": ("vit_tiny_patch16_224", {}, None, 1, (14, 14)),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", {}, None, 2, (14, 14)),
    "dinov2_reg4": ("vit_small_patch14_reg4_dinov2", {"img_size": 112}, (112, 112), 5, (8, 8)),
    "eva02": ("eva02_tiny_patch14_224", {}, None, 1, (16, 16)),
    "swin": ("swin_tiny_patch4_window7_224", {}, None, 0, (56, 56)),
    "maxvit": ("maxvit_rmlp_pico_rw_256", {}, None, 0, (64, 64)),
    "convnext": ("convnext_atto", {}, None, 0, (56, 56)),
    "convnext_nhwc": ("convnext_atto", {"conv_mlp": False}, None, 0, (56, 56)),
}


def load(key: str) -> LoadedModel:
    name, kwargs, size, _prefix, _grid = MODELS[key]
    return timm_model(name, size, **kwargs)


# ---------------------------------------------------------------------------------------------------
# Real architectures


@pytest.mark.parametrize("key", list(MODELS))
def test_maps_equal_a_hand_reshape_of_a_plain_hook_and_no_attention_internal_is_listed(key: str) -> None:
    model = load(key)
    _name, _kwargs, _size, prefix, grid = MODELS[key]
    maps = [info for info in list_layers(model) if info.spatial]
    assert not [i.name for i in maps if any(part in i.name.split(".") for part in INTERNAL)]
    reshaped = [i for i in maps if i.layout is not None and i.layout.kind != "channels_first"]
    image = random_image(1, size=(model.input_size[1] + 20, model.input_size[0] + 10))
    got = extract(model, image, [i.name for i in maps])
    first_calls = [i for i in maps if i.call == 1]
    plain = plain_outputs(model.module, [i.module_name for i in first_calls], model.preprocess(image))
    for info in first_calls:
        out = plain[info.module_name]
        assert info.layout is not None
        if info.layout.kind == "tokens":
            expected, first = hand_map(out, prefix, grid)
            np.testing.assert_array_equal(got.activations[info.name], expected, err_msg=info.name)
            if first is None:
                assert info.name not in got.prefix
            else:
                np.testing.assert_array_equal(got.prefix[info.name], first, err_msg=info.name)
        elif info.layout.kind == "channels_last":
            np.testing.assert_array_equal(got.activations[info.name], out[0].permute(2, 0, 1).numpy())
        else:
            assert out.ndim == 4 and tuple(out.shape[1:]) == info.shape
            np.testing.assert_array_equal(got.activations[info.name], out[0].numpy(), err_msg=info.name)
        h, w = info.shape[1:]  # every map is on the patch grid, a stage's grid, or the input at a stride
        stages = {(-(-grid[0] // 2**k), -(-grid[1] // 2**k)) for k in range(5)}
        strides = {(model.input_size[0] // 2**k, model.input_size[1] // 2**k) for k in range(6)}
        assert (h, w) in stages | strides, info.label
    if key in ("vit", "deit_distilled", "dinov2_reg4", "eva02", "swin", "convnext_nhwc"):
        assert reshaped, "token or channels-last maps expected"
    assert hook_count(model.module) == 0


def test_vit_default_layers_and_labels() -> None:
    vit = load("vit")
    assert default_layer(vit) == "blocks.5"
    assert layer_info(vit, "blocks.5").label == "blocks.5 · Block · tokens 192×14×14"
    assert layer_info(vit, "patch_embed.proj").label == "patch_embed.proj · Conv2d · 192×14×14"
    assert layer_info(vit, "blocks.5").layout == MapLayout("tokens", 192, 14, 14, 1)
    assert not layer_info(vit, "blocks.5.attn.k_norm", spatial=False).spatial
    assert not layer_info(vit, "blocks.5.attn.qkv", spatial=False).spatial
    assert default_cam_layer(vit) == "blocks.11.norm1"
    deit = load("deit_distilled")
    assert default_cam_layer(deit) == "blocks.11.norm1" and layer_info(deit, "blocks.3").layout.prefix == 2
    assert layer_info(load("dinov2_reg4"), "blocks.0").layout == MapLayout("tokens", 384, 8, 8, 5)
    assert default_cam_layer(load("swin")) == "norm"  # as before: the last stage's (N, H, W, C) norm


@pytest.mark.parametrize(
    ("kwargs", "size", "grid"),
    [({"img_size": (224, 160)}, (224, 160), (14, 10)), ({"dynamic_img_size": True}, (160, 224), (10, 14))],
)
def test_a_non_square_input_gives_a_non_square_grid(kwargs: dict[str, Any], size: tuple[int, int], grid) -> None:
    model = timm_model("vit_tiny_patch16_224", size, **kwargs)
    info = layer_info(model, "blocks.5")
    assert info.shape == (192, *grid) and info.layout.prefix == 1
    image = random_image(2, size=(size[1], size[0]))
    got = extract(model, image, ["blocks.5"])
    out = plain_outputs(model.module, ["blocks.5"], model.preprocess(image))["blocks.5"]
    expected, first = hand_map(out, 1, grid)
    np.testing.assert_array_equal(got.activations["blocks.5"], expected)
    np.testing.assert_array_equal(got.prefix["blocks.5"], first)


# ---------------------------------------------------------------------------------------------------
# Hugging Face transformers, read through config and attributes


def _hf(kind: str) -> tuple[LoadedModel, int]:
    tr = pytest.importorskip("transformers")
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    builders = {
        "vit": (tr.ViTConfig, tr.ViTForImageClassification, dict(small, image_size=64, patch_size=16), 1),
        "deit": (tr.DeiTConfig, tr.DeiTForImageClassificationWithTeacher, dict(small, image_size=64, patch_size=16), 2),
        "dinov2_registers": (
            tr.Dinov2WithRegistersConfig, tr.Dinov2WithRegistersForImageClassification,
            dict(small, image_size=56, patch_size=14, num_register_tokens=4), 5,
        ),
        "clip": (tr.CLIPVisionConfig, tr.CLIPVisionModel, dict(small, image_size=64, patch_size=16), 1),
        "swin": (
            tr.SwinConfig, tr.SwinForImageClassification,
            {"image_size": 64, "patch_size": 4, "embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4},
            0,
        ),
    }  # fmt: skip
    config_class, model_class, config, prefix = builders[kind]
    torch.manual_seed(0)
    module = model_class(config_class(**config)).eval()
    size = (config["image_size"], config["image_size"])
    transform, view = standard_preprocessing(size, 3)
    model = LoadedModel(
        module=module, name=f"hf-{kind}", key=f"test:hf:{kind}", categories=None, input_channels=3,
        input_size=size, transform=transform, view=view, source="test", provenance="random transformers model",
    )
    return model, prefix


@pytest.mark.parametrize("kind", ["vit", "deit", "dinov2_registers", "clip", "swin"])
def test_hugging_face_models_are_read_from_their_config(kind: str) -> None:
    model, prefix = _hf(kind)
    grid = (model.input_size[0] // model.module.config.patch_size,) * 2
    stated = token_grid(model.module, model.input_size)
    assert stated is not None and grid in stated.grids and stated.prefix == prefix
    maps = [i for i in list_layers(model) if i.spatial]
    assert not [i.name for i in maps if any(part in i.name.split(".") for part in INTERNAL)]
    tokens = [i for i in maps if i.tokens and i.call == 1]
    assert tokens and all(i.layout.prefix in (0, prefix) for i in tokens)
    image = random_image(3, size=(80, 70))
    got = extract(model, image, [i.name for i in tokens])
    plain = plain_outputs(model.module, [i.module_name for i in tokens], model.preprocess(image))
    for info in tokens:
        expected, first = hand_map(plain[info.module_name], info.layout.prefix, grid)
        np.testing.assert_array_equal(got.activations[info.name], expected, err_msg=info.name)
    if kind == "swin":  # the stages' (N, L, C) outputs: 16×16 patches, then 8×8 after the patch merging
        assert {i.shape[1:] for i in tokens} == {(16, 16), (8, 8)}
    else:
        assert all(i.layout.prefix == prefix for i in tokens if "encoder" in i.name or "layers." in i.name)
        first_norm = {"vit": "vit.layers.1.layernorm_before", "deit": "deit.layers.1.layernorm_before",
                      "clip": "encoder.layers.1.layer_norm1",
                      "dinov2_registers": "dinov2_with_registers.encoder.layer.1.norm1"}
        assert default_cam_layer(model) == first_norm[kind]


def test_torchvision_vit_is_read_from_its_attributes() -> None:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(image_size=64, patch_size=16, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64)
    transform, view = standard_preprocessing((64, 64), 3)
    model = LoadedModel(
        module=net.eval(), name="tv-vit", key="test:tv-vit", categories=None, input_channels=3, input_size=(64, 64),
        transform=transform, view=view, source="test", provenance="random torchvision ViT",
    )
    assert token_grid(net, (64, 64)) == TokenGrid(((4, 4),), 1, True, "torchvision")
    assert default_layer(model) == "encoder.layers.encoder_layer_1"
    assert default_cam_layer(model) == "encoder.layers.encoder_layer_2.ln_1"
    image = random_image(4)
    name = "encoder.layers.encoder_layer_1"
    got = extract(model, image, [name])
    expected, first = hand_map(plain_outputs(net, [name], model.preprocess(image))[name], 1, (4, 4))
    np.testing.assert_array_equal(got.activations[name], expected)
    np.testing.assert_array_equal(got.prefix[name], first)


# ---------------------------------------------------------------------------------------------------
# The rules, one by one

VIT = TokenGrid(((14, 14),), prefix=1)


@pytest.mark.parametrize(
    ("shape", "tokens", "name", "expected"),
    [
        ((1, 197, 192), VIT, "blocks.5", MapLayout("tokens", 192, 14, 14, 1)),
        ((1, 196, 192), VIT, "patch_embed.norm", MapLayout("tokens", 192, 14, 14, 0)),
        ((1, 50, 384), VIT, "stage", MapLayout("tokens", 384, 7, 7, 1)),  # a stage's grid: 14 / 2
        ((1, 192, 14, 14), VIT, "patch_embed.proj", MapLayout("channels_first", 192, 14, 14)),
        ((1, 14, 14, 192), VIT, "patch_embed", MapLayout("channels_last", 192, 14, 14)),
        ((1, 3, 197, 64), VIT, "blocks.5.attn.k_norm", None),  # heads × tokens × head dim
        ((1, 3, 197, 64), VIT, "x", None),
        ((1, 3, 197, 197), VIT, "blocks.5.attn.attn_drop", None),  # an attention matrix
        ((1, 3, 197, 197), VIT, "x", None),
        ((1, 197, 576), VIT, "blocks.5.attn.qkv", None),
        ((1, 200, 192), VIT, "x", None),  # the model states its grid: 200 tokens are not on it
        ((64, 49, 96), VIT, "x", None),  # windows folded into the batch
        ((1, 192), VIT, "head", None),
        ((1, 512, 1, 1), None, "global_pool", None),
        ((1, 256, 56, 56), None, "layer1", MapLayout("channels_first", 256, 56, 56)),
        ((1, 56, 56, 96), None, "norm", MapLayout("channels_last", 96, 56, 56)),
        ((1, 3, 197, 64), None, "x", None),  # fits no reading at this size: only a second size could tell
    ],
)
def test_read_output(shape, tokens, name: str, expected: MapLayout | None) -> None:
    reading = read_output(shape, (224, 224), tokens, name=name)
    assert reading.layout == expected
    if expected is not None:
        assert reading.sure


def test_a_model_that_says_nothing_gets_a_grid_only_when_a_second_size_confirms_it() -> None:
    reading = read_output((1, 50, 32), (112, 112), None)  # 1 + 7×7, exactly the input's aspect
    assert not reading.sure and reading.layout == MapLayout("tokens", 32, 7, 7, 1)
    assert confirm_output((1, 50, 32), (112, 112), (1, 197, 32), (224, 224)) == MapLayout("tokens", 32, 7, 7, 1)
    assert confirm_output((1, 50, 32), (112, 112), (1, 50, 32), (224, 224)) is None  # does not scale
    assert read_output((1, 380, 196), (224, 224), None).layout is None  # 20×19: not the input's aspect
    # 56 channels on a 56 px input: either reading fits; the second size shows which axes are positions
    assert confirm_output((1, 56, 56, 56), (56, 56), (1, 88, 88, 56), (88, 88)) == MapLayout("channels_last", 56, 56, 56)
    assert confirm_output((1, 56, 56, 56), (56, 56), (1, 56, 88, 88), (88, 88)) == MapLayout("channels_first", 56, 56, 56)
    assert confirm_output((1, 3, 197, 197), (224, 224), (1, 3, 50, 50), (112, 112)) is None  # T ~ area, not side


def test_to_chw_is_a_differentiable_view_and_from_chw_its_inverse() -> None:
    layout = MapLayout("tokens", 4, 2, 3, prefix=2)
    tokens = torch.randn(2, 8, 4, requires_grad=True)
    chw = to_chw(tokens, layout)
    assert chw.shape == (2, 4, 2, 3)
    assert torch.equal(chw[1, :, 1, 2], tokens[1, 2 + 1 * 3 + 2])  # channels = embedding, row-major grid
    chw[0, 3, 0, 1].backward()
    assert tokens.grad is not None and tokens.grad[0, 3, 3] == 1 and tokens.grad.sum() == 1
    head = prefix_tokens(tokens, layout)
    assert head is not None and torch.equal(head, tokens[:, :2])
    assert torch.equal(from_chw(chw, layout, head), tokens)
    nhwc = torch.randn(1, 2, 3, 4)
    assert torch.equal(from_chw(to_chw(nhwc, MapLayout("channels_last", 4, 2, 3)), MapLayout("channels_last", 4, 2, 3)), nhwc)
    assert prefix_tokens(nhwc, MapLayout("channels_last", 4, 2, 3)) is None
    # the same layer at another input size (feature visualization's picture size): the layout's aspect
    assert to_chw(torch.randn(1, 1 + 16, 8), MapLayout("tokens", 8, 14, 14, 1)).shape == (1, 8, 4, 4)
