"""The bundled offline 3-D demo model: TinyVGG3D (:mod:`.volume_net`) trained on generated shapes
(:mod:`.volume_shapes`), its weights ``tinyvgg3d.pt`` inside this package; ``python -m
featviz_core.demo.train_volume`` retrains it."""

from __future__ import annotations

from pathlib import Path

from ..models.keys import model_key
from ..models.loaded import LoadedModel, ModelSource
from ..models.volume_input import VolumePreprocessing, no_picture, no_view
from .volume_net import VOLUME_CLASSES, VOLUME_MEAN, VOLUME_SIZE, VOLUME_STD, TinyVGG3D
from .weights import load_bundled

__all__ = ["VOLUME_DEMO_NAME", "VOLUME_WEIGHTS_PATH", "load_demo_volume"]

VOLUME_DEMO_NAME = "TinyVGG3D (3-D demo)"
VOLUME_WEIGHTS_PATH = Path(__file__).resolve().parent / "tinyvgg3d.pt"
_PROVENANCE = "featviz 3-D demo model (TinyVGG3D, trained on generated shapes; offline)"


def load_demo_volume() -> LoadedModel:
    """The 3-D demo model in eval mode; any volume -> its intensities windowed to 0..1 (a CT through its
    ``window``), resampled trilinearly to 1×32×32×32, then ``(x - VOLUME_MEAN) / VOLUME_STD``.

    Each call returns a new module (callers cache it); the key is the same for the same weight file.
    """
    module = TinyVGG3D(len(VOLUME_CLASSES))
    digest = load_bundled(module, VOLUME_WEIGHTS_PATH, "3-D demo model", "python -m featviz_core.demo.train_volume")
    return LoadedModel(
        module=module,
        name=VOLUME_DEMO_NAME,
        key=model_key(ModelSource.DEMO, "tinyvgg3d", digest[:12]),
        categories=list(VOLUME_CLASSES),
        input_channels=1,
        input_size=(VOLUME_SIZE, VOLUME_SIZE),
        transform=no_picture,
        view=no_view,
        source=ModelSource.DEMO,
        provenance=_PROVENANCE,
        weights="tinyvgg3d.pt",
        input_depth=VOLUME_SIZE,
        volume_transform=VolumePreprocessing((VOLUME_SIZE,) * 3, 1, VOLUME_MEAN, VOLUME_STD),
    )
