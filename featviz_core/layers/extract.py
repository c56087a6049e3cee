"""extract(): preprocess an image, run the model once, return the chosen layers' feature maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..errors import LayerError
from ..images.volume import Volume
from ..models.loaded import LoadedModel
from .discovery import LayerInfo, as_chw, layer_info
from .hooks import ActivationRecorder
from .layout import prefix_tokens

__all__ = ["Extraction", "class_scores", "extract", "probabilities_from_output"]


@dataclass(frozen=True, eq=False)
class Extraction:
    """What one forward pass showed.

    ``activations`` maps each requested layer name to a float32 array of shape (C, H, W) ((C, D, H, W) for a
    3-D model), exactly the
    values the layer produced (for a vision transformer's token layer: its patch tokens on the patch grid,
    one channel per embedding dimension). ``prefix`` holds, for token layers with them, the tokens before
    the patches (class, distillation, register tokens) as float32 (prefix, D), in the layer's order.
    ``probabilities`` are the softmax of the model's logits (None when the model's output is not one
    vector of logits). Arrays are read-only.
    """

    activations: dict[str, np.ndarray]
    probabilities: np.ndarray | None
    categories: list[str] | None
    model_key: str
    input_shape: tuple[int, ...]
    layers: tuple[str, ...] = field(default=())
    prefix: dict[str, np.ndarray] = field(default_factory=dict)

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


def class_scores(output: object) -> torch.Tensor | None:
    """The class-score tensor of a model's output: the output itself when it is one tensor, its ``logits``
    when it is a mapping that holds them (a Hugging Face ``ModelOutput``, a dict); None otherwise (a tuple,
    a backbone's ``last_hidden_state``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        logits = output.get("logits")
        if isinstance(logits, torch.Tensor):
            return logits
    return None


def _is_logits(output: object) -> bool:
    return isinstance(output, torch.Tensor) and output.ndim == 2 and output.shape[0] == 1 and output.shape[1] > 1


def already_probabilities(scores: torch.Tensor) -> bool:
    """True when a (1, K) output is a probability vector already (the model ends in a softmax, as Keras
    classifiers and many ONNX files do): all values in [0, 1], summing to 1."""
    values = scores.detach().to(torch.float64)
    return bool(values.min() >= 0 and values.max() <= 1 and abs(float(values.sum()) - 1.0) < 1e-4)


def probabilities_from_output(output: object) -> np.ndarray | None:
    """Class probabilities from a (1, K) output as float32 (K,): its softmax, or the output itself when it
    is a probability vector already (a softmax applied twice would flatten every prediction); a mapping's
    ``logits`` likewise (see :func:`class_scores`). None for any other output."""
    logits = class_scores(output)
    if logits is None or not _is_logits(logits):
        return None
    scores = logits.detach().to(torch.float32).cpu()
    probs = scores[0] if already_probabilities(scores) else torch.softmax(scores, dim=1)[0]
    array = probs.numpy().copy()
    array.flags.writeable = False
    return array


def _as_array(tensor: torch.Tensor) -> np.ndarray:
    array = tensor[0].to(torch.float32).numpy()
    if not array.flags.c_contiguous:  # a channels-last or token layer, as (C, H, W)
        array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def _prefixes(recorded: dict[str, torch.Tensor], infos: Sequence[LayerInfo]) -> dict[str, np.ndarray]:
    """The prefix tokens (prefix, D) of the token layers that have them."""
    found = {}
    for info in infos:
        tokens = prefix_tokens(recorded[info.name], info.layout) if info.layout is not None else None
        if tokens is not None:
            found[info.name] = _as_array(tokens)
    return found


def to_host(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors on the CPU, in one transfer from an accelerator (each separate copy would synchronize)."""
    if not tensors or all(t.device.type == "cpu" for t in tensors):
        return list(tensors)
    flat = torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors]).cpu()
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].reshape(t.shape))
        start += t.numel()
    return out


def extract(model: LoadedModel, image: Image.Image | Volume, layers: Sequence[str]) -> Extraction:
    """Feature maps of ``layers`` (names from :func:`list_layers`) for ``image``, and class probabilities.

    A 3-D model takes a :class:`~featviz_core.images.volume.Volume` instead of a picture and gives float32
    (C, D, H, W) maps (:meth:`~featviz_core.models.loaded.LoadedModel.preprocess_volume` feeds it).

    Hooks are registered on those layers only, under the model's lock, and removed afterwards whatever
    happens. Outputs that a later in-place operation would overwrite are copied; the rest are kept as
    they are (no copy), so extraction costs almost nothing over a bare forward pass.
    """
    names = list(dict.fromkeys(layers))
    if not names:
        raise LayerError("No layer chosen; pass at least one name from list_layers(model).")
    infos = [layer_info(model, name, spatial=True) for name in names]
    to_clone = {info.name for info in infos if info.overwritten}
    tensor = model.model_input(image).to(model.device)
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
    scores = class_scores(output)
    logits = scores if _is_logits(scores) else None
    host = to_host([recorded[name] for name in names] + ([logits] if logits is not None else []))
    return Extraction(
        activations={name: _as_array(as_chw(t, info)) for name, info, t in zip(names, infos, host, strict=False)},
        probabilities=probabilities_from_output(host[-1] if logits is not None else output),
        categories=model.categories,
        model_key=model.key,
        input_shape=tuple(tensor.shape),
        layers=tuple(names),
        prefix=_prefixes(dict(zip(names, host, strict=False)), infos),
    )
