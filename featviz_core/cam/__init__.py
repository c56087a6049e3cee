"""Where the model looks: class activation maps.

:mod:`.base` holds :class:`CamMethod`, the one class that runs the model for a CAM (lock, taps, gradients),
:mod:`.methods` the nine methods registered by name, :mod:`.targets` what score is explained, :mod:`.api` the
public functions, :mod:`.sanity` the model-randomization check.

``featviz_core.cam`` is both this package and the function :func:`~featviz_core.cam.api.cam`:
``featviz_core.cam(model, image, layer, method="gradcam++")`` runs a CAM, ``featviz_core.cam.CamMethod`` is the
class, and ``from featviz_core.cam import cam`` gives the plain function.
"""

import sys
import types
from typing import Any

from .api import cam, default_cam_layer, gradcam
from .base import CamMethod, CamResult, Progress, auto_batch
from .methods import CAM_METHODS, METHODS, method_class
from .resize import upsample, upsample_plane
from .sanity import SanityResult, sanity_check
from .targets import (
    CamError,
    CamTarget,
    OutputInfo,
    describe_outputs,
    is_classifier,
    no_target_reason,
    target_scores,
)

__all__ = [
    "CAM_METHODS",
    "METHODS",
    "CamError",
    "CamMethod",
    "CamResult",
    "CamTarget",
    "OutputInfo",
    "Progress",
    "SanityResult",
    "auto_batch",
    "cam",
    "default_cam_layer",
    "describe_outputs",
    "gradcam",
    "is_classifier",
    "method_class",
    "no_target_reason",
    "sanity_check",
    "target_scores",
    "upsample",
    "upsample_plane",
]


class _CallablePackage(types.ModuleType):
    """This package, callable as :func:`cam` (so ``featviz_core.cam`` is the function and the package at once)."""

    def __call__(self, *args: Any, **kwargs: Any) -> CamResult:
        return cam(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
