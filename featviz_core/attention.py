"""What a vision transformer's attention does: the class token's attention to every patch, per head, and attention
rollout across blocks (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers").

The weights are the ones the model computes: timm's attention modules normally use PyTorch's fused
``scaled_dot_product_attention``, which never materialises them. Two ways to read them, both under the model's lock:

- timm's standard ``Attention`` (ViT, DeiT, DINOv2, CLIP towers): q and k leave its ``q_norm`` and ``k_norm`` exactly
  as they enter the fused kernel, so :class:`~featviz_core.layers.hooks.Tap` s keep them, the model runs its fused
  kernel as usual, and ``softmax(q kᵀ · scale)`` is computed here for the rows needed: the prefix tokens' rows for
  "cls"; for rollout every row, in chunks of queries small enough for the CPU's cache, folded at once into the
  class token's flow (never a tokens × tokens matrix per head: a 518 px DINOv2 has 1370 tokens);
- any other attention module (EVA's rotary embedding comes after ``q_norm``): for one forward pass it runs its own
  non-fused path (``fused_attn = False``, the same arithmetic) and a tap keeps the probabilities where the module
  hands them to its ``attn_drop`` (an identity in eval mode), averaged over heads at once for rollout. The flags are
  restored in ``finally``.

Either way the pass stops once the last block asked for has its attention. Hugging Face transformers' ViT, DeiT,
DINOv2 and CLIP towers are read the same way from their attention modules' ``q_proj`` and ``k_proj``
(:mod:`featviz_core.attention_hf`); their blocks are the encoder layers by module name (``vit.layers.11``).

What these maps do not prove: attention says where a token reads from, not what the model's decision depends on
(Jain & Wallace, 2019); the class token's attention in the last block can be diffuse while the decision is sharp,
and rollout assumes that the residual path and the heads mix linearly. Read them beside a CAM and its sanity check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from .attention_hf import hf_attention, hf_q_and_k
from .errors import LayerError
from .layers.hooks import ActivationRecorder, Tap
from .models.loaded import LoadedModel

__all__ = ["AttentionResult", "AttentionSetup", "attention", "attention_blocks"]

Method = Literal["cls", "rollout"]
_CHUNK_VALUES = 90_000  # scores per head per step of rollout's softmax: 64 queries × 1370 tokens (6 heads: 2 MB)


@dataclass(frozen=True)
class AttentionSetup:
    """Where a model's global token attention is: its attention modules in order, the patch grid for its input
    size and the tokens before the patches (``prefix``: class, distillation, register tokens, by name)."""

    blocks: tuple[str, ...]
    grid: tuple[int, int]
    prefix: tuple[str, ...]
    hf_modules: tuple[str, ...] = ()
    """For a Hugging Face model, each block's attention module (read through its ``q_proj``/``k_proj``); empty for
    timm, whose blocks are the attention modules themselves."""


@dataclass(frozen=True, eq=False)
class AttentionResult:
    """Attention maps on the patch grid.

    ``maps`` float32 (heads, H, W): for ``method="cls"`` the class token's attention to every patch at ``block``,
    one map per head (or the one head asked for, see ``heads``); for ``"rollout"`` one map, the attention flow from
    the input's patches to the class token through every block up to ``block``. ``prefix_share`` (heads,) is the
    part of the class token's attention that goes to the prefix tokens (itself, distillation and register tokens)
    rather than to patches; ``registers`` (R, H, W) the head-averaged attention of each register token to the
    patches (None without registers). Every map sums, over the grid, to the attention its token pays to patches.
    """

    method: Method
    block: str
    blocks: tuple[str, ...]
    heads: tuple[int, ...]
    grid: tuple[int, int]
    prefix: tuple[str, ...]
    maps: np.ndarray
    prefix_share: np.ndarray
    registers: np.ndarray | None

    @property
    def mean(self) -> np.ndarray:
        """(H, W): the maps averaged over heads."""
        return self.maps.mean(axis=0)


def _attention_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """timm's attention modules that can run their non-fused path: ``fused_attn`` flag and an ``attn_drop`` child."""
    return [
        (name, m) for name, m in module.named_modules()
        if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)
    ]


def _prefix_names(module: nn.Module) -> tuple[str, ...] | None:
    """The names of the tokens before the patches, in timm's order (class, distillation, registers)."""
    count = getattr(module, "num_prefix_tokens", None)
    if count is None:
        return None
    names = []
    if getattr(module, "cls_token", None) is not None:
        names.append("class token")
    if getattr(module, "dist_token", None) is not None:
        names.append("distillation token")
    registers = int(getattr(module, "num_reg_tokens", 0) or 0)
    names += [f"register {i + 1}" for i in range(registers)]
    return tuple(names) if len(names) == int(count) else None


def attention_blocks(model: LoadedModel) -> AttentionSetup | None:
    """The model's global attention (a timm or a Hugging Face vision transformer), or None when it has none featviz
    can read (a CNN; Swin's and MaxViT's windowed attention, which has no class token; BEiT's relative position
    bias; a model run outside PyTorch)."""
    module = model.module
    patch_embed = getattr(module, "patch_embed", None)
    prefix = _prefix_names(module)
    if patch_embed is None or not prefix or "class token" not in prefix:
        hf = hf_attention(model)
        return None if hf is None else AttentionSetup(blocks=hf.blocks, grid=hf.grid, prefix=hf.prefix,
                                                      hf_modules=hf.modules)
    blocks = tuple(name for name, _ in _attention_modules(module))
    if not blocks:
        return None
    patch = getattr(patch_embed, "patch_size", None)
    if patch is None:
        return None
    ph, pw = (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))
    height, width = model.input_size
    return AttentionSetup(blocks=blocks, grid=(height // ph, width // pw), prefix=prefix)


@contextmanager
def _unfused(modules: list[nn.Module]) -> Iterator[None]:
    """Each attention module on its non-fused path for the ``with`` block; its flag restored after."""
    flags = [m.fused_attn for m in modules]
    try:
        for m in modules:
            m.fused_attn = False
        yield
    finally:
        for m, flag in zip(modules, flags, strict=True):
            m.fused_attn = flag


def _head_mean(weights: torch.Tensor) -> torch.Tensor:
    """(N, heads, T, T) -> (N, 1, T, T): a block's attention averaged over its heads, all rollout needs of it."""
    return weights.mean(dim=1, keepdim=True)


def _weights(model: LoadedModel, image: Image.Image, blocks: tuple[str, ...]) -> list[torch.Tensor]:
    """The attention probabilities of ``blocks`` for ``image``, float32 on the CPU: (heads, T, T) for the last one;
    for the others (rollout) their mean over heads (1, T, T), taken as the pass runs, so a 518 px DINOv2 holds
    7.5 MB per block instead of 45 MB. The pass stops after the last block asked for."""
    modules = dict(model.module.named_modules())
    last = len(blocks) - 1
    taps = [
        Tap(f"{name}.attn_drop", clone=False, reduce=None if i == last else _head_mean, stop=i == last)
        for i, name in enumerate(blocks)
    ]
    tensor = model.preprocess(image).to(model.device)
    with (
        ActivationRecorder(model.module, taps=taps, lock=model.lock) as recorder,
        _unfused([modules[name] for name in blocks]),
        torch.inference_mode(),
    ):
        recorder.run(tensor)
    kept = [recorder.outputs.get(tap.layer) for tap in taps]
    if any(k is None or k.ndim != 4 or k.shape[-1] != k.shape[-2] for k in kept):
        raise _no_weights(model)
    return [k[0].to("cpu", torch.float32) for k in kept if k is not None]


def _reads_q_and_k(module: nn.Module) -> bool:
    """timm's standard ``Attention``, whose q and k leave ``q_norm`` and ``k_norm`` as they enter the fused kernel."""
    try:
        from timm.layers.attention import Attention
    except ImportError:  # pragma: no cover - timm is in requirements.txt
        return False
    return type(module) is Attention


def _no_weights(model: LoadedModel) -> LayerError:
    return LayerError(
        f"{model.name} did not show its attention weights for this image; attention maps need a vision transformer "
        "from timm (ViT, DeiT, EVA, DINOv2, CLIP towers) or Hugging Face transformers (ViT, DeiT, DINOv2, CLIP)."
    )


def _rollout_step(flow: torch.Tensor, q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """``flow`` (T,) carried through one block: ``flow @ ((A + I) / row sums)`` with ``A`` the block's attention
    ``softmax(q kᵀ · scale)`` (q, k: (heads, T, d)) averaged over heads, computed a cache-sized chunk of queries
    (:data:`_CHUNK_VALUES` scores per head) at a time: one chunk for a 224 px ViT, 22 for a 518 px DINOv2."""
    keys = k.transpose(-2, -1)
    out = torch.zeros_like(flow)
    tokens = int(q.shape[-2])
    rows = max(1, _CHUNK_VALUES // tokens)
    for start in range(0, tokens, rows):
        stop = start + rows
        a = torch.softmax((q[:, start:stop] * scale) @ keys, dim=-1).mean(dim=0).to(torch.float64)
        weight = flow[start:stop] / (a.sum(dim=-1) + 1.0)
        out += weight @ a
        out[start:stop] += weight
    return out


def _timm_q_and_k(
    model: LoadedModel, image: Image.Image, blocks: tuple[str, ...]
) -> list[tuple[torch.Tensor, torch.Tensor, float]] | None:
    """timm's standard attention: each block's q and k (heads, T, d) as they leave ``q_norm`` and ``k_norm``."""
    modules = dict(model.module.named_modules())
    taps = [Tap(f"{name}.{part}", stop=name == blocks[-1] and part == "k_norm")
            for name in blocks for part in ("q_norm", "k_norm")]
    tensor = model.preprocess(image).to(model.device)
    with ActivationRecorder(model.module, taps=taps, lock=model.lock) as recorder, torch.inference_mode():
        recorder.run(tensor)
    pairs = [(recorder.outputs.get(f"{name}.q_norm"), recorder.outputs.get(f"{name}.k_norm")) for name in blocks]
    qk = [(q[0].to("cpu", torch.float32), k[0].to("cpu", torch.float32), float(modules[name].scale))
          for name, (q, k) in zip(blocks, pairs, strict=True) if q is not None and k is not None and q.ndim == k.ndim == 4]
    return qk if len(qk) == len(blocks) else None


def _read(
    model: LoadedModel, image: Image.Image, setup: AttentionSetup, blocks: tuple[str, ...], rollout: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The last block's attention rows of the prefix tokens (heads, prefix, T) and, with ``rollout``, the class
    token's flow through ``blocks`` (T,), both float64 on the CPU."""
    n_prefix = len(setup.prefix)
    if setup.hf_modules:
        qk = hf_q_and_k(model, image, tuple(setup.hf_modules[setup.blocks.index(name)] for name in blocks))
    else:
        modules = dict(model.module.named_modules())
        if not all(_reads_q_and_k(modules[name]) for name in blocks):
            weights = _weights(model, image, blocks)
            last = weights[-1]
            rows = last[:, :n_prefix].to(torch.float64)
            return rows, _rollout([*weights[:-1], last.mean(dim=0)]) if rollout else None
        qk = _timm_q_and_k(model, image, blocks)
    if qk is None:
        raise _no_weights(model)
    with torch.inference_mode():
        q, k, scale = qk[-1]
        rows = torch.softmax((q[:, :n_prefix].to(torch.float64) * scale) @ k.to(torch.float64).transpose(-2, -1), -1)
        if not rollout:
            return rows, None
        flow = torch.zeros(int(q.shape[-2]), dtype=torch.float64)
        flow[0] = 1.0
        for q, k, scale in reversed(qk):
            flow = _rollout_step(flow, q, k, scale)
    return rows, flow


def _rollout(means: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout's row of the class token (T,), float64: per block the head-averaged attention ``A`` plus
    the identity (the residual path), rows renormalised, multiplied from the first block on; the class token's row
    of that product is carried from the last block down as a vector (T² per block, never a T×T product)."""
    flow = torch.zeros(means[0].shape[-1], dtype=torch.float64)
    flow[0] = 1.0
    for mean in reversed(means):
        a = mean.reshape(mean.shape[-2:]).to(torch.float64)
        scaled = flow / (a.sum(dim=-1) + 1.0)  # row i of (A + I) / its sum, weighted by flow[i]
        flow = scaled @ a + scaled
    return flow


def attention(
    model: LoadedModel,
    image: Image.Image,
    block: str | None = None,
    *,
    method: Method = "cls",
    head: int | None = None,
) -> AttentionResult:
    """The attention maps of ``model`` for ``image`` at ``block`` (a name from ``attention_blocks(model).blocks``;
    default: the last block): the class token's attention per head (``method="cls"``; ``head`` picks one) or the
    rollout through every block up to ``block``. LayerError saying what to do for a model without global token
    attention, an unknown block or head."""
    setup = attention_blocks(model)
    if setup is None:
        raise LayerError(
            f"{model.name} has no attention from a class token to image patches; attention maps are for vision "
            "transformers (ViT, DeiT, EVA, DINOv2, CLIP towers). Use Where it looks for a CAM instead."
        )
    if method not in ("cls", "rollout"):
        raise LayerError(f"Attention method '{method}' is unknown; choose 'cls' or 'rollout'.")
    name = setup.blocks[-1] if block is None else block
    if name not in setup.blocks:
        raise LayerError(f"'{name}' is not an attention block of {model.name}; choose one of {setup.blocks[0]} … "
                         f"{setup.blocks[-1]}.")
    upto = setup.blocks[: setup.blocks.index(name) + 1]
    n_prefix = len(setup.prefix)
    rows, flow = _read(model, image, setup, upto if method == "rollout" else (name,), method == "rollout")
    heads_count = int(rows.shape[0])
    if head is not None and not 0 <= head < heads_count:
        raise LayerError(f"{model.name} has {heads_count} attention heads (0 to {heads_count - 1}); head {head} "
                         "does not exist.")
    h, w = setup.grid
    if int(rows.shape[-1]) != n_prefix + h * w:
        raise LayerError(
            f"{model.name} attends over {int(rows.shape[-1])} tokens, not {n_prefix} + {h}×{w} patches; featviz "
            "cannot place them on the image."
        )
    if flow is not None:
        maps = flow[n_prefix:].reshape(1, h, w)
        heads: tuple[int, ...] = ()
    else:
        chosen = range(heads_count) if head is None else [head]
        heads = tuple(chosen)
        maps = rows[list(chosen), 0, n_prefix:].reshape(len(heads), h, w)
    share = rows[:, 0, :n_prefix].sum(dim=-1)
    registers = [i for i, token in enumerate(setup.prefix) if token.startswith("register")]
    register_maps = (
        rows.mean(dim=0)[registers, n_prefix:].reshape(len(registers), h, w).numpy().astype(np.float32)
        if registers else None
    )
    return AttentionResult(
        method=method, block=name, blocks=setup.blocks, heads=heads, grid=setup.grid, prefix=setup.prefix,
        maps=maps.numpy().astype(np.float32), prefix_share=share.numpy().astype(np.float32), registers=register_maps,
    )
