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


def _first_conv_channels(module: nn.Module) -> int | None:
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return int(conv.in_channels) if conv is not None else None


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
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    device = first.device if first is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            module(torch.zeros(1, channels, *size, device=device))
    except Exception as exc:  # noqa: BLE001 - the user's model, the user's words
        _log.warning("%s×%s×%s input refused", channels, *size, exc_info=True)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}"
    return None
