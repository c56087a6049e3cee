"""Which CAM methods a model allows: one rule, used by :meth:`CamMethod.run <featviz_core.cam.base.CamMethod>`'s
check and by :func:`featviz_core.cam.methods.available_methods` (what pages offer).

A 3-D model allows the methods that say they work on volumes (all nine do). A model run outside PyTorch's autograd (an ONNX graph in onnxruntime, ``supports_gradients=False``) allows the
methods that need no gradients and leave every layer's output as it is (Score-CAM, Eigen-CAM). This module
reads a method's flags only, so the hook owner (:mod:`.base`) and the methods (:mod:`.methods`) can both use it.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from ..models.loaded import LoadedModel

__all__ = ["MethodNeeds", "why_unavailable"]


class MethodNeeds(Protocol):
    """What the rule reads of a CAM method class (every :class:`~featviz_core.cam.base.CamMethod` has it)."""

    title: ClassVar[str]
    uses_gradients: ClassVar[bool]
    changes_layer_output: ClassVar[bool]
    volumes: ClassVar[bool]
    volume_note: ClassVar[str]


def why_unavailable(method: type[MethodNeeds], model: LoadedModel, layer: str | None = None) -> str | None:
    """The sentence saying why ``method`` cannot run on ``model`` (at ``layer``, when given), or None when it can."""
    if model.is_volumetric and not method.volumes:
        return (
            f"{method.title} cannot run on a 3-D model like {model.name}{method.volume_note}; choose "
            "Grad-CAM, which works on volumes."
        )
    if model.supports_gradients:
        return None
    if method.uses_gradients:
        return (
            f"{method.title} needs gradients, and {model.name} runs outside PyTorch's autograd "
            "(for example through onnxruntime); choose Score-CAM or Eigen-CAM, which need none."
        )
    if method.changes_layer_output:
        where = f"layer '{layer}'" if layer is not None else "a layer"
        return (
            f"{method.title} must change {where} inside the network, which {model.name} "
            "(run outside PyTorch) does not allow; choose Score-CAM or Eigen-CAM."
        )
    return None
