"""Does this explanation depend on the model? The cascading-randomisation check of Adebayo et al.
("Sanity Checks for Saliency Maps", NeurIPS 2018).

Some saliency maps barely change when a network's weights are replaced by random ones: they show the image,
not what the model learned. :func:`sanity_check` computes the same map twice, on the model and on a private
copy whose layers are re-initialised from the output down to the chosen layer (cascading randomisation, all
those layers at once), and compares the two maps:

* **Spearman's rank correlation** of the two maps, and **SSIM** (Wang et al. 2004: Gaussian window of
  11×11, sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, data range 1, the mean over the positions where the window
  fits), both on the maps scaled to 0..1 (each by its own maximum) and stretched bilinearly to the model's
  input size, as they lie over the image (at least 11×11);
* a plain verdict from the larger of the two numbers (the cautious reading): below 0.5 the map "changes a
  lot" (it reflects the model), from 0.8 it "barely changes" (be careful), in between it changes partly.

The copy: made under the model's lock, it shares every tensor of the layers that are not re-initialised
with the shared model (read only, nothing is copied) and owns new ones for the others, so it costs the
memory of the re-initialised layers only; it is used by this call alone (its own lock) and freed before
the function returns. Re-initialisation, seeded by ``seed`` through a private generator (the global random
state is not touched): weights as PyTorch initialises a new layer (uniform in ±1/sqrt(fan-in), biases with
the layer's fan-in), normalisation layers reset to their untrained state (weight 1, bias 0, running mean 0,
running variance 1). "Down to the chosen layer" means every module with weights whose call comes at or after
the chosen layer's in the forward pass (list_layers' order), including the chosen layer itself.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..images.volume import Volume
from ..layers.discovery import layer_info, list_layers
from ..models.keys import model_key
from ..models.loaded import LoadedModel
from .base import CamError, CamResult, CamTarget, Progress
from .methods import method_class
from .resize import upsample

__all__ = ["SanityResult", "randomized_modules", "sanity_check", "spearman", "ssim"]

Level = Literal["model", "partly", "image", "empty"]
CHANGES_A_LOT = 0.5
BARELY_CHANGES = 0.8


@dataclass(frozen=True, eq=False)
class SanityResult:
    """Both maps and how alike they are. ``spearman`` is NaN when a map is constant (e.g. empty).
    ``level``: "model" (changes a lot), "partly", "image" (barely changes) or "empty" (nothing to check).
    ``randomized`` lists the modules re-initialised, from the output down; ``size`` is (H, W) of the
    comparison ((D, H, W) for a 3-D model)."""

    original: CamResult
    randomized: CamResult
    spearman: float
    ssim: float
    level: Level
    verdict: str
    randomized_modules: tuple[str, ...]
    seed: int
    size: tuple[int, ...]


# ---------------------------------------------------------------------------------------------------
# The two numbers


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as scipy.stats.rankdata's default)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    edges = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat((edges[:-1] + edges[1:] + 1) / 2.0, np.diff(edges))
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two arrays of the same shape (NaN when either is constant)."""
    x = _ranks(np.asarray(a, dtype=np.float64).ravel())
    y = _ranks(np.asarray(b, dtype=np.float64).ravel())
    if x.size != y.size:
        raise ValueError("both maps must have the same number of values")
    x -= x.mean()
    y -= y.mean()
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator > 0 else float("nan")


def _window(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def _filter(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable filtering along every axis, where the window fits entirely ("valid")."""
    for axis in range(image.ndim):
        image = np.lib.stride_tricks.sliding_window_view(image, taps.size, axis=axis) @ taps
    return image


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity of two 2-D maps of at least 11×11, or two 3-D maps of at least 11×11×11
    (the same Gaussian window along the third axis) (see the module's notes)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim not in (2, 3) or min(x.shape) < 11:
        raise ValueError("SSIM takes two 2-D (or 3-D) maps of the same shape, at least 11 along each side")
    taps = _window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _filter(x, taps), _filter(y, taps)
    sxx = _filter(x * x, taps) - mx * mx
    syy = _filter(y * y, taps) - my * my
    sxy = _filter(x * y, taps) - mx * my
    values = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(values.mean())


# ---------------------------------------------------------------------------------------------------
# The randomised copy


def randomized_modules(model: LoadedModel, layer: str) -> tuple[str, ...]:
    """The modules whose weights the check re-initialises, from the output down to ``layer`` (included)."""
    infos = list_layers(model)
    layer_info(model, layer, spatial=True)  # a clear error for an unknown layer
    start = next(i for i, info in enumerate(infos) if info.name == layer)
    modules = dict(model.module.named_modules())
    chosen: list[str] = []
    for info in infos[start:]:
        module = modules[info.module_name]
        own = itertools.chain(module.parameters(recurse=False), module.buffers(recurse=False))
        if info.calls > 0 and info.module_name not in chosen and next(own, None) is not None:
            chosen.append(info.module_name)
    return tuple(reversed(chosen))


def _own_tensors(module: nn.Module) -> Iterable[torch.Tensor]:
    return itertools.chain(module.parameters(recurse=False), module.buffers(recurse=False))


def _uniform(shape: torch.Size, bound: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    values = torch.empty(shape, dtype=torch.float64).uniform_(-bound, bound, generator=generator)
    return values.to(device=like.device, dtype=like.dtype)


@torch.no_grad()
def _reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    if "Norm" in type(module).__name__:  # BatchNorm, LayerNorm, GroupNorm, timm's BatchNormAct2d...
        for name, tensor in itertools.chain(
            module.named_parameters(recurse=False), module.named_buffers(recurse=False)
        ):
            if tensor.is_floating_point():
                tensor.fill_(1.0 if name in ("weight", "running_var") else 0.0)
            elif name == "num_batches_tracked":
                tensor.zero_()
        return
    matrices = [p for p in module.parameters(recurse=False) if p.ndim >= 2]
    fan_in = int(matrices[0][0].numel()) if matrices else None
    for parameter in module.parameters(recurse=False):
        if not parameter.is_floating_point():
            continue
        fan = int(parameter[0].numel()) if parameter.ndim >= 2 else (fan_in or int(parameter.numel()))
        parameter.copy_(_uniform(parameter.shape, 1.0 / math.sqrt(max(fan, 1)), generator, parameter))


def _randomized_copy(model: LoadedModel, names: tuple[str, ...], seed: int) -> LoadedModel:
    """A private copy of ``model`` with ``names`` re-initialised; every other tensor is shared, not copied."""
    module = model.module
    with model.lock:  # no other session's hook can be on the module while it is copied
        modules = dict(module.named_modules())
        fresh = {id(t) for name in names for t in _own_tensors(modules[name])}
        memo: dict[int, object] = {
            id(t): t for t in itertools.chain(module.parameters(), module.buffers()) if id(t) not in fresh
        }
        clone = copy.deepcopy(module, memo)
    generator = torch.Generator().manual_seed(int(seed))
    copies = dict(clone.named_modules())
    for name in names:
        _reinitialise(copies[name], generator)
    return dataclasses.replace(
        model,
        module=clone,
        key=model_key(model.key, "randomized", seed),
        provenance=f"{model.provenance}, layers re-initialised for the sanity check",
        lock=threading.RLock(),
    )


# ---------------------------------------------------------------------------------------------------
# The check


def _verdict(original: CamResult, randomized: CamResult, rho: float, structure: float) -> tuple[Level, str]:
    if float(original.cam.max()) <= 0:
        return "empty", "The map is empty for this score at this layer, so there is nothing to compare."
    numbers = (f"rank correlation {rho:.2f}" if math.isfinite(rho) else "rank correlation undefined") + (
        f", SSIM {structure:.2f}"
    )
    if float(randomized.cam.max()) <= 0:
        return "model", (
            f"This map disappears when the model's learned weights are replaced by random ones ({numbers}): "
            "it reflects what the model learned."
        )
    similarity = max(rho, structure) if math.isfinite(rho) else structure
    if similarity < CHANGES_A_LOT:
        return "model", (
            f"This map changes a lot when the model's learned weights are replaced by random ones ({numbers}): "
            "it reflects what the model learned."
        )
    if similarity < BARELY_CHANGES:
        return "partly", (
            f"This map changes only partly when the model's learned weights are replaced by random ones "
            f"({numbers}): part of it may come from the image rather than from what the model learned. "
            "Read it with care."
        )
    return "image", (
        f"This map barely changes when the model's learned weights are replaced by random ones ({numbers}): "
        "it may show the image more than what the model learned. Be careful."
    )


def _phase(progress: Progress | None, phase: int, phases: int) -> Progress | None:
    if progress is None:
        return None

    def report(done: int, total: int, preview: object = None) -> None:
        progress(phase * total + done, phases * total, preview)

    return report


def sanity_check(
    model: LoadedModel,
    image: Image.Image | Volume,
    layer: str,
    class_index: int | None = None,
    method: str = "gradcam",
    *,
    seed: int = 0,
    target: CamTarget | None = None,
    progress: Progress | None = None,
    original: CamResult | None = None,
) -> SanityResult:
    """The ``method`` map of ``class_index`` (or ``target``) at ``layer`` on the model and on a copy whose
    layers from the output down to ``layer`` are re-initialised (seeded), with their Spearman rank
    correlation, SSIM and a plain verdict (see the module's notes).

    ``original``, when given, is the map already computed on the model for the same layer and method (it
    is not computed again). The randomised map explains the same score as the original (the same class,
    not the random model's favourite). The model is left exactly as it was.
    """
    cls = method_class(method)
    if not model.supports_gradients:
        raise CamError(
            f"The sanity check replaces weights inside PyTorch, and {model.name} runs outside it (for example "
            "through onnxruntime), so it cannot be checked here."
        )
    info = layer_info(model, layer, spatial=True)
    names = randomized_modules(model, layer)
    phases = (original is None) + 1
    if original is None:
        original = cls(model, layer, info=info, progress=_phase(progress, 0, phases)).run(image, class_index, target)
    elif original.layer != layer or original.method != cls.name:
        raise CamError("The map given as the original is of another layer or method; leave it out.")
    copied = _randomized_copy(model, names, seed)
    try:
        randomized = cls(copied, layer, info=info, progress=_phase(progress, phases - 1, phases)).run(
            image, None, original.target
        )
    finally:
        del copied
    size = tuple(max(int(s), 11) for s in model.input_shape[1:])  # (H, W), or (D, H, W) for a 3-D model
    a = upsample(original.normalized, size)
    b = upsample(randomized.normalized, size)
    rho, structure = spearman(a, b), ssim(a, b)
    level, verdict = _verdict(original, randomized, rho, structure)
    return SanityResult(
        original=original,
        randomized=randomized,
        spearman=rho,
        ssim=structure,
        level=level,
        verdict=verdict,
        randomized_modules=names,
        seed=int(seed),
        size=size,
    )
