"""Where a Hugging Face ``transformers`` vision transformer's attention is, and its q and k for one image.

The library's ViT, DeiT (with its distillation token), DINOv2 (with or without registers) and CLIP vision towers
compute every block's attention as ``softmax(q kᵀ · scaling)``: q and k are the outputs of the attention module's
``q_proj`` and ``k_proj`` reshaped to heads, with no mask, bias or rotary embedding between them and the softmax
(its ``eager_attention_forward``). So :class:`~featviz_core.layers.hooks.Tap` s keep those two outputs while the
model runs whichever attention implementation it has (``config._attn_implementation`` is never changed), and
:mod:`featviz_core.attention` computes the probabilities from them, exactly as the eager path would. Other
families are not read: BEiT and Data2Vec add a relative position bias to the scores, Swin's windows and
ConvNeXT have no class token, SigLIP has no class token either.

The blocks are the encoder layers by their module names (``vit.layers.11``), the patch grid and prefix count
come from :func:`~featviz_core.layers.patch_grid.token_grid` (the config's patch size and the actual input size),
the prefix tokens' names from the embeddings' ``cls_token``/``class_embedding``, ``distillation_token`` and
``register_tokens``, in the order the embeddings concatenate them (class, distillation, registers, patches).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers.hooks import ActivationRecorder, Tap
from .layers.patch_grid import token_grid
from .models.loaded import LoadedModel

__all__ = ["HFAttention", "hf_attention", "hf_q_and_k"]

EXACT = frozenset({
    "ViTAttention", "DeiTAttention", "Dinov2Attention", "Dinov2WithRegistersAttention", "CLIPAttention",
})
"""Attention modules whose probabilities are ``softmax(q_proj(x) k_proj(x)ᵀ · scaling)`` over heads, nothing added."""


@dataclass(frozen=True)
class HFAttention:
    """``blocks``: the encoder layers (module names); ``modules``: their attention modules, in the same order;
    ``grid``: the patch grid at the model's input size; ``prefix``: the tokens before the patches, by name."""

    blocks: tuple[str, ...]
    modules: tuple[str, ...]
    grid: tuple[int, int]
    prefix: tuple[str, ...]


def _prefix_names(module: nn.Module) -> tuple[str, ...] | None:
    """The embeddings' tokens before the patches: class, distillation, registers (None without a class token)."""
    for _name, child in module.named_modules():
        kind = type(child).__name__
        if not kind.endswith("Embeddings") or kind.endswith("PatchEmbeddings") or "Text" in kind:
            continue
        if getattr(child, "cls_token", None) is None and getattr(child, "class_embedding", None) is None:
            return None
        names = ["class token"]
        if getattr(child, "distillation_token", None) is not None:
            names.append("distillation token")
        registers = getattr(child, "register_tokens", None)
        count = int(registers.shape[-2]) if isinstance(registers, torch.Tensor) and registers.ndim >= 2 else 0
        return (*names, *(f"register {i + 1}" for i in range(count)))
    return None


def _layer_name(attention_name: str) -> str:
    return attention_name.rpartition(".")[0]


def hf_attention(model: LoadedModel) -> HFAttention | None:
    """The global attention of a transformers model featviz reads exactly (see :data:`EXACT`; also inside a
    wrapper module), or None."""
    module = model.module
    found = [(name, m) for name, m in module.named_modules()
             if type(m).__name__ in EXACT and type(m).__module__.startswith("transformers.") and name]
    if not found or not all(isinstance(getattr(m, p, None), nn.Linear) for _n, m in found for p in ("q_proj", "k_proj")):
        return None
    prefix = _prefix_names(module)
    tokens = token_grid(module, model.input_size)
    if prefix is None or tokens is None or tokens.source != "transformers" or tokens.prefix != len(prefix):
        return None
    grid = tokens.grids[0]  # floor(size / patch): the patch embedding's stride-patch convolution
    return HFAttention(blocks=tuple(_layer_name(n) for n, _m in found), modules=tuple(n for n, _m in found),
                       grid=grid, prefix=prefix)


def _scale(module: nn.Module) -> float:
    value = getattr(module, "scaling", None)
    return float(value if value is not None else module.scale)  # CLIP names it ``scale``


def hf_q_and_k(
    model: LoadedModel, image: object, modules: tuple[str, ...]
) -> list[tuple[torch.Tensor, torch.Tensor, float]] | None:
    """For each attention module in ``modules`` its q and k for ``image`` as the module computes them, float32 on
    the CPU, (heads, T, head_dim) each, and its scaling; the pass stops after the last one's ``k_proj``. None when a
    module did not run as expected."""
    named = dict(model.module.named_modules())
    taps = [Tap(f"{name}.{part}", clone=False, stop=name == modules[-1] and part == "k_proj")
            for name in modules for part in ("q_proj", "k_proj")]
    tensor = model.preprocess(image).to(model.device)  # type: ignore[arg-type]
    with ActivationRecorder(model.module, taps=taps, lock=model.lock) as recorder, torch.inference_mode():
        recorder.run(tensor)
    kept = []
    for name in modules:
        q, k = recorder.outputs.get(f"{name}.q_proj"), recorder.outputs.get(f"{name}.k_proj")
        head_dim = int(named[name].head_dim)
        if q is None or k is None or q.ndim != 3 or q.shape != k.shape or q.shape[-1] % head_dim:
            return None
        q, k = (t[0].to("cpu", torch.float32).reshape(t.shape[1], -1, head_dim).transpose(0, 1) for t in (q, k))
        kept.append((q, k, _scale(named[name])))
    return kept
