"""The CAM methods, each a small subclass of :class:`~featviz_core.cam.base.CamMethod` (which owns the hooks).

Notation: ``A_k`` is channel ``k`` of the layer's activation (h, w), ``g_k = d y / d A_k`` the gradient of
the explained score ``y`` (a class logit), ``relu(x) = max(x, 0)``. Every map gets a final ReLU. The formulas
are the papers', as pytorch-grad-cam (1.5) writes them, except where noted:

* Grad-CAM (Selvaraju et al. 2017): ``w_k = mean_ij g_k``; map ``sum_k w_k A_k``.
* Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential output): per position
  ``a_k = g_k^2 / (2 g_k^2 + (sum_ab A_k) g_k^3)`` (0 where ``g_k = 0``), ``w_k = sum_ij a_k relu(g_k)``.
  pytorch-grad-cam adds 1e-6 to the denominator, which dominates it when gradients are below ~1e-3 (deep
  layers); here the denominator is exact (0 where it is 0).
* XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij (A_k / sum_ab A_k) g_k`` (0 for a channel whose sum is 0;
  pytorch-grad-cam adds 1e-7 to the sum instead).
* Layer-CAM (Jiang et al. 2021): map ``sum_k relu(g_k) * A_k``, weighted per position.
* HiResCAM (Draelos & Carin 2020): map ``sum_k g_k * A_k``, weighted per position.
* Score-CAM (Wang et al. 2020): each channel, upsampled to the input (bilinear, corners aligned) and scaled to
  0..1, masks the input (``input * mask``, i.e. towards the normalised input's zero, the mean colour);
  ``w = softmax_k(y(masked input k))``. (The paper subtracts a baseline's score first; softmax does not
  change under that shift.) One forward pass per channel, in batches.
* Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y - y_k) / y``, ``y_k`` the score with channel ``k`` of the
  layer set to zero (``w_k = y - y_k`` when ``y = 0``). One forward pass per channel, in batches.
* Eigen-CAM (Muhammad & Yeasin 2020): the projection of the centred activations (positions × channels) on
  their first principal direction; its sign (arbitrary in an SVD) is chosen so that the largest magnitude
  is positive, as pytorch-grad-cam's ``get_2d_projection_with_sign_correction``. Needs neither gradients
  nor a class: it shows the layer's dominant pattern, the same for every class.
* Eigen-Grad-CAM: the same projection of ``g_k * A_k`` (class-specific).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.loaded import LoadedModel
from .availability import why_unavailable
from .base import CamError, CamMethod

__all__ = ["CAM_METHODS", "METHODS", "available_methods", "method_class", "why_unavailable"]


def _places(a: torch.Tensor) -> tuple[int, ...]:
    """The spatial dimensions of a (C, h, w) or (C, d, h, w) activation."""
    return tuple(range(1, a.ndim))


def _relu(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, min=0)


class GradCAM(CamMethod):
    name, title = "gradcam", "Grad-CAM"
    summary = "The classic: each channel weighted by its average gradient."

    def channel_weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        assert g is not None
        return g.mean(dim=_places(a))


class GradCAMPlusPlus(CamMethod):
    name, title = "gradcam++", "Grad-CAM++"
    summary = "Counts positive gradients place by place: better for repeated objects."

    def channel_weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        assert g is not None
        g2 = g * g
        denominator = 2 * g2 + a.sum(dim=_places(a), keepdim=True) * g2 * g
        safe = (g != 0) & (denominator != 0)
        alpha = torch.where(safe, g2 / torch.where(safe, denominator, 1.0), 0.0)
        return (alpha * _relu(g)).sum(dim=_places(a))


class XGradCAM(CamMethod):
    name, title = "xgradcam", "XGrad-CAM"
    summary = "Gradients weighted by where the channel is active."

    def channel_weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        assert g is not None
        total = a.sum(dim=_places(a), keepdim=True)
        share = torch.where(total != 0, a / torch.where(total != 0, total, 1.0), 0.0)
        return (share * g).sum(dim=_places(a))


class LayerCAM(CamMethod):
    name, title = "layercam", "Layer-CAM"
    summary = "Positive gradient × activation at each place: finer, also at early layers."

    def cam_map(self, a: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        assert g is not None
        return (_relu(g) * a).sum(dim=0), _relu(g).mean(dim=_places(a))


class HiResCAM(CamMethod):
    name, title = "hirescam", "HiResCAM"
    summary = "Gradient × activation at each place: exactly what adds to the score."

    def cam_map(self, a: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        assert g is not None
        return (g * a).sum(dim=0), g.mean(dim=_places(a))


class ScoreCAM(CamMethod):
    name, title = "scorecam", "Score-CAM"
    summary = "Masks the image with each channel's map; no gradients (slow: a pass per channel)."
    uses_gradients = False
    many_passes = True

    def channel_weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        size = tuple(int(s) for s in self.input.shape[2:])
        mode = "bilinear" if len(size) == 2 else "trilinear"  # a 3-D model: masks over the volume
        activation = self.activation.to(torch.float32)

        def masked(start: int, stop: int) -> torch.Tensor:
            maps = F.interpolate(activation[:, start:stop], size=size, mode=mode, align_corners=True)[0]
            low = maps.amin(dim=_places(a), keepdim=True)
            span = maps.amax(dim=_places(a), keepdim=True) - low
            masks = torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1.0), 0.0)
            return self.input * masks[:, None].to(self.input.dtype)

        return torch.softmax(self.forward_scores(a.shape[0], masked), dim=0)


class AblationCAM(CamMethod):
    name, title = "ablationcam", "Ablation-CAM"
    summary = "Switches each channel off in turn; no gradients (slow: a pass per channel)."
    uses_gradients = False
    many_passes = True
    changes_layer_output = True

    def channel_weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        activation = self.activation

        def copies(start: int, stop: int) -> torch.Tensor:
            return self.input.repeat(stop - start, *([1] * (self.input.ndim - 1)))

        def ablated(start: int, stop: int, output: torch.Tensor) -> torch.Tensor:
            rows = activation.expand(stop - start, *activation.shape[1:]).clone()
            rows[torch.arange(stop - start), torch.arange(start, stop)] = 0
            return self.layer_form(rows.to(output.dtype))

        y = self.score
        drop = y - self.forward_scores(a.shape[0], copies, ablated)
        return drop / y if y != 0 else drop


def _first_component(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Projection of the centred (positions × channels) matrix of ``x`` (C, h, w) or (C, d, h, w) on its first
    principal direction, signed so that its largest magnitude is positive: (map (h, w), direction (C,))."""
    channels, places = int(x.shape[0]), x.shape[1:]
    rows = x.reshape(channels, -1).T
    centred = rows - rows.mean(dim=0)
    if rows.shape[0] < 2 or not bool(centred.abs().max() > 0):
        return torch.zeros(places, dtype=x.dtype), torch.zeros(channels, dtype=x.dtype)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    projection = centred @ direction
    if projection.min().abs() > projection.max().abs():
        projection, direction = -projection, -direction
    return projection.reshape(places), direction


class EigenCAM(CamMethod):
    name, title = "eigencam", "Eigen-CAM"
    summary = "The layer's main pattern; no gradients, the same for every class."
    uses_gradients = False

    def cam_map(self, a: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return _first_component(a)


class EigenGradCAM(CamMethod):
    name, title = "eigengradcam", "Eigen-Grad-CAM"
    summary = "The main pattern of gradient × activation: Eigen-CAM for one class."

    def cam_map(self, a: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        assert g is not None
        return _first_component(g * a)


METHODS: dict[str, type[CamMethod]] = {
    cls.name: cls
    for cls in (
        GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, ScoreCAM, AblationCAM, EigenCAM, EigenGradCAM
    )
}
"""Every method by name (what :func:`~featviz_core.cam.base.cam` accepts)."""

CAM_METHODS: dict[str, str] = {name: f"{cls.title}: {cls.summary}" for name, cls in METHODS.items()}
"""Method name -> one plain line on what it does (for menus)."""


def method_class(method: str) -> type[CamMethod]:
    """The class of ``method``; :class:`CamError` listing the choices when it is unknown."""
    found = METHODS.get(method) if isinstance(method, str) else None
    if found is None:
        raise CamError(f"'{method}' is not a CAM method; choose one of: {', '.join(METHODS)}.")
    return found


def available_methods(model: LoadedModel) -> dict[str, str | None]:
    """Every method by name (in menu order) -> None when it runs on ``model``, else the sentence saying why not.
    The same rule refuses a method when it runs (:func:`why_unavailable`)."""
    return {name: why_unavailable(cls, model) for name, cls in METHODS.items()}
