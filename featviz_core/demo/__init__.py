"""The bundled offline demo model: a TinyVGG trained on generated shapes.

``load_demo()`` needs no network and no download: the weights (``tinyvgg.pt``, a float32 state dict) ship
inside this package. See ``MODEL_CARD.md`` beside this file for what the model is and how it was trained,
and ``python -m featviz_core.demo.train`` to retrain it.
"""

from __future__ import annotations

from pathlib import Path

from torchvision import transforms as T

from ..models.keys import model_key
from ..models.loaded import LoadedModel, ModelSource, view_transform
from .net import CLASSES, INPUT_SIZE, MEAN, STD, TinyVGG
from .volume_model import VOLUME_DEMO_NAME, VOLUME_WEIGHTS_PATH, load_demo_volume
from .weights import load_bundled

__all__ = ["DEMO_CLASSES", "DEMO_NAME", "VOLUME_DEMO_NAME", "VOLUME_WEIGHTS_PATH", "WEIGHTS_PATH", "load_demo",
           "load_demo_volume"]

DEMO_CLASSES: tuple[str, ...] = CLASSES
"""The demo model's classes, in the order of its outputs."""

DEMO_NAME = "TinyVGG (demo)"
WEIGHTS_PATH = Path(__file__).resolve().parent / "tinyvgg.pt"
_PROVENANCE = "featviz demo model (TinyVGG, trained on generated shapes; offline)"



def load_demo() -> LoadedModel:
    """The demo model, in eval mode, with its preprocessing (any RGB image -> (1, 3, 64, 64)).

    Non-square images are resized so the shorter side is 64 pixels, then centre-cropped to 64 x 64.
    Each call returns a new module (callers cache it); the key is the same for the same weight file.
    """
    module = TinyVGG(len(DEMO_CLASSES))
    digest = load_bundled(module, WEIGHTS_PATH, "demo model", "python -m featviz_core.demo.train")
    view = view_transform(INPUT_SIZE, INPUT_SIZE)
    transform = T.Compose([view, T.ToTensor(), T.Normalize(MEAN, STD)])
    return LoadedModel(
        module=module,
        name=DEMO_NAME,
        key=model_key(ModelSource.DEMO, "tinyvgg", digest[:12]),
        categories=list(DEMO_CLASSES),
        input_channels=3,
        input_size=(INPUT_SIZE, INPUT_SIZE),
        transform=transform,
        view=view,
        source=ModelSource.DEMO,
        provenance=_PROVENANCE,
        weights="tinyvgg.pt",
    )
