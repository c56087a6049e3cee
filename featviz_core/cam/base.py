"""Class activation maps (the CAM family): which places of a layer's feature maps drive one score.

Standard Grad-CAM (Selvaraju et al., 2017): with ``A`` the layer's activation (C, h, w) and ``y_c`` the
class *logit* (before softmax), the weight of channel ``k`` is ``alpha_k = mean_ij d y_c / d A_k[i, j]`` and
the map is ``ReLU(sum_k alpha_k A_k)``, at the layer's resolution. The other methods
(:mod:`featviz_core.cam.methods`: Grad-CAM++, XGrad-CAM, Layer-CAM, HiResCAM, Score-CAM, Eigen-CAM...) are
small subclasses of :class:`CamMethod`, the one owner of the hooks, in the shape of pytorch-grad-cam: each
says how ``A`` and ``dy/dA`` become a map; :class:`CamMethod` does everything that touches the model.

How it is computed, and why:

* under the model's lock, in eval mode, inside an :class:`~featviz_core.layers.hooks.ActivationRecorder` that
  restores every ``training`` flag and releases the lock whatever happens;
* for gradient methods, one forward hook on the chosen call of the layer (removed in ``finally``). It keeps
  ``A`` as a fresh leaf tensor that requires grad and *returns a copy of it* as the layer's output: the rest
  of the network computes on the copy, so an in-place operation after the layer (torchvision's
  ``ReLU(inplace=True)`` right after a ``bn``) can neither change the recorded ``A`` nor break autograd;
  methods without gradients record a copy of ``A`` through the recorder;
* the part of the forward pass before the layer runs without autograd; the hook switches autograd on for
  the rest, and the ``no_grad`` context restores the caller's mode on exit;
* the gradient is ``torch.autograd.grad(y_c, A)``: nothing is accumulated into any parameter's ``.grad``,
  and no parameter's ``requires_grad`` is touched. This also works for a model whose parameters are all
  frozen;
* methods that run many forward passes (Score-CAM) take the lock for one batch at a time and report
  ``progress(done, total, None)`` between batches, outside the lock, so other sessions are never blocked
  for the whole job; when the callback raises, nothing is left behind.

The score explained is a class logit for classifiers, or any :class:`~featviz_core.cam.targets.CamTarget`
(one output and channel of a model that is not a classifier).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from ..errors import FeatvizError, LayerError
from ..images.volume import Volume
from ..layers.discovery import LayerInfo, as_chw, layer_info, list_layers
from ..layers.extract import class_scores, probabilities_from_output
from ..layers.hooks import ActivationRecorder, Tap
from ..layers.layout import from_chw, prefix_tokens
from ..models.loaded import LoadedModel
from .targets import CamError, CamTarget, target_scores

__all__ = [
    "CamError",
    "CamMethod",
    "CamResult",
    "CamTarget",
    "Progress",
    "auto_batch",
]

Progress = Callable[[int, int, Any], None]
"""``progress(done, total, preview)``: how many of the forward passes of a long method are done."""


@dataclass(frozen=True, eq=False)
class CamResult:
    """One class activation map and what it was computed for. Arrays are float32 and read-only.

    ``cam`` is the raw map (h, w) at the layer's resolution ((d, h, w) for a 3-D model: weights over D, H, W), after the method's ReLU, not normalised, so
    maps of different classes or images can be compared on one scale. ``normalized`` is ``cam / cam.max()``
    (all zeros when the map is zero everywhere, i.e. no place of this layer speaks for the score).
    ``weights`` are the channel weights (C,) (for methods whose weights vary by position, their mean over
    positions; for Eigen-CAM the principal direction). ``activations_mean`` is the layer's activation
    averaged over channels (h, w): "what fires", beside the map's "what drives this score".
    ``score`` is the explained score (the class logit ``y_c``); ``probability`` its softmax probability
    (NaN, and ``probabilities`` empty, for a model that is not a classifier). ``method`` is the name in
    :data:`~featviz_core.cam.methods.CAM_METHODS`; ``target`` what was explained (for a classifier,
    ``CamTarget(channel=class_index)``). ``class_index`` is the class (or the target's channel; -1 for a
    whole output).
    """

    cam: np.ndarray
    normalized: np.ndarray
    class_index: int
    class_name: str
    probability: float
    probabilities: np.ndarray
    layer: str
    activations_mean: np.ndarray
    weights: np.ndarray
    score: float
    method: str = "gradcam"
    target: CamTarget | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """(h, w) of the map, (d, h, w) for a 3-D model: the layer's spatial resolution."""
        return tuple(int(s) for s in self.cam.shape)


# ---------------------------------------------------------------------------------------------------
# The gradient tap


class _GradientLeaf:
    """The gradient hook: keeps the layer's output as a leaf that requires grad, hands on a copy."""

    def __init__(self) -> None:
        self.activation: torch.Tensor | None = None

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        leaf = output.detach().requires_grad_(True)
        self.activation = leaf
        torch.set_grad_enabled(True)  # restored by the caller's ``torch.no_grad()`` on exit
        return leaf.clone()


# ---------------------------------------------------------------------------------------------------
# The hook owner


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    array.flags.writeable = False
    return array


BATCH_MEMORY = 256 * 2**20
"""Bytes a batch of forward passes may take for its largest layer (its input and output together)."""


def auto_batch(model: LoadedModel, limit: int = 32) -> int:
    """How many images one batch of forward passes takes: as many as keep the largest layer's input and
    output of the whole batch under :data:`BATCH_MEMORY` (resnet18 at 224 px: 32; VGG16: 10), at most
    ``limit``. Batches of 16-32 run a pass 4-7 times faster than one image at a time on a CPU (bench/cams.py)."""
    sizes = [int(np.prod(info.shape)) for info in list_layers(model) if info.shape]
    largest = max([*sizes, int(np.prod(model.input_shape))])
    return max(1, min(limit, BATCH_MEMORY // max(1, 2 * 4 * largest)))


def _check_class(index: Any, classes: int) -> int:
    try:
        if isinstance(index, bool):
            raise TypeError
        value = operator.index(index)
    except TypeError:
        raise CamError(f"The class must be a whole number from 0 to {classes - 1}, not {index!r}.") from None
    if not 0 <= value < classes:
        raise CamError(
            f"Class {value} does not exist: this model has {classes} classes, numbered 0 to {classes - 1}."
        )
    return value


class CamMethod:
    """One CAM method on one layer of one model. Subclasses say how the map is made, in the shape of
    pytorch-grad-cam: override :meth:`channel_weights` (``a``, ``g`` -> (C,) weights; the map is
    ``sum_k w_k A_k``), or :meth:`cam_map` for maps weighted per position or methods that need more forward
    passes (:meth:`forward_scores`). ``a`` is the activation and ``g`` its gradient (None when
    ``uses_gradients`` is False), both float64 (C, h, w) on the CPU ((C, d, h, w) for a 3-D model: write
    reductions over ``a.shape[1:]``). ReLU and normalisation follow.

    Everything that touches the model is here: hooks, the lock, eval mode, the device, the checks.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    uses_gradients: ClassVar[bool] = True
    many_passes: ClassVar[bool] = False
    """Runs one forward pass per channel (slow: run it as a background job with a progress bar)."""
    changes_layer_output: ClassVar[bool] = False
    """Runs the network with a changed layer output (impossible for a graph run outside PyTorch)."""
    volumes: ClassVar[bool] = True
    """Runs on 3-D models (5-D feature maps); a method that cannot sets False and says why in ``volume_note``."""
    volume_note: ClassVar[str] = ""
    batch_size: ClassVar[int | None] = None
    """Forward passes per batch; None: as many as fit in :data:`BATCH_MEMORY` (at most 32)."""

    def __init__(
        self,
        model: LoadedModel,
        layer: str,
        *,
        info: LayerInfo | None = None,
        progress: Progress | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.model = model
        self.layer = layer
        self.info = info if info is not None else layer_info(model, layer, spatial=True)
        self.progress = progress
        self.batch = max(1, int(batch_size or type(self).batch_size or auto_batch(model)))
        self.input: torch.Tensor = torch.empty(0)  # (1, C, H, W) on model.device, set by run()
        self.activation: torch.Tensor = torch.empty(0)  # (1, C, h, w) on model.device
        self.prefix: torch.Tensor | None = None  # a token layer's class/register tokens (1, prefix, D)
        self.target = CamTarget()
        self.score = 0.0

    # --- what a method says -----------------------------------------------------------------------

    def channel_weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def cam_map(self, a: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(map before ReLU (h, w) or (d, h, w), weights (C,))."""
        weights = self.channel_weights(a, g)
        return torch.einsum("k,k...->...", weights, a), weights

    # --- what a method may use ------------------------------------------------------------------

    def layer_form(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps (B, C, h, w) in the form the layer gives them: channels-last permuted back, a token layer's
        patches as tokens after its prefix tokens (to hand the rest of the network a changed output)."""
        layout = self.info.layout
        if layout is None:
            return maps.permute(0, 2, 3, 1).contiguous() if self.info.channels_last else maps
        return from_chw(maps, layout, self.prefix)

    def forward_scores(
        self,
        count: int,
        make_input: Callable[[int, int], torch.Tensor],
        replace: Callable[[int, int, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The target's score for ``count`` forward passes, ``self.batch`` at a time: float64 (count,).

        ``make_input(start, stop)`` gives the batch of inputs ``start..stop`` (on the model's device);
        ``replace(start, stop, output)``, if given, the layer's output to use instead of ``output`` (same
        layout as the module gives it). The lock is held for one batch; ``progress(done, count, None)`` is
        called between batches, outside the lock. A model that refuses a batch of several images (a graph
        exported for one image at a time) is run one image at a time.
        """
        scores = torch.empty(count, dtype=torch.float64)
        self._report(0, count)
        start = 0
        while start < count:
            stop = min(count, start + self.batch)
            try:
                values = self._batch_scores(make_input, replace, start, stop)
            except FeatvizError:
                raise
            except Exception:
                if start > 0 or self.batch == 1:
                    raise
                # A graph made for one image at a time (common in ONNX files): go on one by one.
                self.batch = 1
                continue
            scores[start:stop] = values
            start = stop
            self._report(stop, count)
        return scores

    def _batch_scores(
        self,
        make_input: Callable[[int, int], torch.Tensor],
        replace: Callable[[int, int, torch.Tensor], torch.Tensor] | None,
        start: int,
        stop: int,
    ) -> torch.Tensor:
        """One batch: inputs ``start..stop`` through the model under its lock, their scores (float64, CPU)."""
        model = self.model
        with torch.no_grad():
            batch = make_input(start, stop)
            taps = [] if replace is None else [
                Tap(self.layer, clone=False, replace=functools.partial(replace, start, stop))
            ]
            with ActivationRecorder(model.module, taps=taps, lock=model.lock):
                output = model.module(batch)
            return target_scores(output, self.target, stop - start, model.name).detach().to("cpu", torch.float64)

    def _report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total, None)

    # --- the run --------------------------------------------------------------------------------

    def _check_model(self) -> None:
        from .availability import why_unavailable  # the rule pages use too (methods.available_methods)

        reason = why_unavailable(type(self), self.model, self.layer)
        if reason is not None:
            raise CamError(reason)

    def _resolve(
        self, output: Any, class_index: int | None, target: CamTarget | None
    ) -> tuple[CamTarget, np.ndarray | None]:
        probabilities = probabilities_from_output(output)
        if target is not None:
            if class_index is not None:
                raise CamError("Give either a class or a target to explain, not both.")
            if not isinstance(target, CamTarget):
                raise CamError(f"The target must be a CamTarget, not {type(target).__name__}.")
            return target, probabilities
        if probabilities is None:
            what = (
                f"a tensor of shape {tuple(output.shape)}"
                if isinstance(output, torch.Tensor)
                else f"a {type(output).__name__}"
            )
            raise CamError(
                f"{self.title} needs a classifier whose output is one vector of class scores (1, K), or a "
                f"chosen score: {self.model.name} gives {what}. Pick one of its outputs and a channel to "
                "explain (describe_outputs(model) lists them), or use the feature-map view."
            )
        classes = int(probabilities.shape[0])
        if class_index is None:
            scores = class_scores(output)
            assert scores is not None  # probabilities came from them
            index = int(torch.argmax(scores[0]).item())
        else:
            index = _check_class(class_index, classes)
        return CamTarget(channel=index), probabilities

    def _forward(self) -> tuple[Any, torch.Tensor | None]:
        """One forward pass of ``self.input`` under the lock, recording the layer: (output, raw activation)."""
        module = self.model.module
        if self.uses_gradients:
            leaf = _GradientLeaf()
            with ActivationRecorder(module, taps=[Tap(self.layer, clone=False, replace=leaf)], lock=self.model.lock):
                output = module(self.input)
            return output, leaf.activation
        with ActivationRecorder(module, [self.layer], clone=True, lock=self.model.lock) as recorder:
            output = module(self.input)
        return output, recorder.outputs.get(self.layer)

    def run(
        self, image: Image.Image | Volume, class_index: int | None = None, target: CamTarget | None = None
    ) -> CamResult:
        """The map for ``image`` (a Volume for a 3-D model): of ``class_index`` (default: the most probable
        class) or of ``target``."""
        self._check_model()
        model = self.model
        # ``inference_mode(False)``: this also works when the caller is inside ``torch.inference_mode()``.
        with torch.inference_mode(False), torch.no_grad():
            self.input = model.model_input(image).detach().to(model.device)
            output, raw = self._forward()
            # Any backward pass below runs outside the lock: it only reads the graph and the parameters.
            if raw is None:
                raise LayerError(
                    f"Layer '{self.layer}' did not run for this image; choose another from list_layers(model)."
                )
            self.target, probabilities = self._resolve(output, class_index, target)
            score = target_scores(output, self.target, 1, model.name)[0]
            grad = None
            if self.uses_gradients:
                if not score.requires_grad:
                    raise CamError(
                        f"The score explained does not depend on layer '{self.layer}' through operations "
                        "autograd can follow; choose a layer nearer the output from list_layers(model)."
                    )
                (grad,) = torch.autograd.grad(score, raw, allow_unused=True)
                if grad is None:
                    raise CamError(
                        f"The scores of {model.name} do not depend on layer '{self.layer}'; choose a layer "
                        "that feeds the output from list_layers(model)."
                    )
            self.score = float(score.detach())
            self.activation = as_chw(raw.detach(), self.info)
            layout = self.info.layout
            self.prefix = prefix_tokens(raw.detach(), layout) if layout is not None else None
            a = self.activation[0].to("cpu", torch.float64)
            g = as_chw(grad.detach(), self.info)[0].to("cpu", torch.float64) if grad is not None else None
            del output, score, grad, raw
            cam_map, weights = self.cam_map(a, g)
            cam = torch.relu(cam_map).numpy()
            activations_mean = a.mean(dim=0).numpy()
            weights_array = weights.detach().to(torch.float64).numpy()
        self.input = self.activation = torch.empty(0)
        self.prefix = None
        return self._result(cam, activations_mean, weights_array, probabilities)

    def _result(
        self, cam: np.ndarray, mean: np.ndarray, weights: np.ndarray, probabilities: np.ndarray | None
    ) -> CamResult:
        target = self.target
        peak = float(cam.max()) if cam.size else 0.0
        normalized = cam / peak if peak > 0 else np.zeros_like(cam)
        classifier = probabilities is not None and target.output is None and target.channel is not None
        index = target.channel if target.channel is not None else -1
        return CamResult(
            cam=_readonly(cam),
            normalized=_readonly(normalized),
            class_index=index,
            class_name=self.model.category(index) if classifier else target.label(),
            probability=float(probabilities[index]) if classifier and probabilities is not None else float("nan"),
            probabilities=_readonly(probabilities if probabilities is not None else np.zeros(0)),
            layer=self.layer,
            activations_mean=_readonly(mean),
            weights=_readonly(weights),
            score=self.score,
            method=self.name,
            target=target,
        )
