"""A model class of the user's own: ``package.module:factory`` (uvicorn's ``module:attribute`` convention).

This imports and runs the user's code in this process, so it is only ever taken from the command line of
a local run (``featviz run --model ...``, ``make run MODEL=...``), never from a browser. Weights are data:
read with ``torch.load(weights_only=True)`` or safetensors, like every checkpoint.

The attribute may be an ``nn.Module`` instance, an ``nn.Module`` subclass (built with no arguments) or a
function with no required arguments returning an ``nn.Module``, or ``(module, Preprocessing(...))``, or a
dict ``{"model": module, "input_size": ..., "normalization": ...}`` with :class:`Preprocessing`'s fields.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import itertools
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import ModelLoadError
from ..class_names import parse_class_names
from ..keys import bytes_digest, model_key, names_digest
from ..loaded import LoadedModel, ModelSource, Preprocessing, standard_preprocessing
from ..volume_input import VolumePreprocessing, no_picture, no_view
from .input_size import accepted_size
from .state_dicts import read_weights

__all__ = ["load_from_code", "load_module", "resolve_factory"]

_log = logging.getLogger("featviz")


def _import(module_part: str) -> Any:
    if module_part.endswith(".py"):
        path = Path(module_part).expanduser().resolve()
        if not path.is_file():
            raise ModelLoadError(f"There is no Python file {module_part}.")
        name = f"featviz_user_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"{module_part} cannot be imported as a Python module.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # `featviz run --model mypkg.net:build` from the project folder
    return importlib.import_module(module_part)


def resolve_factory(spec: str) -> Any:
    """The object ``spec`` (``"pkg.module:attr"`` or ``"path/to/file.py:attr"``) names; ModelLoadError
    saying what is wrong otherwise (the user's own error message included: it is their code)."""
    module_part, sep, attribute = spec.strip().rpartition(":")
    if not sep or not module_part or not attribute:
        raise ModelLoadError(
            f"'{spec}' is not of the form package.module:factory (for example mynets.faces:build_model)."
        )
    try:
        module = _import(module_part)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's import error, in their words
        _log.warning("import of %s failed", module_part, exc_info=True)
        raise ModelLoadError(
            f"Could not import {module_part}: {type(exc).__name__}: {exc}. Run featviz from the folder that "
            "holds your package, or install it in this environment."
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelLoadError(f"{module_part} has no attribute {attribute}.")
        target = getattr(target, part)
    return target


def _build(target: Any, spec: str) -> tuple[nn.Module, Preprocessing]:
    try:
        if isinstance(target, nn.Module):
            result: Any = target
        elif isinstance(target, type) and issubclass(target, nn.Module) or callable(target):
            result = target()
        else:
            raise ModelLoadError(f"{spec} is neither an nn.Module nor a function that returns one.")
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's factory failed: say how, in their words
        _log.warning("factory %s failed", spec, exc_info=True)
        raise ModelLoadError(f"{spec} raised {type(exc).__name__}: {exc}") from None
    preprocessing = Preprocessing()
    if isinstance(result, tuple) and len(result) == 2:
        result, extra = result
        if isinstance(extra, Preprocessing):
            preprocessing = extra
        elif isinstance(extra, dict):
            preprocessing = _from_dict(extra, spec)
        else:
            raise ModelLoadError(f"{spec} returned (module, {type(extra).__name__}); the second item must be a "
                                 "featviz_core.Preprocessing or a dict of its fields.")
    elif isinstance(result, dict):
        extra = dict(result)
        result = extra.pop("model", None)
        preprocessing = _from_dict(extra, spec)
    if not isinstance(result, nn.Module):
        raise ModelLoadError(f"{spec} returned {type(result).__name__}, not a torch nn.Module.")
    return result, preprocessing


def _from_dict(values: dict[str, Any], spec: str) -> Preprocessing:
    allowed = set(Preprocessing.__dataclass_fields__)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ModelLoadError(f"{spec} gave unknown preprocessing settings: {', '.join(unknown)}. Use "
                             f"{', '.join(sorted(allowed))}.")
    return Preprocessing(**values)


def _read(value: bytes | str | os.PathLike[str], what: str) -> tuple[bytes, str]:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), ""
    path = Path(value).expanduser()
    try:
        return path.read_bytes(), path.name
    except OSError as exc:
        raise ModelLoadError(f"Could not read the {what} file {value}: {exc.strerror or exc}.") from None


def _load_weights(module: nn.Module, data: bytes, filename: str, spec: str) -> str:
    weights = read_weights(data, filename)
    own = {k for k in module.state_dict() if not k.endswith("num_batches_tracked")}
    best = max(weights.variants, key=lambda v: len(v.keys & own))
    missing, unexpected = sorted(own - best.keys), sorted(best.keys - own)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the model's weights are not in the file ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} weights in the file are not in the model ({', '.join(unexpected[:3])})")
        raise ModelLoadError(f"The weights do not fit {spec}: {'; '.join(parts)}.")
    state = dict(best.state)
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()][:3]
        raise ModelLoadError(f"The weights do not fit {spec}: {' '.join(lines)}") from None
    return weights.format


def _first_conv(module: nn.Module) -> nn.Module | None:
    return next((m for m in module.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)), None)


def _first_conv_channels(module: nn.Module) -> int | None:
    conv = _first_conv(module)
    return int(conv.in_channels) if isinstance(conv, nn.Conv2d | nn.Conv3d) else None


def is_volumetric(module: nn.Module) -> bool:
    """True when ``module`` is a 3-D network: its first convolution is an ``nn.Conv3d`` (MONAI's 3-D nets)."""
    return isinstance(_first_conv(module), nn.Conv3d)


DEFAULT_VOLUME_SIZE: tuple[int, int, int] = (96, 96, 96)
"""Input (D, H, W) of a 3-D model whose factory does not say (MONAI's tutorials' usual crop)."""

_VOLUME_SCALES = {"imagenet": (0.0, 1.0), "0-1": (0.0, 1.0), "-1-1": (0.5, 0.5), "0-255": (0.0, 1 / 255)}
"""(mean, std) on the 0..1 windowed volume for each normalisation; ImageNet's colour statistics mean nothing
for a scan, so the default gives 0..1."""


def load_from_code(
    spec: str,
    weights: bytes | str | os.PathLike[str] | None = None,
    classes: bytes | str | os.PathLike[str] | Sequence[str] | None = None,
    *,
    input_size: tuple[int, int] | int | None = None,
    normalization: str | None = None,
) -> LoadedModel:
    """The model that ``spec`` (``"pkg.module:factory"``) builds, optionally with ``weights`` (bytes or a
    path: a state dict or safetensors file) and ``classes`` (names, or a class-names file).

    ``input_size`` and ``normalization`` override what the factory's :class:`Preprocessing` says
    (defaults: 224×224, ImageNet mean/std). The model is tried once on a blank input so that a wrong input
    size is reported now, in one sentence, rather than on every page; when neither the command line nor the
    factory gave a size and the default is refused, the size the model accepts is found and used
    (:func:`~featviz_core.models.sources.input_size.accepted_size`), and the provenance says so.
    """
    module, pre = _build(resolve_factory(spec), spec)
    changes: dict[str, Any] = {}
    if input_size is not None:
        changes["input_size"] = input_size
    if normalization is not None:
        changes["normalization"], changes["mean"], changes["std"] = normalization, None, None
    if changes:
        pre = Preprocessing(**{**pre.__dict__, **changes})
    weights_note, digest = "its own weights", "own"
    if weights is not None:
        data, name = _read(weights, "weights")
        kind = _load_weights(module, data, name, spec)
        digest = bytes_digest(data)
        weights_note = f"weights from {name or 'your file'}" + (" (safetensors)" if kind == "safetensors" else "")
    names = classes
    if classes is not None and (isinstance(classes, str | bytes | bytearray) or not isinstance(classes, Sequence)):
        names = parse_class_names(_read(classes, "class names")[0])
    return _loaded(
        module, pre, names, name=spec.rpartition(":")[2] or spec, key=model_key(ModelSource.CODE, spec, digest),
        origin=f"your code {spec} with {weights_note}", weights=None if weights is None else weights_note,
        size_given=input_size is not None or pre.size != Preprocessing().size, who=spec, hint=_COMMAND_LINE_HINT,
    )  # fmt: skip


def load_module(
    module: nn.Module,
    preprocessing: Preprocessing | None = None,
    classes: Sequence[str] | None = None,
    *,
    name: str | None = None,
    key: str | None = None,
) -> LoadedModel:
    """An ``nn.Module`` already in memory (``featviz.show(model)`` in a notebook), fed as ``preprocessing``
    says (default: 224×224, ImageNet mean/std; with no size given and 224×224 refused, the size the model
    accepts), with ``classes`` the names of its outputs. The module is put in eval mode and stays on its
    device; ``key`` (default: from the object's id) tells caches apart."""
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"featviz needs a torch nn.Module, not {type(module).__name__}.")
    pre = preprocessing if preprocessing is not None else Preprocessing()
    label = name or type(module).__name__
    return _loaded(
        module, pre, classes, name=label, key=key or model_key("python", label, f"{id(module):x}"),
        origin=f"your model {label} from Python", weights=None, size_given=pre.size != Preprocessing().size,
        who=label, hint=_PYTHON_HINT,
    )  # fmt: skip


_COMMAND_LINE_HINT = ("Give the right size with --input-size HxW, or return (model, Preprocessing(input_size=...)) "
                      "from the factory.")
_PYTHON_HINT = "Give the right size with preprocessing=Preprocessing(input_size=(H, W))."


def _loaded(
    module: nn.Module,
    pre: Preprocessing,
    classes: Sequence[str] | None,
    *,
    name: str,
    key: str,
    origin: str,
    weights: str | None,
    size_given: bool,
    who: str,
    hint: str,
) -> LoadedModel:
    categories = list(pre.categories) if pre.categories is not None else None
    if classes is not None:
        categories = [str(c) for c in classes]
    channels = pre.channels or _first_conv_channels(module) or 3
    module.eval()
    if is_volumetric(module):
        return _loaded_volume(module, pre, categories, channels, name=name, key=key, origin=origin,
                              weights=weights, who=who, python=hint == _PYTHON_HINT)
    size, chosen = _runnable_size(module, channels, pre.size, who, size_given, hint)
    transform, view = standard_preprocessing(size, channels, normalization=pre.normalization, mean=pre.mean,
                                             std=pre.std, resize=pre.resize if not chosen else None)
    height, width = size
    note = f": featviz chose {height}×{width}, the size this model accepts" if chosen else ""
    return LoadedModel(
        module=module,
        name=name,
        key=model_key(key, f"{height}x{width}", pre.normalization, pre.mean, pre.std, channels,
                      names_digest(categories) if categories else "-"),
        categories=categories,
        input_channels=channels,
        input_size=size,
        transform=transform,
        view=view,
        source=ModelSource.CODE,
        provenance=f"{origin} ({channels} input channel{'s' if channels != 1 else ''}, {height}×{width} input"
        f"{note})",
        weights=weights,
    )


def _runnable_size(
    module: nn.Module, channels: int, size: tuple[int, int], name: str, size_given: bool, hint: str
) -> tuple[tuple[int, int], bool]:
    """(the size to use, whether featviz chose it): ``size`` if the model runs on it; else, when nobody gave
    a size, the one it accepts; else ModelLoadError in one sentence."""
    refusal = _try_once(module, channels, size)
    if refusal is None:
        return size, False
    chosen = None if size_given else accepted_size(module, channels, size)
    if chosen is not None and _try_once(module, channels, chosen) is None:
        _log.info("%s refused %s×%s; featviz chose %s×%s", name, *size, *chosen)
        return chosen, True
    raise ModelLoadError(
        f"{name} could not run on a {channels}×{size[0]}×{size[1]} input ({refusal}). {hint}"
    ) from None


def _try_once(module: nn.Module, channels: int, size: tuple[int, int]) -> str | None:
    """None if ``module`` runs on a blank input of this size, else why not (the user's own words)."""
    return _try_shape(module, (channels, *size))


def _try_shape(module: nn.Module, shape: tuple[int, ...]) -> str | None:
    """None if ``module`` runs on a blank input of ``shape`` (no batch dimension), else why not."""
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    device = first.device if first is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            module(torch.zeros(1, *shape, device=device))
    except Exception as exc:  # noqa: BLE001 - the user's model, the user's words
        _log.warning("%s input refused", "×".join(str(s) for s in shape), exc_info=True)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}"
    return None


def _volume_size(pre: Preprocessing, who: str, python: bool) -> tuple[int, int, int]:
    depth = pre.depth
    if depth is None:
        if pre.size == Preprocessing().size:  # nothing given: the usual 3-D size
            return DEFAULT_VOLUME_SIZE
        raise ModelLoadError(f"{who} is a 3-D model, so its input size needs three numbers: {_volume_hint(python)}")
    return (depth, *pre.size)


def _volume_hint(python: bool) -> str:
    where = "pass preprocessing=" if python else "return (model, "
    return f"{where}Preprocessing(input_size=(D, H, W)){'' if python else ')'} with its depth, height and width."


def _loaded_volume(
    module: nn.Module,
    pre: Preprocessing,
    categories: list[str] | None,
    channels: int,
    *,
    name: str,
    key: str,
    origin: str,
    weights: str | None,
    who: str,
    python: bool,
) -> LoadedModel:
    """A 3-D model from code: fed (1, C, D, H, W) by :class:`VolumePreprocessing` (0..1, then mean/std)."""
    size = _volume_size(pre, who, python)
    refusal = _try_shape(module, (channels, *size))
    if refusal is not None:
        shape = "×".join(str(s) for s in (channels, *size))
        raise ModelLoadError(f"{who} could not run on a {shape} volume ({refusal}). Give its input size: "
                             f"{_volume_hint(python)}")
    if pre.mean is not None and pre.std is not None:
        mean, std = pre.mean, pre.std
    elif pre.normalization in _VOLUME_SCALES:
        mean, std = _VOLUME_SCALES[pre.normalization]
    else:
        raise ModelLoadError(f"Unknown normalization '{pre.normalization}'; use one of: {', '.join(_VOLUME_SCALES)}.")
    try:
        transform = VolumePreprocessing(size, channels, mean, std)
    except ValueError:
        raise ModelLoadError(f"The normalisation needs {channels} mean and {channels} non-zero std values, one per "
                             "input channel.") from None
    depth, height, width = size
    return LoadedModel(
        module=module, name=name, categories=categories, input_channels=channels, input_size=(height, width),
        key=model_key(key, f"{depth}x{height}x{width}", pre.normalization, pre.mean, pre.std, channels,
                      names_digest(categories) if categories else "-"),
        transform=no_picture, view=no_view, source="code", weights=weights, input_depth=depth,
        volume_transform=transform,
        provenance=f"{origin} (3-D, {channels} input channel{'s' if channels != 1 else ''}, "
        f"{depth}×{height}×{width} input)",
    )  # fmt: skip
