"""Feature visualization by optimization: a picture that one channel of a layer responds to most.

    >>> from featviz_core import load_demo, visualize
    >>> result = visualize(load_demo(), "block1.relu1", 3, steps=256, seed=0)
    >>> result.images.shape, float(result.activation[-1])        # uint8 (1, 128, 128, 3), the value reached

The picture is optimized, not searched for: starting from faint noise (seeded), Adam (lr 0.05) changes a
Fourier parameterization of it (see :mod:`featviz_core.visualize.param`) to raise the objective at ``layer``:

* ``"channel"``: the channel's mean over all positions;
* ``"neuron"``: the channel's value at the centre position;
* ``"negative"``: the channel's mean, lowered (what the channel responds to least);
* ``"diversity"``: the channel's mean for a batch of pictures (4 by default) plus a penalty on how alike
  the layer's Gram matrices are across the batch (lucent's diversity term), so the pictures differ.

How it runs, and why:

* every step the picture gets random small moves (pad, jitter, scale, rotate, jitter), and the model sees
  the centre ``size`` × ``size`` of the moved frame (:func:`featviz_core.visualize.param.robustness_grid`), then its own
  normalisation, read from its preprocessing (:func:`featviz_core.visualize.param.input_map`);
* the forward pass stops at the target layer: the hook (an :class:`~featviz_core.layers.hooks.ActivationRecorder`
  that keeps a copy of the output in the autograd graph) raises a private exception once it has the
  output, so no work is done past it, and no later in-place operation can change the recorded value;
* the model's lock is held for one step at a time (forward and backward), so other sessions keep working
  while a picture is optimized, and hooks exist only while the lock is held;
* the gradient is ``torch.autograd.grad`` with respect to the picture's parameters only: no parameter gets
  a ``.grad`` and no ``requires_grad`` or ``training`` flag changes, also when the ``progress`` callback
  raises (that is how a background job is stopped).
"""

from __future__ import annotations

import io
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import LayerError, VisualizeError
from ..layers.discovery import LayerInfo, as_chw, layer_info
from ..layers.hooks import ActivationRecorder, Tap
from ..models.loaded import LoadedModel
from .param import FourierImage, InputMap, Robustness, apply_grid, input_map, robustness_grid, to_uint8

__all__ = [
    "OBJECTIVES",
    "GalleryPreview",
    "Objective",
    "Visualization",
    "VisualizeError",
    "check_model",
    "montage",
    "settings_key",
    "visualize",
    "visualize_channels",
]

Objective = Literal["channel", "neuron", "negative", "diversity"]
OBJECTIVES: tuple[str, ...] = ("channel", "neuron", "negative", "diversity")
LEARNING_RATE = 0.05
DIVERSITY_BATCH = 4
DIVERSITY_WEIGHT = 0.5
"""Weight of lucent's diversity term relative to the objective's current size: each picture keeps most
of the activation of a picture optimized alone (about 70 % on the demo model) while their Gram matrices
become clearly less alike (cosine similarity about 0.4 instead of 1)."""

Progress = Callable[[int, int, Any], None]


@dataclass(frozen=True, eq=False)
class Visualization:
    """Pictures optimized for one channel, and how the objective went. Arrays are read-only.

    ``images`` are uint8, (N, H, W, 3) for colour models and (N, H, W) for grey ones (N = 1, or the batch
    for ``"diversity"``). ``activation`` (steps,) float32 is the channel's value on each step's moved
    picture: its mean (``"channel"``, ``"negative"``, ``"diversity"``; averaged over the batch) or its
    centre value (``"neuron"``). ``reached`` (N,) float32 is that value for each final picture as it is,
    without the random moves.
    """

    images: np.ndarray
    activation: np.ndarray
    reached: np.ndarray
    model_key: str
    layer: str
    channel: int
    objective: str
    size: int
    steps: int
    seed: int
    batch: int

    @property
    def key(self) -> str:
        """The settings as one string (what a cache of results is keyed by)."""
        return settings_key(self.model_key, self.layer, self.channel, self.objective, self.size, self.steps,
                            self.seed, self.batch)

    def montage(self, gap: int = 4) -> Image.Image:
        """The pictures side by side, ``gap`` white pixels apart, as one PIL image."""
        return montage(list(self.images), gap=gap)

    def png(self) -> bytes:
        """The pictures as one PNG file (side by side when there are several)."""
        buffer = io.BytesIO()
        self.montage().save(buffer, format="PNG")
        return buffer.getvalue()


def montage(images: Sequence[np.ndarray], gap: int = 4, columns: int | None = None) -> Image.Image:
    """uint8 pictures (H, W, 3) or (H, W) of one size in a grid (one row unless ``columns``), white gaps."""
    if not images:
        raise VisualizeError("There are no pictures to put together yet.")
    height, width = images[0].shape[:2]
    grey = images[0].ndim == 2
    columns = min(columns or len(images), len(images))
    rows = -(-len(images) // columns)
    sheet = Image.new("L" if grey else "RGB", (columns * width + (columns - 1) * gap,
                                               rows * height + (rows - 1) * gap), 255 if grey else (255,) * 3)
    for index, picture in enumerate(images):
        row, column = divmod(index, columns)
        sheet.paste(Image.fromarray(np.ascontiguousarray(picture)), (column * (width + gap), row * (height + gap)))
    return sheet


def settings_key(model_key: str, layer: str, channel: int, objective: str, size: int, steps: int, seed: int,
                 batch: int = 1) -> str:
    """One string for the inputs of :func:`visualize` (cache and job keys)."""
    if objective == "diversity" and batch == 1:
        batch = DIVERSITY_BATCH
    return f"visualize|{model_key}|{layer}|{channel}|{objective}|{size}|{steps}|{seed}|{batch}"


def check_model(model: LoadedModel) -> None:
    """Raise :class:`VisualizeError` (one sentence) when no picture can be optimized for ``model``."""
    if not model.supports_gradients:
        raise VisualizeError(
            f"{model.name} runs outside PyTorch's autograd, so no picture can be optimized for it; load the "
            "same model from a PyTorch checkpoint to use this page."
        )
    if model.input_channels not in (1, 3):
        raise VisualizeError(
            f"{model.name} takes pictures with {model.input_channels} channels; feature visualization works "
            "for colour (3-channel) and grey (1-channel) models."
        )


# ---------------------------------------------------------------------------------------------------
# Stopping the forward pass at the target layer


_DEAD_ZONE_TYPES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Threshold)
"""Activations with a flat zero region: a channel that does not fire at the start gives no gradient."""


# ---------------------------------------------------------------------------------------------------
# Objectives


def _channel_value(acts: torch.Tensor, channel: int, objective: str) -> torch.Tensor:
    """(N,) the channel's value per picture: its centre value for ``"neuron"``, else its mean."""
    maps = acts[:, channel]
    if objective == "neuron":
        return maps[:, maps.shape[1] // 2, maps.shape[2] // 2]
    return maps.mean(dim=(1, 2))


def _diversity(acts: torch.Tensor) -> torch.Tensor:
    """lucent's diversity term: the mean cosine similarity of each picture's Gram matrix with the others'."""
    n, c = acts.shape[:2]
    flat = acts.reshape(n, c, -1)
    grams = F.normalize(torch.matmul(flat, flat.transpose(1, 2)).reshape(n, -1), p=2, dim=1)
    similarity = grams @ grams.T
    return (similarity.sum() - similarity.diagonal().sum()) / n


def _loss(
    acts: torch.Tensor, pre: torch.Tensor | None, channel: int, objective: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(what is minimized, the channel's value per picture). With ``pre`` (the input of a target ReLU),
    a picture on which the channel does not fire at all is pushed through the ReLU's input instead."""
    value = _channel_value(acts, channel, objective)
    if objective == "negative":
        return value.mean(), value
    pushed = value
    if pre is not None:
        region = acts[:, channel] if objective != "neuron" else value[:, None, None]
        dead = (region.detach() <= 0).flatten(1).all(dim=1)
        if bool(dead.any()):
            pushed = torch.where(dead, _channel_value(pre, channel, objective), value)
    loss = -pushed.mean()
    if objective == "diversity":
        # lucent's weight (100) suits activations of about 100 (InceptionV1's mixed5a); scaled by the
        # objective's own size, the trade-off is the same whatever the layer's units.
        loss = loss + DIVERSITY_WEIGHT * pushed.detach().mean().abs() * _diversity(acts)
    return loss, value


# ---------------------------------------------------------------------------------------------------
# Checks


def _whole(value: Any, what: str, low: int, high: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise VisualizeError(f"The {what} must be a whole number from {low} to {high}, not {value!r}.") from None
    if not low <= number <= high:
        raise VisualizeError(f"The {what} must be from {low} to {high}, not {number}.")
    return number


def _check(
    model: LoadedModel, layer: str, channel: Any, objective: str, size: Any, steps: Any, seed: Any, batch: Any
) -> tuple[LayerInfo, int, int, int, int, int]:
    check_model(model)
    if objective not in OBJECTIVES:
        raise VisualizeError(f"The objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}.")
    info = layer_info(model, layer, spatial=True)
    channels = info.channels or 0
    if not channels:
        raise LayerError(f"Layer '{layer}' has no channels to visualize; choose another from list_layers(model).")
    channel = _whole(channel, "channel", 0, channels - 1)
    size = _whole(size, "picture size", 32, 1024)
    steps = _whole(steps, "number of steps", 1, 10_000)
    seed = _whole(seed, "seed", 0, 2**63 - 1)
    batch = _whole(batch, "batch", 1, 32)
    if objective == "diversity" and batch == 1:
        batch = DIVERSITY_BATCH
    return info, channel, size, steps, seed, batch


# ---------------------------------------------------------------------------------------------------
# The optimization


def _forward(
    model: LoadedModel, info: LayerInfo, tensor: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The target layer's output as (N, C, h, w) with its graph, and the input of a target ReLU (or None).
    Call with the model's lock held."""
    # The output is kept in the autograd graph, copied so in-place operations after the layer cannot change it,
    # and the pass stops there. For a ReLU-like layer its input is kept too (copied before an in-place
    # activation runs), so a channel that does not fire at all can still be started.
    target = dict(model.module.named_modules()).get(info.module_name)
    tap = Tap(info.name, keep_graph=True, keep_input=isinstance(target, _DEAD_ZONE_TYPES), stop=True)
    try:
        with ActivationRecorder(model.module, taps=[tap]) as recorder:  # the caller holds the lock
            recorder.run(tensor)
    except (RuntimeError, ValueError) as exc:
        raise VisualizeError(
            f"{model.name} could not run on a {size}×{size} picture ({type(exc).__name__}); try a picture size "
            f"of {max(model.input_size)} px."
        ) from exc
    output, pre = recorder.outputs.get(info.name), recorder.inputs.get(info.name)
    if pre is not None and (output is None or pre.shape != output.shape):
        pre = None
    if output is None:
        raise LayerError(
            f"Layer '{info.name}' did not run for this picture; choose another from list_layers(model)."
        )
    return as_chw(output, info), (as_chw(pre, info) if pre is not None else None)


def visualize(
    model: LoadedModel,
    layer: str,
    channel: int,
    *,
    objective: Objective | str = "channel",
    size: int = 128,
    steps: int = 256,
    seed: int = 0,
    batch: int = 1,
    progress: Progress | None = None,
) -> Visualization:
    """Optimize ``batch`` pictures of ``size`` × ``size`` so that ``channel`` of ``layer`` responds most
    (``objective="negative"``: least) to them; see the module's documentation for the recipe.

    ``progress(step, steps, preview)`` is called after every step with the pictures so far (uint8, as in
    :attr:`Visualization.images`); if it raises, the optimization stops and the exception propagates, with
    the model left as it was. Deterministic for a seed (on the same machine and library versions), also when
    other threads use the model at the same time. ``objective="diversity"`` optimizes 4 pictures unless
    ``batch`` says otherwise. A model that runs outside autograd, an unknown layer or channel, or settings
    out of range raise :class:`~featviz_core.errors.FeatvizError` saying what to do.
    """
    info, channel, size, steps, seed, batch = _check(model, layer, channel, objective, size, steps, seed, batch)
    pixel_map: InputMap = input_map(model)
    device = model.device
    generator = torch.Generator().manual_seed(seed)
    values: list[float] = []
    with torch.inference_mode(False), torch.enable_grad():  # also when the caller is in inference mode
        normalise = pixel_map.on(device)
        picture = FourierImage(batch, pixel_map.channels, size, generator, device)
        optimizer = torch.optim.Adam([picture.spectrum], lr=LEARNING_RATE)
        for step in range(steps):
            moves = Robustness.draw(generator)
            pixels = picture()
            moved = apply_grid(pixels, robustness_grid(moves, size, device, view=size))
            tensor = normalise(moved)
            with model.lock:  # one step at a time: other sessions run between our steps
                acts, pre = _forward(model, info, tensor, size)
                loss, value = _loss(acts, pre, channel, objective)
                if not loss.requires_grad:
                    raise VisualizeError(
                        f"Layer '{layer}' does not depend on the picture through operations autograd can follow; "
                        "choose another layer from list_layers(model)."
                    )
                (grad,) = torch.autograd.grad(loss, picture.spectrum)
            picture.spectrum.grad = grad
            optimizer.step()
            values.append(float(value.detach().mean()))
            if progress is not None:
                progress(step + 1, steps, to_uint8(pixels))
        with torch.no_grad():
            final = picture()
            with model.lock:
                reached = _channel_value(_forward(model, info, normalise(final), size)[0], channel, objective)
    activation = np.asarray(values, dtype=np.float32)
    activation.flags.writeable = False
    reached_array = reached.detach().to(torch.float32).cpu().numpy().copy()
    reached_array.flags.writeable = False
    return Visualization(
        images=to_uint8(final),
        activation=activation,
        reached=reached_array,
        model_key=model.key,
        layer=info.name,
        channel=channel,
        objective=objective,
        size=size,
        steps=steps,
        seed=seed,
        batch=batch,
    )


@dataclass(frozen=True)
class GalleryPreview:
    """What :func:`visualize_channels` has so far: the finished results, and the channel being optimized
    with its current pictures."""

    finished: tuple[Visualization, ...]
    channel: int | None
    images: np.ndarray | None


def visualize_channels(
    model: LoadedModel,
    layer: str,
    channels: Sequence[int],
    *,
    size: int = 128,
    steps: int = 256,
    seed: int = 0,
    progress: Progress | None = None,
    known: Mapping[int, Visualization] | None = None,
) -> list[Visualization]:
    """:func:`visualize` (objective ``"channel"``) for several channels, one after another, with one
    ``progress(done, total, preview)`` over all of them (steps done in total; ``preview`` a
    :class:`GalleryPreview`, so each picture can be shown as soon as it is done). Results in ``known``
    (by channel, same settings) are used as they are instead of being computed again."""
    channels = [int(c) for c in channels]
    total = steps * len(channels)
    finished: list[Visualization] = []
    for index, channel in enumerate(channels):
        ready = (known or {}).get(channel)
        if ready is None:
            def inner(step: int, _steps: int, images: Any, index: int = index, channel: int = channel) -> None:
                if progress is not None:
                    progress(index * steps + step, total, GalleryPreview(tuple(finished), channel, images))

            ready = visualize(model, layer, channel, size=size, steps=steps, seed=seed, progress=inner)
        finished.append(ready)
        if progress is not None:
            progress((index + 1) * steps, total, GalleryPreview(tuple(finished), None, None))
    return finished
