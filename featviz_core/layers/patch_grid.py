"""What a vision model says about its tokens: the patch grid at an input size and the tokens before the patches.

Read from the model's own attributes, never guessed from a token count: timm's patch embedding (``grid_size``,
``patch_size``, ``dynamic_feat_size``, ``dynamic_img_size``) and ``num_prefix_tokens`` (or its ``cls_token``,
``dist_token``, ``reg_token``); Hugging Face transformers' ``config.patch_size``/``image_size`` with the actual
input size and its embeddings' class, distillation and register tokens (transformers is never imported);
torchvision's ViT (``patch_size``, ``class_token``). :mod:`featviz_core.layers.layout` uses it to decide which outputs are token maps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["MAX_STAGES", "TokenGrid", "token_grid"]

MAX_STAGES = 4
"""A stage grid is the patch grid downsampled by 2^k, k <= MAX_STAGES (Swin, PiT, LeViT, MViT stages)."""


@dataclass(frozen=True)
class TokenGrid:
    """What a model says about its tokens at one input size.

    ``grids``: its patch grid(s) (H, W) at that size (several for a model with several patch sizes, such as
    CrossViT); ``prefix``: how many tokens come before the patches; ``raster``: False when the tokens are not
    in row-major order (Hiera's unrolled order), so no token output is a map; ``source``: where it was read.
    """

    grids: tuple[tuple[int, int], ...]
    prefix: int = 0
    raster: bool = True
    source: str = ""

    def stage_grids(self) -> tuple[tuple[int, int], ...]:
        """The patch grids and the stages' grids below them (each side halved k times, floor or ceil), at
        least 2×2, the patch grids first."""
        found: dict[tuple[int, int], None] = {}
        for k in range(MAX_STAGES + 1):
            for height, width in self.grids:
                step = 2**k
                for h in {height // step, -(-height // step)}:
                    for w in {width // step, -(-width // step)}:
                        if h >= 2 and w >= 2:
                            found.setdefault((h, w))
        return tuple(found)

    def token_counts(self) -> frozenset[int]:
        """Every T a token output on one of :meth:`stage_grids` can have (with or without the prefix)."""
        return frozenset(p + h * w for h, w in self.stage_grids() for p in {0, self.prefix})


# ---------------------------------------------------------------------------------------------------
# Reading the model


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    return None


def _token_count(value: Any) -> int:
    """How many tokens a class/distillation/register parameter adds: (1, n, D) -> n, (D,) -> 1."""
    if not isinstance(value, torch.Tensor):
        return 0
    if value.ndim >= 3:
        return int(value.shape[-2])
    return 1 if value.ndim >= 1 else 0


def _candidates(module: nn.Module) -> Iterator[nn.Module]:
    """The module and its submodules, outermost first (a wrapper around a timm or Hugging Face model)."""
    yield module
    for _name, child in module.named_modules():
        if child is not module:
            yield child


def _timm_grid(owner: nn.Module, embed: Any, size: tuple[int, int]) -> tuple[int, int] | None:
    """The patch grid of a timm patch embedding at input ``size`` (height, width): its ``grid_size`` for
    the size it was made for, ``dynamic_feat_size`` for a model that takes any size."""
    dynamic = bool(getattr(owner, "dynamic_img_size", False)) or not bool(getattr(embed, "strict_img_size", True))
    stated = _pair(getattr(embed, "grid_size", None))
    made_for = _pair(getattr(embed, "img_size", None))
    feat_size = getattr(embed, "dynamic_feat_size", None)
    if callable(feat_size) and (dynamic or made_for == size):
        try:
            found = _pair(tuple(int(v) for v in feat_size(size)))
        except (TypeError, ValueError, AttributeError, IndexError):
            found = None
        if found is not None:
            return found
    if stated is not None:
        return stated
    patch = _pair(getattr(embed, "patch_size", None))
    if patch is not None and made_for is not None:  # a fixed-size embedding without grid_size (CrossViT, XCiT)
        base = size if dynamic else made_for
        return (base[0] // patch[0], base[1] // patch[1])
    return None


def _timm_tokens(module: nn.Module, size: tuple[int, int]) -> TokenGrid | None:
    for owner in _candidates(module):
        if getattr(owner, "unroll", None) is not None and hasattr(owner, "reroll"):
            return TokenGrid((), 0, False, "timm")  # Hiera: tokens reordered into mask units, never a grid
        embed = getattr(owner, "patch_embed", None)
        if not isinstance(embed, nn.Module):
            stem = getattr(owner, "stem", None)  # MLP-Mixer, Sequencer: a PatchEmbed as the stem
            embed = stem if isinstance(stem, nn.Module) and hasattr(stem, "grid_size") else None
        if embed is None:
            continue
        embeds = list(embed) if isinstance(embed, (nn.ModuleList, nn.Sequential)) else [embed]
        grids = [g for g in (_timm_grid(owner, e, size) for e in embeds) if g is not None]
        if not grids:
            continue
        prefix = getattr(owner, "num_prefix_tokens", None)
        if not isinstance(prefix, int) or isinstance(prefix, bool):
            prefix = sum(_token_count(getattr(owner, a, None)) for a in ("cls_token", "dist_token", "reg_token"))
            prefix = prefix or _token_count(getattr(owner, "cls_token_0", None))  # CrossViT: one per branch
        return TokenGrid(tuple(dict.fromkeys(grids)), int(prefix), True, "timm")
    return None


def _hf_tokens(module: nn.Module, size: tuple[int, int]) -> TokenGrid | None:
    """A Hugging Face transformers vision model (ViT, DeiT, BEiT, DINOv2, CLIP, SigLIP, Swin ...), read
    through its ``config`` and its embeddings' tokens (transformers is never imported)."""
    for owner in _candidates(module):
        config = getattr(owner, "config", None)
        config = getattr(config, "vision_config", None) or config
        patch = _pair(getattr(config, "patch_size", None))
        if patch is None or _pair(getattr(config, "image_size", None)) is None:
            continue
        grids = {(size[0] // patch[0], size[1] // patch[1]), (-(-size[0] // patch[0]), -(-size[1] // patch[1]))}
        prefix = 0
        for _name, child in owner.named_modules():
            kind = type(child).__name__
            if kind.endswith("Embeddings") and not kind.endswith("PatchEmbeddings") and "Text" not in kind:
                prefix = sum(
                    _token_count(getattr(child, a, None))
                    for a in ("cls_token", "distillation_token", "register_tokens", "class_embedding")
                )
                break
        if prefix == 0 and getattr(config, "num_register_tokens", 0):
            prefix = int(config.num_register_tokens) + 1
        return TokenGrid(tuple(sorted(grids)), prefix, True, "transformers")
    return None


def _torchvision_tokens(module: nn.Module, size: tuple[int, int]) -> TokenGrid | None:
    """torchvision's VisionTransformer: ``patch_size`` and ``image_size`` (ints), a ``conv_proj`` and a
    ``class_token``."""
    for owner in _candidates(module):
        patch = getattr(owner, "patch_size", None)
        if isinstance(patch, int) and isinstance(getattr(owner, "conv_proj", None), nn.Module):
            prefix = _token_count(getattr(owner, "class_token", None))
            return TokenGrid(((size[0] // patch, size[1] // patch),), prefix, True, "torchvision")
    return None


def token_grid(module: nn.Module, input_size: tuple[int, int]) -> TokenGrid | None:
    """What ``module`` says about its patch grid and prefix tokens for an input of ``input_size`` =
    (height, width): timm (``patch_embed.grid_size`` / ``dynamic_feat_size``, ``num_prefix_tokens`` or its
    ``cls_token``/``dist_token``/``reg_token``), Hugging Face transformers (``config.patch_size`` and the
    actual input size, the embeddings' class, distillation and register tokens) or torchvision's ViT
    (``patch_size``, ``class_token``). None when it says nothing."""
    size = (int(input_size[0]), int(input_size[1]))
    return _timm_tokens(module, size) or _hf_tokens(module, size) or _torchvision_tokens(module, size)


