"""How a layer's output becomes a map: the one place that decides it.

A convolutional layer gives (N, C, H, W) ("channels_first"); ConvNeXt's and Swin's LayerNorm and MLP layers
give (N, H, W, C) ("channels_last"); a vision transformer's blocks give (N, T, D) tokens, T = ``prefix``
(class, distillation, register tokens) + H·W patches in row-major order of the patch grid ("tokens"). A
:class:`MapLayout` says which, and :func:`to_chw` turns such an output into (N, C, H, W).

The grid of a token layer comes from the model, never from T alone when the model states it
(:func:`~featviz_core.layers.patch_grid.token_grid`: timm's ``patch_embed``, Hugging Face's
``config.patch_size``). :func:`read_output` reads one traced output; what the shape alone cannot settle is
settled by a second forward pass at another input size (:func:`confirm_output`: a map's positions scale with
the input, its channels do not). Everything else is not a map: attention internals (N, heads, T, d), queries, keys and values, position biases, tokens
whose count is not prefix + a grid, outputs whose batch axis holds windows or heads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import LayerError
from .patch_grid import TokenGrid, token_grid

__all__ = [
    "MapLayout",
    "Reading",
    "TokenGrid",
    "confirm_output",
    "from_chw",
    "prefix_tokens",
    "read_output",
    "to_chw",
    "token_grid",
]

Kind = Literal["channels_first", "channels_last", "tokens"]

MAX_GUESSED_PREFIX = 8
"""Leading non-patch tokens tried when a model does not say how many it has (class + distillation + registers)."""

# Names of modules whose outputs are attention internals, never maps, lower case: queries, keys, values,
# attention weights, position biases and embeddings. Any part of a module's name counts (a Linear or a norm inside
# a module called "qkv" computes queries, keys and values too).
_INTERNAL = frozenset({
    "q", "k", "v", "qk", "kv", "qkv", "q_proj", "k_proj", "v_proj", "qkv_proj", "kv_proj", "in_proj",
    "query", "key", "value", "to_q", "to_k", "to_v", "to_kv", "to_qkv", "q_norm", "k_norm", "softmax",
    "attn_drop", "attention_probs", "rel_pos", "relative_position", "relative_position_bias", "pos_embed",
    "position_embedding", "position_embeddings", "rope", "attention_bias",
})  # fmt: skip


@dataclass(frozen=True)
class MapLayout:
    """How one output is a map of ``channels`` × ``height`` × ``width``.

    ``kind``: "channels_first" (N, C, H, W), "channels_last" (N, H, W, C) or "tokens" (N, T, D) with
    T = ``prefix`` + H·W, the patches in row-major order after ``prefix`` leading tokens (class,
    distillation, register tokens); ``channels`` is then D, one embedding dimension per channel.
    """

    kind: Kind
    channels: int
    height: int
    width: int
    prefix: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one map."""
        return (self.channels, self.height, self.width)

    @property
    def grid(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def channels_last(self) -> bool:
        return self.kind == "channels_last"

    @property
    def tokens(self) -> bool:
        return self.kind == "tokens"

    def describe(self) -> str:
        """``"192×14×14"``, or ``"tokens 192×14×14"`` for a token layer."""
        dims = f"{self.channels}×{self.height}×{self.width}"
        return f"tokens {dims}" if self.tokens else dims


@dataclass(frozen=True)
class Reading:
    """What one traced output is: ``layout`` (None: not a map). ``sure`` is False when only a second
    forward pass at another input size can tell (:func:`confirm_output`); ``layout`` is then the reading to
    keep when the model runs at one size only."""

    layout: MapLayout | None
    sure: bool


# ---------------------------------------------------------------------------------------------------
# Reading a traced output


def fits_aspect(h: int, w: int, size: tuple[int, int]) -> bool:
    """Could an (h, w) map be the input of ``size`` = (H, W) seen at some stride (within rounding)?"""
    height, width = size
    return abs(h * width - w * height) <= max(height, width) * max(1, min(h, w)) // 4 + max(h, w) // 4 + 1


def _near(value: int, target: float) -> bool:
    return abs(value - target) <= max(1.5, 0.1 * target)


def _on_a_stride(h: int, w: int, size: tuple[int, int], tokens: TokenGrid | None) -> bool:
    """Is (h, w) the input seen at a power-of-2 stride (within the rounding of padding-free layers), or one
    of the model's stated grids?"""
    if tokens is not None and (h, w) in tokens.stage_grids():
        return True
    return any(_near(h, size[0] / 2**k) and _near(w, size[1] / 2**k) for k in range(7))


def _grid_of(count: int, size: tuple[int, int]) -> tuple[int, int] | None:
    """The (h, w) with h·w = ``count`` closest to the input's aspect, if one fits it (for a model that says
    nothing about its grid), each side at least 2 and at most the input's."""
    best: tuple[float, tuple[int, int]] | None = None
    for small in range(2, math.isqrt(max(count, 0)) + 1):
        if count % small:
            continue
        for h, w in {(small, count // small), (count // small, small)}:
            if not fits_aspect(h, w, size) or h > size[0] or w > size[1]:
                continue
            miss = abs(math.log((h / w) / (size[0] / size[1])))
            if best is None or miss < best[0]:
                best = (miss, (h, w))
    return best[1] if best else None


def _guess_tokens(count: int, channels: int, size: tuple[int, int]) -> MapLayout | None:
    """For a model that says nothing: the fewest leading tokens after which the rest form a grid of the
    input's aspect."""
    for prefix in range(MAX_GUESSED_PREFIX + 1):
        grid = _grid_of(count - prefix, size) if count - prefix >= 4 else None
        if grid is not None:
            return MapLayout("tokens", channels, grid[0], grid[1], prefix)
    return None


def _internal(name: str) -> bool:
    return any(part in _INTERNAL for part in name.lower().split("."))


def _read_4d(shape: tuple[int, ...], size: tuple[int, int], tokens: TokenGrid | None) -> Reading:
    a, b, c = shape
    counts = tokens.token_counts() if tokens is not None else frozenset()
    grids = set(tokens.stage_grids()) if tokens is not None else set()

    def fits(h: int, w: int) -> bool:
        return 1 <= h <= size[0] + 2 and 1 <= w <= size[1] + 2 and fits_aspect(h, w, size)

    def certain(h: int, w: int) -> bool:
        """A map for sure: the model's own grid, or the input at a power-of-2 stride with no side as long
        as a token sequence (an attention matrix's (T, T))."""
        if (h, w) in grids:
            return True
        return h not in counts and w not in counts and _on_a_stride(h, w, size, tokens)

    chw, hwc = MapLayout("channels_first", a, b, c), MapLayout("channels_last", c, a, b)
    if b * c == 1 or a * b == 1 and c > 1:  # a global pool or squeeze-excitation: one position, no map
        return Reading(None, True)
    first, last = fits(b, c), fits(a, b)
    if first and not last:
        sure = certain(b, c)
        return Reading(chw if sure else None, sure)
    if last and not first:
        sure = certain(a, b)
        return Reading(hwc if sure else None, sure)
    if first and last:  # e.g. 56×56×56: PyTorch's convention unless a second size tells
        return Reading(chw if certain(b, c) else hwc if certain(a, b) else None, False)
    return Reading(None, False)  # neither reading fits this size: only a second size can show a map


def _read_tokens(shape: tuple[int, ...], size: tuple[int, int], tokens: TokenGrid | None) -> Reading:
    count, channels = shape
    if tokens is not None:
        if not tokens.raster:
            return Reading(None, True)
        for h, w in tokens.stage_grids():
            for prefix in dict.fromkeys((tokens.prefix, 0)):
                if count == prefix + h * w:
                    return Reading(MapLayout("tokens", channels, h, w, prefix), True)
        return Reading(None, True)  # the model states its grid, and this is not on it
    guess = _guess_tokens(count, channels, size)
    if guess is None:
        return Reading(None, True)
    exact = guess.height * size[1] == guess.width * size[0]  # kept without a second size only when exact
    return Reading(guess if exact else None, False)


def read_output(
    shape: Iterable[int],
    input_size: tuple[int, int],
    tokens: TokenGrid | None = None,
    *,
    name: str = "",
    batch: int = 1,
) -> Reading:
    """Is an output of ``shape`` (with the batch axis) from an input of ``input_size`` = (H, W) a map?

    (N, C, H, W) or (N, H, W, C) when its positions fit the input's aspect and no position axis is as long
    as a token sequence; (N, T, D) when T = prefix + H·W on the model's patch grid or a stage's grid (the
    model's own ``tokens``; only for a model that says nothing, a grid of the input's aspect after up to
    :data:`MAX_GUESSED_PREFIX` tokens). Never a map: a batch axis other than ``batch`` (windows, heads),
    attention internals and queries/keys/values by ``name``, any other rank."""
    dims = tuple(int(s) for s in shape)
    size = (int(input_size[0]), int(input_size[1]))
    if len(dims) not in (3, 4) or dims[0] != batch or _internal(name) or min(dims) < 1:
        return Reading(None, True)
    if len(dims) == 4:
        return _read_4d(dims[1:], size, tokens)
    return _read_tokens(dims[1:], size, tokens)


def _scaled(before: int, after: int, ratio: float) -> bool:
    return abs(after - before * ratio) <= 1.5 + 0.1 * before * ratio


def confirm_output(
    first: Iterable[int],
    input_size: tuple[int, int],
    second: Iterable[int] | None,
    other_size: tuple[int, int],
    *,
    batch: int = 1,
) -> MapLayout | None:
    """Settle an unsure reading of :func:`read_output` with the same output at ``other_size``: a map's
    positions scale with the input, its channels do not. ``first`` and ``second`` are the shapes (with the
    batch axis) at ``input_size`` and ``other_size``. None when it is not a map (or ``second`` is None)."""
    if second is None:
        return None
    after = tuple(int(s) for s in second)
    before = tuple(int(s) for s in first)
    if len(after) != len(before) or after[0] != batch or before[0] != batch:
        return None
    rh, rw = other_size[0] / input_size[0], other_size[1] / input_size[1]
    if len(before) == 4:
        _, a, b, c = before
        _, a2, b2, c2 = after
        if a2 == a and _scaled(b, b2, rh) and _scaled(c, c2, rw) and (b2, c2) != (b, c):
            return MapLayout("channels_first", a, b, c)
        if c2 == c and _scaled(a, a2, rh) and _scaled(b, b2, rw) and (a2, b2) != (a, b):
            return MapLayout("channels_last", c, a, b)
        return None
    guess = _guess_tokens(before[1], before[2], input_size) if len(before) == 3 else None
    if guess is not None and after[2] == before[2]:
        patches = after[1] - guess.prefix
        grid = _grid_of(patches, other_size) if patches >= 4 else None
        if grid is not None and grid != guess.grid and _scaled(guess.height, grid[0], rh) and _scaled(
            guess.width, grid[1], rw
        ):
            return guess
    return None


# ---------------------------------------------------------------------------------------------------
# Turning an output into maps and back


def _grid_for(layout: MapLayout, patches: int) -> tuple[int, int]:
    """The grid of ``patches`` tokens: the layout's own, or (for the same layer at another input size) the
    factorisation closest to the layout's aspect."""
    if patches == layout.height * layout.width:
        return layout.grid
    best: tuple[float, tuple[int, int]] | None = None
    for h in range(1, patches + 1):
        if patches % h == 0:
            w = patches // h
            miss = abs(math.log((h / w) / (layout.height / layout.width)))
            if best is None or miss < best[0]:
                best = (miss, (h, w))
    if best is None:
        raise LayerError(
            f"An output with {patches} patch tokens does not form a grid; choose another layer from "
            "list_layers(model)."
        )
    return best[1]


def to_chw(tensor: torch.Tensor, layout: MapLayout) -> torch.Tensor:
    """An output of a layer of ``layout`` as (N, C, H, W): a differentiable view (channels-last outputs
    permuted; tokens without their prefix, transposed to channels-first and reshaped to the grid)."""
    if layout.kind == "channels_first":
        return tensor
    if layout.kind == "channels_last":
        return tensor.permute(0, 3, 1, 2)
    if tensor.ndim != 3:
        raise LayerError(
            f"A token layer gives (batch, tokens, channels), not a tensor of shape {tuple(tensor.shape)}; "
            "choose a layer from list_layers(model)."
        )
    n, count, channels = (int(s) for s in tensor.shape)
    height, width = _grid_for(layout, count - layout.prefix)
    return tensor[:, layout.prefix :].transpose(1, 2).reshape(n, channels, height, width)


def from_chw(chw: torch.Tensor, layout: MapLayout, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """The inverse of :func:`to_chw`: (N, C, H, W) maps in the form the layer gives them, for a network
    run on with a changed layer output. A token layer needs its ``prefix`` tokens (N, prefix, D) back."""
    if layout.kind == "channels_first":
        return chw
    if layout.kind == "channels_last":
        return chw.permute(0, 2, 3, 1).contiguous()
    patches = chw.flatten(2).transpose(1, 2)
    if layout.prefix == 0:
        return patches.contiguous()
    if prefix is None or prefix.shape[1] != layout.prefix:
        raise LayerError(
            f"This token layer starts with {layout.prefix} tokens before its patches; pass them as prefix."
        )
    return torch.cat([prefix.to(patches.dtype).expand(chw.shape[0], -1, -1), patches], dim=1)


def prefix_tokens(tensor: torch.Tensor, layout: MapLayout) -> torch.Tensor | None:
    """The leading non-patch tokens (class, distillation, registers) of a token output: (N, prefix, D);
    None for other layouts or a layer without them."""
    if layout.kind != "tokens" or layout.prefix == 0 or tensor.ndim != 3:
        return None
    return tensor[:, : layout.prefix]
