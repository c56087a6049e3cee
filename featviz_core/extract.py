"""extract(): preprocess an image, run the model once, return the chosen layers' feature maps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .errors import LayerError
from .hooks import ActivationRecorder, as_chw, layer_info
from .models import LoadedModel

__all__ = ["Extraction", "extract", "probabilities_from_output"]


@dataclass(frozen=True, eq=False)
class Extraction:
    """What one forward pass showed.

    ``activations`` maps each requested layer name to a float32 array of shape (C, H, W), exactly the
    values the layer produced. ``probabilities`` are the softmax of the model's logits (None when the
    model's output is not one vector of logits). Arrays are read-only.
    """

    activations: dict[str, np.ndarray]
    probabilities: np.ndarray | None
    categories: list[str] | None
    model_key: str
    input_shape: tuple[int, ...]
    layers: tuple[str, ...] = field(default=())

    def category(self, index: int) -> str:
        if self.categories is not None and 0 <= index < len(self.categories):
            return self.categories[index]
        return f"class {index}"

    def top_k(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable classes as (name, probability), most probable first."""
        if self.probabilities is None or k <= 0:
            return []
        k = min(k, self.probabilities.size)
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.category(int(i)), float(self.probabilities[i])) for i in order]

    def top_k_indices(self, k: int = 5) -> list[int]:
        if self.probabilities is None or k <= 0:
            return []
        return [int(i) for i in np.argsort(-self.probabilities, kind="stable")[:k]]


def probabilities_from_output(output: object) -> np.ndarray | None:
    """Softmax of a (1, K) logits tensor as float32 (K,); None for any other output."""
    if isinstance(output, torch.Tensor) and output.ndim == 2 and output.shape[0] == 1 and output.shape[1] > 1:
        probs = torch.softmax(output.detach().to(torch.float32), dim=1)[0]
        array = probs.numpy().copy()
        array.flags.writeable = False
        return array
    return None


def _as_array(tensor: torch.Tensor) -> np.ndarray:
    array = tensor[0].to(torch.float32).numpy()
    if not array.flags.c_contiguous:  # a channels-last layer, permuted to (C, H, W)
        array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def extract(model: LoadedModel, image: Image.Image, layers: Sequence[str]) -> Extraction:
    """Feature maps of ``layers`` (names from :func:`list_layers`) for ``image``, and class probabilities.

    Hooks are registered on those layers only, under the model's lock, and removed afterwards whatever
    happens. Outputs that a later in-place operation would overwrite are copied; the rest are kept as
    they are (no copy), so extraction costs almost nothing over a bare forward pass.
    """
    names = list(dict.fromkeys(layers))
    if not names:
        raise LayerError("No layer chosen; pass at least one name from list_layers(model).")
    infos = [layer_info(model, name, spatial=True) for name in names]
    to_clone = {info.name for info in infos if info.overwritten}
    tensor = model.preprocess(image)
    with (
        ActivationRecorder(model.module, names, clone=to_clone, lock=model.lock) as recorder,
        torch.inference_mode(),
    ):
        output = model.module(tensor)
        recorded = dict(recorder.outputs)
    missing = [name for name in names if name not in recorded]
    if missing:
        raise LayerError(
            f"Layer '{missing[0]}' did not run for this image; choose another from list_layers(model)."
        )
    return Extraction(
        activations={name: _as_array(as_chw(recorded[name], info)) for name, info in zip(names, infos, strict=True)},
        probabilities=probabilities_from_output(output),
        categories=model.categories,
        model_key=model.key,
        input_shape=tuple(tensor.shape),
        layers=tuple(names),
    )
