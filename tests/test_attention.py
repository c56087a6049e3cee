"""featviz_core.attention: the class token's attention equals softmax(q kᵀ / √d) from the block's own q and k; rollout
equals a short reference written here; prefix tokens (distillation, registers) are placed right; the model is left
as it was."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from featviz_core import LayerError, attention, load_demo, load_timm
from featviz_core.attention import attention_blocks
from featviz_core.layers import hook_count
from tests.conftest import random_image


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return load_timm("vit_tiny_patch16_224", pretrained=False)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return random_image(seed=3, size=(256, 240))


def _q_and_k(model, image: Image.Image, block: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The block's q and k as the module computes them (after q_norm / k_norm), by a plain hook in this test."""
    kept: dict[str, torch.Tensor] = {}
    attn = model.module.blocks[block].attn
    handles = [
        attn.q_norm.register_forward_hook(lambda _m, _i, out: kept.__setitem__("q", out.detach().clone())),
        attn.k_norm.register_forward_hook(lambda _m, _i, out: kept.__setitem__("k", out.detach().clone())),
    ]
    try:
        with torch.inference_mode():
            model.module(model.preprocess(image))
    finally:
        for handle in handles:
            handle.remove()
    return kept["q"][0].double(), kept["k"][0].double(), attn.head_dim ** -0.5


def test_cls_attention_is_softmax_of_the_blocks_own_q_and_k(vit, photo) -> None:
    q, k, scale = _q_and_k(vit, photo, 7)
    expected = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1)  # (heads, T, T)
    result = attention(vit, photo, "blocks.7.attn")
    assert result.maps.shape == (3, 14, 14) and result.maps.dtype == np.float32
    want = expected[:, 0, 1:].reshape(3, 14, 14).numpy()
    np.testing.assert_allclose(result.maps, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.prefix_share, expected[:, 0, 0].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.maps.sum(axis=(1, 2)) + result.prefix_share, 1.0, atol=1e-5)
    one = attention(vit, photo, "blocks.7.attn", head=2)
    assert one.heads == (2,) and np.allclose(one.maps[0], want[2], rtol=1e-4, atol=1e-6)
    assert result.prefix == ("class token",) and result.registers is None


def _reference_rollout(per_block: list[np.ndarray]) -> np.ndarray:
    """Abnar & Zuidema (2020): A = 0.5 · mean_heads(W) + 0.5 · I per block, multiplied from the first block."""
    joint = None
    for weights in per_block:
        a = 0.5 * weights.mean(axis=0) + 0.5 * np.eye(weights.shape[-1])
        joint = a if joint is None else a @ joint
    assert joint is not None
    return joint


def test_rollout_equals_a_reference_written_here(vit, photo) -> None:
    per_block = []
    for block in range(6):
        q, k, scale = _q_and_k(vit, photo, block)
        per_block.append(torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1).numpy())
    expected = _reference_rollout(per_block)[0, 1:].reshape(1, 14, 14)
    result = attention(vit, photo, "blocks.5.attn", method="rollout")
    assert result.maps.shape == (1, 14, 14) and result.heads == ()
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-7)


def test_distillation_and_register_tokens_are_prefix_tokens(photo) -> None:
    torch.manual_seed(0)
    deit = load_timm("deit_tiny_distilled_patch16_224", pretrained=False)
    result = attention(deit, photo)
    assert result.prefix == ("class token", "distillation token") and result.maps.shape == (3, 14, 14)
    np.testing.assert_allclose(result.maps.sum(axis=(1, 2)) + result.prefix_share, 1.0, atol=1e-5)

    torch.manual_seed(0)
    reg = load_timm("vit_small_patch14_reg4_dinov2", pretrained=False)
    setup = attention_blocks(reg)
    assert setup is not None
    assert setup.prefix == ("class token", "register 1", "register 2", "register 3", "register 4")
    result = attention(reg, photo, setup.blocks[3])
    h, w = setup.grid
    assert result.maps.shape == (6, h, w) and result.registers is not None and result.registers.shape == (4, h, w)
    q, k, scale = _q_and_k(reg, photo, 3)
    weights = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1).mean(dim=0)
    np.testing.assert_allclose(result.registers, weights[1:5, 5:].reshape(4, h, w).numpy(), rtol=1e-4, atol=1e-6)


def test_both_ways_of_reading_the_weights_agree(vit, photo, monkeypatch) -> None:
    """timm's standard Attention is read from its q and k (the model keeps its fused kernel); any other attention
    module runs its non-fused path. Forced onto the second way, a ViT gives the same maps."""
    attention_module = importlib.import_module("featviz_core.attention")  # (the package's name is the function)
    assert attention_module._reads_q_and_k(vit.module.blocks[0].attn)
    monkeypatch.setattr(attention_module, "_CHUNK_VALUES", 197 * 16)  # rollout in chunks of 16 queries
    fast = [attention(vit, photo, "blocks.6.attn"), attention(vit, photo, "blocks.9.attn", method="rollout")]
    monkeypatch.setattr(attention_module, "_reads_q_and_k", lambda _module: False)
    slow = [attention(vit, photo, "blocks.6.attn"), attention(vit, photo, "blocks.9.attn", method="rollout")]
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a.maps, b.maps, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(a.prefix_share, b.prefix_share, rtol=1e-4, atol=1e-6)
    assert not np.allclose(fast[0].maps.mean(axis=0), fast[1].maps[0], atol=1e-4)  # cls and rollout differ
    assert hook_count(vit.module) == 0


def test_the_pass_stops_after_the_block_asked_for(vit, photo) -> None:
    ran: list[str] = []
    handles = [vit.module.blocks[i].register_forward_hook(lambda *_a, i=i: ran.append(f"blocks.{i}"))
               for i in (2, 3, 4)] + [vit.module.head.register_forward_hook(lambda *_a: ran.append("head"))]
    try:
        attention(vit, photo, "blocks.3.attn")
        attention(vit, photo, "blocks.3.attn", method="rollout")
    finally:
        for handle in handles:
            handle.remove()
    assert ran == ["blocks.2", "blocks.2"]  # blocks.3 stops inside its attention; nothing after it runs
    assert hook_count(vit.module) == 0


def test_the_model_is_left_as_it_was_also_after_an_error(vit, photo, monkeypatch) -> None:
    flags = [b.attn.fused_attn for b in vit.module.blocks]
    attention(vit, photo, method="rollout")
    assert [b.attn.fused_attn for b in vit.module.blocks] == flags
    assert hook_count(vit.module) == 0 and not vit.module.training

    def boom(*_args: object) -> None:
        raise RuntimeError("forward failed")

    monkeypatch.setattr(vit.module.blocks[4], "forward", boom)
    with pytest.raises(RuntimeError, match="forward failed"):
        attention(vit, photo)
    assert [b.attn.fused_attn for b in vit.module.blocks] == flags and hook_count(vit.module) == 0
    assert vit.lock.acquire(blocking=False), "the lock is released after an exception"
    vit.lock.release()


def test_models_without_global_attention_get_a_sentence(vit, photo) -> None:
    with pytest.raises(LayerError, match="attention maps are for vision transformers"):
        attention(load_demo(), photo)
    swin = load_timm("swin_tiny_patch4_window7_224", pretrained=False)
    assert attention_blocks(swin) is None  # windowed attention, no class token
    with pytest.raises(LayerError, match="is not an attention block"):
        attention(vit, photo, "blocks.12.attn")
    with pytest.raises(LayerError, match="head 3 does not exist"):
        attention(vit, photo, head=3)
