"""What a CAM explains: one number the model outputs (a class score, or a chosen channel of another output).

A classifier gives one vector of class scores (1, K): the target is the logit of one class. Other models
(detectors, segmenters, multi-head networks) give a tuple, a list or a dict of tensors, or one feature map.
For them a :class:`CamTarget` names one output tensor and one index along its dimension 1 (a class map of a
heatmap head, one box of a box head); the score explained is the **mean** of the selected values:

* for classifier logits (1, K) the mean of one value is the logit itself, so ``CamTarget(channel=c)`` is
  exactly "class ``c``";
* for a map (1, C, H, W) it is the channel's average over the map. The mean, not the sum: a sum grows with
  the map's size, and Score-CAM's softmax of scores depends on their scale.

:func:`describe_outputs` lists what a model outputs (one dry run of zeros, remembered per model), so a page
can offer the choices; :attr:`OutputInfo.explainable` says whether an output can give a target, and
:attr:`OutputInfo.why_not` why it cannot.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CamError
from ..layers.extract import class_scores
from ..layers.hooks import ActivationRecorder
from ..models.loaded import LoadedModel

__all__ = [
    "CamError", "CamTarget", "OutputInfo", "describe_outputs", "is_classifier", "no_target_reason", "target_scores",
]


@dataclass(frozen=True)
class CamTarget:
    """One score of the model's output: the number a CAM explains.

    ``output``: which output, when the model returns several: a position in its tuple or list, or a key of
    its dict; None when the model returns one tensor, or for the ``logits`` of a mapping that holds them
    (a Hugging Face ``ModelOutput``). ``channel``: an index along dimension 1 of that tensor
    (the class of (1, K) scores, a channel of a (1, C, H, W) map, a row of (1, N, 4) boxes); None: the
    whole tensor. The score is the mean of the selected values (see the module's notes).
    """

    output: int | str | None = None
    channel: int | None = None

    @property
    def key(self) -> str:
        """A short string for cache keys and file names: ``"out=1,ch=0"``, ``"ch=3"``, ``"all"``."""
        parts = []
        if self.output is not None:
            parts.append(f"out={self.output}")
        if self.channel is not None:
            parts.append(f"ch={self.channel}")
        return ",".join(parts) or "all"

    def label(self, model: LoadedModel | None = None) -> str:
        """In words: ``"output 'heatmap', channel 2 (its mean)"``; a classifier's class by its name."""
        if self.output is None and self.channel is not None and model is not None and is_classifier(model):
            return model.category(self.channel)
        where = "the output" if self.output is None else f"output {self.output!r}"
        if self.channel is None:
            return f"{where} (its mean)"
        return f"{where}, channel {self.channel} (its mean)"


@dataclass(frozen=True)
class OutputInfo:
    """One tensor the model outputs, as :func:`describe_outputs` found it."""

    output: int | str | None
    shape: tuple[int, ...]
    dtype: str
    why_not: str | None = None
    """Why this output cannot give a score (None when it can)."""

    @property
    def explainable(self) -> bool:
        return self.why_not is None

    @property
    def channels(self) -> int | None:
        """How many choices along dimension 1 (None when the tensor has only the batch dimension)."""
        return self.shape[1] if len(self.shape) >= 2 else None

    @property
    def label(self) -> str:
        """``"output 1 · 4×16×16"`` (without the batch dimension)."""
        name = "the output" if self.output is None else f"output {self.output!r}"
        shape = "×".join(str(s) for s in self.shape[1:]) or "one value"
        return f"{name} · {shape}"


def _items(output: Any) -> list[tuple[int | str | None, Any]]:
    if isinstance(output, torch.Tensor):
        return [(None, output)]
    if isinstance(output, Mapping):
        logits = class_scores(output)  # a ModelOutput's class scores are "the output" (None), not a key
        first: list[tuple[int | str | None, Any]] = [(None, logits)] if logits is not None else []
        return first + [(key, value) for key, value in output.items()
                        if isinstance(key, int | str) and (logits is None or key != "logits")]
    if isinstance(output, Sequence) and not isinstance(output, str | bytes):
        return list(enumerate(output))
    return []


def _why_not(value: Any) -> str | None:
    if not isinstance(value, torch.Tensor):
        return f"it is a {type(value).__name__}, not a tensor of numbers"
    if not value.is_floating_point():
        return "it holds whole numbers (for example predicted labels), not scores"
    if value.ndim == 0 or value.shape[0] != 1:
        return "it has no batch dimension of one image, so no score belongs to this image alone"
    if value.numel() == 0:
        return "it is empty"
    return None


_OUTPUTS: weakref.WeakKeyDictionary[nn.Module, tuple[OutputInfo, ...]] = weakref.WeakKeyDictionary()
_OUTPUTS_LOCK = threading.Lock()


def describe_outputs(model: LoadedModel) -> tuple[OutputInfo, ...]:
    """Every tensor the model outputs for one image, with its shape; found by one forward pass of zeros at
    the model's input size (done once per model and remembered). Empty when the output holds no tensor."""
    with _OUTPUTS_LOCK:
        found = _OUTPUTS.get(model.module)
    if found is None:
        dummy = torch.zeros(1, model.input_channels, *model.input_size, device=model.device)
        with ActivationRecorder(model.module, [], lock=model.lock), torch.inference_mode():
            output = model.module(dummy)
        found = tuple(
            OutputInfo(
                output=key,
                shape=tuple(int(s) for s in value.shape) if isinstance(value, torch.Tensor) else (),
                dtype=str(value.dtype).removeprefix("torch.") if isinstance(value, torch.Tensor) else "",
                why_not=_why_not(value),
            )
            for key, value in _items(output)
        )
        with _OUTPUTS_LOCK:
            _OUTPUTS[model.module] = found
    return found


def is_classifier(model: LoadedModel) -> bool:
    """True when the model's class scores (its one output tensor, or the ``logits`` of a mapping such as a
    Hugging Face ``ModelOutput``) are one vector (1, K) with K > 1."""
    return any(
        info.output is None and len(info.shape) == 2 and info.shape[0] == 1 and info.shape[1] > 1
        and info.explainable
        for info in describe_outputs(model)
    )


def no_target_reason(model: LoadedModel) -> str | None:
    """One sentence saying why nothing of the model's output can be explained; None when something can."""
    outputs = describe_outputs(model)
    if any(info.explainable for info in outputs):
        return None
    if not outputs:
        return (
            f"{model.name} returns no tensor of numbers, so there is no score whose causes a map could show; "
            "the Feature maps page still shows what each layer finds."
        )
    reasons = "; ".join(f"{info.label.split(' · ')[0]}: {info.why_not}" for info in outputs)
    return (
        f"{model.name} gives no score that belongs to one image ({reasons}), so no map can be computed; "
        "the Feature maps page still shows what each layer finds."
    )


def _pick(output: Any, which: int | str | None, model_name: str) -> torch.Tensor:
    if which is None:
        scores = class_scores(output)
        if scores is None:
            raise CamError(
                f"{model_name} returns a {type(output).__name__}, not one tensor: choose which of its outputs "
                "to explain (describe_outputs(model) lists them)."
            )
        return scores
    items = dict(_items(output))
    if which not in items:
        choices = ", ".join(repr(k) for k in items) or "none"
        raise CamError(f"{model_name} has no output {which!r}; its outputs are: {choices}.")
    value = items[which]
    if not isinstance(value, torch.Tensor):
        raise CamError(f"Output {which!r} of {model_name} is a {type(value).__name__}, not a tensor of scores.")
    return value


def target_scores(output: Any, target: CamTarget, batch: int, model_name: str = "this model") -> torch.Tensor:
    """The target's score for each of the ``batch`` images of one forward pass: shape (batch,).

    Raises :class:`CamError` (saying what to choose instead) when the output or channel does not exist or
    cannot give a score.
    """
    tensor = _pick(output, target.output, model_name)
    what = "the output" if target.output is None else f"output {target.output!r}"
    if not tensor.is_floating_point():
        raise CamError(f"{what.capitalize()} of {model_name} holds whole numbers, not scores; choose another.")
    if tensor.ndim == 0 or tensor.shape[0] != batch:
        raise CamError(
            f"{what.capitalize()} of {model_name} has shape {tuple(tensor.shape)}, without a batch dimension "
            f"of {batch} image(s), so no score belongs to one image; choose another output."
        )
    if target.channel is not None:
        if tensor.ndim < 2:
            raise CamError(f"{what.capitalize()} of {model_name} has no channels; leave the channel empty.")
        count = int(tensor.shape[1])
        channel = target.channel
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < count:
            raise CamError(
                f"Channel {channel!r} does not exist: {what} of {model_name} has {count}, numbered 0 to {count - 1}."
            )
        tensor = tensor[:, channel]
    return tensor.reshape(batch, -1).mean(dim=1)
