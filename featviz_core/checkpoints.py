"""A user's checkpoint -> :class:`~featviz_core.models.LoadedModel`.

The file is read with ``torch.load(..., weights_only=True)`` and nothing else: a checkpoint is only ever
treated as a dictionary of tensors, never as code. Pickled models, TorchScript archives and pickles that
would run something while loading are refused with a :class:`ModelLoadError` that says how to save a plain
state dict.

The weights must belong to a torchvision classification architecture (``resnet18``, ``efficientnet_b0`` ...),
possibly fine-tuned to another number of classes or to grey (1-channel) input. Given no architecture, it is
detected by comparing the checkpoint's keys and shapes with each torchvision builder, built on the ``meta``
device (no memory, no initialisation) and cached per architecture.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import statistics
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import ModelLoadError
from .models import LoadedModel, classification_models, is_convolutional, view_transform

__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "MAX_CLASS_NAMES_BYTES",
    "load_checkpoint",
    "parse_class_names",
]

_log = logging.getLogger(__name__)

MAX_CHECKPOINT_BYTES = 1 << 30
"""Largest checkpoint accepted (1 GiB); checked before anything else is done with the bytes."""

MAX_CLASS_NAMES_BYTES = 10 << 20
"""Largest class-name file accepted (10 MiB)."""

_SAVE_HINT = (
    'In Python, save only the weights with torch.save(model.state_dict(), "model.pt") and upload that file.'
)

# Dictionary keys under which training scripts keep the state dict (PyTorch examples, Lightning, timm ...).
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights", "module", "network")
# Key prefixes added by wrappers: DataParallel/DDP, Lightning modules, torch.compile.
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.", "net.")
# Builders with auxiliary classifiers that a checkpoint may or may not contain.
_AUX_PREFIXES: dict[str, tuple[str, ...]] = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}
# An unusual class count for the probe builds: the entries whose first dimension equals it are the classifier.
_PROBE_CLASSES = 1013
_COUNTER_SUFFIX = "num_batches_tracked"
# Globals that only a pickle trying to run something would name.
_DANGEROUS_MODULES = (
    "os", "posix", "nt", "subprocess", "sys", "builtins", "shutil", "pathlib", "socket", "pty", "runpy",
    "importlib", "code", "webbrowser", "pickle", "marshal", "ctypes", "multiprocessing", "urllib",
)  # fmt: skip
_DANGEROUS_NAMES = {"eval", "exec", "getattr", "setattr", "__import__", "open", "compile", "apply"}
# File name extensions of other frameworks' model files, for a clearer message when torch cannot read one.
_OTHER_FORMATS = {
    ".onnx": "an ONNX model",
    ".h5": "a Keras model",
    ".hdf5": "a Keras model",
    ".keras": "a Keras model",
    ".pb": "a TensorFlow model",
    ".tflite": "a TensorFlow Lite model",
    ".safetensors": "a safetensors file",
    ".npz": "a NumPy archive",
}


# ---------------------------------------------------------------------------------------------------
# public API


def load_checkpoint(
    data: bytes,
    arch: str | None = None,
    categories: list[str] | None = None,
    filename: str | None = None,
) -> LoadedModel:
    """A torchvision classification model with the weights of a user's checkpoint.

    ``data`` is the file's bytes: a state dict saved with ``torch.save(model.state_dict(), path)``, or a
    training checkpoint holding one (under ``state_dict``, ``model``, ``model_state_dict``, ``net`` or
    ``weights``; ``module.``/``model.`` key prefixes are removed). ``arch`` names the torchvision builder
    (``"resnet18"``); None detects it. ``categories`` names the classes (see :func:`parse_class_names`);
    ``filename`` is only used to describe the model. Raises :class:`ModelLoadError` and nothing else.
    """
    try:
        return _load_checkpoint(data, arch, categories, filename)
    except ModelLoadError:
        raise
    except Exception as exc:  # the boundary: nothing but ModelLoadError leaves
        _log.warning("unexpected error while loading a checkpoint", exc_info=True)
        raise ModelLoadError(
            f"The checkpoint could not be loaded ({type(exc).__name__}). It should be the state dict of a "
            f"torchvision classification model. {_SAVE_HINT}"
        ) from None


def parse_class_names(data: bytes) -> list[str]:
    """Class names from a file's bytes, in output order.

    A text file with one name per line (blank lines and surrounding whitespace ignored, UTF-8 with or
    without BOM), a JSON list of names, or a JSON object mapping index to name (``{"0": "cat"}``, also
    ImageNet's ``{"0": ["n01440764", "tench"]}``) or name to index (``{"cat": 0}``).
    """
    if len(data) > MAX_CLASS_NAMES_BYTES:
        raise ModelLoadError(
            f"The class-name file is too large ({_megabytes(len(data))}; the limit is "
            f"{_megabytes(MAX_CLASS_NAMES_BYTES)}). Give one class name per line."
        )
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelLoadError(
            "The class-name file is not UTF-8 text. Save it as plain UTF-8 text, one class name per line."
        ) from None
    stripped = text.strip()
    if not stripped:
        raise ModelLoadError("The class-name file is empty. Give one class name per line.")
    if (stripped[0], stripped[-1]) in (("[", "]"), ("{", "}")):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            raise ModelLoadError(
                "The class-name file looks like JSON but could not be read. Give a JSON list of names, "
                "or plain text with one class name per line."
            ) from None
        return _names_from_json(parsed)
    return [line.strip() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------
# the pipeline


def _load_checkpoint(
    data: bytes, arch: str | None, categories: list[str] | None, filename: str | None
) -> LoadedModel:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelLoadError(f"A checkpoint must be given as the file's bytes, not {type(data).__name__}.")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise ModelLoadError(
            f"The checkpoint is too large ({_megabytes(len(data))}; the limit is "
            f"{_megabytes(MAX_CHECKPOINT_BYTES)}). Training checkpoints also hold optimizer state: "
            f"{_SAVE_HINT}"
        )
    if len(data) == 0:
        raise ModelLoadError(f"The checkpoint file is empty. {_SAVE_HINT}")
    if arch is not None and arch not in classification_models():
        raise ModelLoadError(
            f"'{arch}' is not a torchvision classification architecture. Choose one from "
            "featviz_core.classification_models(), or let featviz detect it."
        )
    data = bytes(data)
    _refuse_other_formats(data)
    obj = _torch_load(data, filename)
    variants = _key_variants(*_find_state_dict(obj))
    hints = _arch_hints(obj, filename)
    del obj  # optimizer state and the like can go now

    started = time.perf_counter()
    if arch is None:
        fit = _detect(variants, hints)
        detected = True
    else:
        fit = _fit_for(arch, variants, hints)
        detected = False
    _log.debug("checkpoint architecture %s found in %.3f s", fit.arch, time.perf_counter() - started)

    if fit.in_channels not in (1, 3):
        raise ModelLoadError(
            f"The checkpoint's first convolution takes {fit.in_channels} input channels; featviz shows "
            "models that take grey (1 channel) or colour (3 channels) images."
        )
    if categories is not None:
        if isinstance(categories, str | bytes):
            raise ModelLoadError("Class names must be a list of names; use parse_class_names() on a file.")
        categories = [str(name) for name in categories]
        if len(categories) != fit.num_classes:
            raise ModelLoadError(
                f"The class-name file has {len(categories)} lines but the model has {fit.num_classes} "
                "classes. Give one class name per line, in the order of the model's outputs."
            )

    module = _instantiate(fit)
    transform, view, input_size = _preprocessing(fit.arch, fit.in_channels)
    digest = hashlib.sha256(data).hexdigest()[:16]
    key = f"checkpoint:{digest}:{fit.arch}"
    if categories is not None:  # extractions carry the class names, so they belong in the cache key
        key += ":" + hashlib.sha256("\n".join(categories).encode("utf-8")).hexdigest()[:8]
    return LoadedModel(
        module=module,
        name=fit.arch,
        key=key,
        categories=categories,
        input_channels=fit.in_channels,
        input_size=input_size,
        transform=transform,
        view=view,
        source="checkpoint",
        provenance=_provenance(fit, detected, filename, categories is not None),
        weights=None,
    )


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MB" if size >= 1 << 20 else f"{size / 1024:,.0f} KB"


def _display_name(filename: str | None) -> str:
    if not filename:
        return ""
    name = os.path.basename(str(filename).replace("\\", "/")).strip()
    return name if len(name) <= 80 else name[:77] + "..."


# ---------------------------------------------------------------------------------------------------
# reading the bytes safely


def _refuse_other_formats(data: bytes) -> None:
    """Recognise, by their contents, files that are not PyTorch pickles before torch sees them."""
    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise ModelLoadError(f"This is a Keras/HDF5 file; featviz reads PyTorch checkpoints. {_SAVE_HINT}")
    if _looks_like_safetensors(data):
        raise ModelLoadError(
            "This is a safetensors file; featviz reads PyTorch checkpoints saved with torch.save. "
            f"{_SAVE_HINT}"
        )
    if not data.startswith(b"PK"):
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a readable zip: torch.load will say so
    names = [info.filename for info in infos]
    if any("/code/" in f"/{name}" or name.endswith("constants.pkl") for name in names):
        raise ModelLoadError(
            "This is a TorchScript archive (saved with torch.jit.save); featviz does not run TorchScript "
            f"code. {_SAVE_HINT}"
        )
    if sum(info.file_size for info in infos) > MAX_CHECKPOINT_BYTES:
        raise ModelLoadError(
            f"The checkpoint is too large once unpacked (over {_megabytes(MAX_CHECKPOINT_BYTES)}). "
            f"{_SAVE_HINT}"
        )


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    header_length = int.from_bytes(data[:8], "little")
    return 0 < header_length <= len(data) - 8 and data[8:10] in (b'{"', b"{ ", b"{\n")


def _torch_load(data: bytes, filename: str | None = None) -> Any:
    """``torch.load`` restricted to tensors and plain containers; every failure becomes a ModelLoadError."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - classified below
        message = str(exc)
    if "TorchScript" in message:
        raise ModelLoadError(
            "This is a TorchScript archive (saved with torch.jit.save); featviz does not run TorchScript "
            f"code. {_SAVE_HINT}"
        ) from None
    found = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", message)
    if found:
        name = found.group(1)
        module, _, attribute = name.rpartition(".")
        if module.split(".")[0] in _DANGEROUS_MODULES or attribute in _DANGEROUS_NAMES or not module:
            raise ModelLoadError(
                f"This file tries to run code while it is being read (it calls {name}). featviz refused "
                f"it and nothing was run. Only upload weights from a source you trust. {_SAVE_HINT}"
            ) from None
        if ".models." in f".{module}." or module.startswith(("torch.nn", "torchvision")):
            raise ModelLoadError(
                f"This file holds a whole pickled model ({name}), not just its weights. For safety featviz "
                f"only reads weights. {_SAVE_HINT}"
            ) from None
        raise ModelLoadError(
            f"This file holds pickled Python objects ({name}), not only weights: a whole model saved with "
            f"torch.save(model), or training extras. For safety featviz only reads tensors. {_SAVE_HINT}"
        ) from None
    extension = os.path.splitext(_display_name(filename).lower())[1]
    other = _OTHER_FORMATS.get(extension)
    if other:
        raise ModelLoadError(f"This looks like {other}; featviz reads PyTorch checkpoints. {_SAVE_HINT}")
    raise ModelLoadError(
        "This file is not a PyTorch checkpoint featviz can read (it may be damaged, truncated, or in "
        f"another format). {_SAVE_HINT}"
    )


def _tensor_entries(mapping: Mapping[Any, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in mapping.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


@dataclass(frozen=True)
class _Variant:
    """The checkpoint's tensors with wrapper prefixes removed, and torch's per-module version numbers."""

    prefix: str
    state: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    keys: frozenset[str] = field(init=False)  # without the BatchNorm counters

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", frozenset(k for k in self.state if not _is_counter(k)))


def _find_state_dict(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of the state dict inside ``obj`` (a bare state dict or a training checkpoint) and the
    ``_metadata`` that ``state_dict()`` attaches (module versions, which some modules need to load)."""
    found = _search_state_dict(obj, depth=0)
    if found is not None:
        metadata = getattr(found, "_metadata", None)
        return _tensor_entries(found), dict(metadata) if isinstance(metadata, Mapping) else {}
    if isinstance(obj, Mapping):
        keys = ", ".join(sorted(str(k) for k in obj)[:8]) or "nothing"
        what = f"a dictionary with {keys}"
    elif isinstance(obj, torch.Tensor):
        what = "a single tensor"
    else:
        what = type(obj).__name__
    raise ModelLoadError(f"The file was read but holds no model weights (it holds {what}). {_SAVE_HINT}")


def _search_state_dict(obj: Any, depth: int) -> Mapping[Any, Any] | None:
    if not isinstance(obj, Mapping):
        return None
    if depth < 2:
        for key in _WRAPPER_KEYS:
            found = _search_state_dict(obj.get(key), depth + 1)
            if found is not None:
                return found
    return obj if _tensor_entries(obj) else None


def _key_variants(state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> list[_Variant]:
    """The state dict as saved, then with wrapper prefixes (``module.``, ``model.`` ...) removed."""
    found = {"": state}
    queue = [""]
    while queue and len(found) < 8:
        done = queue.pop(0)
        for prefix in _WRAPPER_PREFIXES:
            current = found[done]
            stripped = {k[len(prefix) :]: v for k, v in current.items() if k.startswith(prefix)}
            if stripped and done + prefix not in found:
                found[done + prefix] = stripped
                queue.append(done + prefix)
    # Removing a prefix shared by every key is more likely right than keeping only a part of the keys.
    order = sorted(found, key=lambda prefix: (prefix != "", len(found[prefix]) != len(state)))
    return [_Variant(prefix, found[prefix], _strip_metadata(metadata, prefix)) for prefix in order]


def _strip_metadata(metadata: dict[str, Any], prefix: str) -> dict[str, Any]:
    if not prefix:
        return metadata
    stripped = {}
    for key, value in metadata.items():
        if key == prefix[:-1]:
            stripped[""] = value
        elif key.startswith(prefix):
            stripped[key[len(prefix) :]] = value
    return stripped


def _arch_hints(obj: Any, filename: str | None) -> list[str]:
    """Architectures to try first: an ``arch`` entry of the checkpoint, names found in the file name."""
    names = classification_models()
    hints = []
    if isinstance(obj, Mapping) and isinstance(obj.get("arch"), str) and obj["arch"] in names:
        hints.append(obj["arch"])
    lower = _display_name(filename).lower()
    hints.extend(sorted((n for n in names if n in lower), key=len, reverse=True))
    return list(dict.fromkeys(hints))


# ---------------------------------------------------------------------------------------------------
# architectures: signatures, matching, detection


class _MetaAllocations(TorchFunctionMode):
    """Allocate new parameters and buffers on the ``meta`` device, and skip their initialisation.

    Unlike ``with torch.device("meta")``, this lets builders that compute their layout with tensors
    (RegNet calls ``.tolist()`` on ``torch.arange``) work, while no weight memory is allocated. In-place
    initialisers (``normal_``, ``uniform_`` ...) on meta tensors are skipped: they have no values to set,
    and running them through the meta kernels is most of a build's time.
    """

    _ALLOCATORS = frozenset(
        {
            torch.empty,
            torch.empty_strided,
            torch.empty_permuted,
            torch.zeros,
            torch.ones,
            torch.full,
            torch.rand,
            torch.randn,
        }
    )
    # In-place operations that change values only, never shapes.
    _INITIALISERS = frozenset(
        {
            "normal_", "uniform_", "zero_", "fill_", "copy_", "mul_", "add_", "sub_", "div_", "clamp_",
            "clamp_min_", "clamp_max_", "erfinv_", "exponential_", "bernoulli_", "random_", "abs_", "neg_",
            "sqrt_", "exp_", "log_", "trunc_normal_", "fmod_", "remainder_",
        }
    )  # fmt: skip

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func in self._ALLOCATORS and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        elif (
            args
            and isinstance(args[0], torch.Tensor)
            and args[0].is_meta
            and getattr(func, "__name__", "") in self._INITIALISERS
        ):
            return args[0]
        return func(*args, **kwargs)


@dataclass(frozen=True)
class _Signature:
    """What a state dict of one architecture looks like (every entry but the BatchNorm counters)."""

    arch: str
    shapes: dict[str, tuple[int, ...]]
    class_keys: frozenset[str]
    first_conv: str | None
    aux_keys: frozenset[str]
    keys: frozenset[str] = field(init=False)
    keys_without_aux: frozenset[str] = field(init=False)
    patterns: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        keys = frozenset(self.shapes)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "keys_without_aux", keys - self.aux_keys)
        object.__setattr__(self, "patterns", _patterns(keys))

    @property
    def first_conv_key(self) -> str | None:
        return f"{self.first_conv}.weight" if self.first_conv else None


@dataclass(frozen=True)
class _Fit:
    """How one variant of the checkpoint compares with one architecture."""

    arch: str
    variant: _Variant
    aux: bool
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    class_counts: tuple[int, ...] = ()
    in_channels: int = 3
    overlap: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched) and len(self.class_counts) == 1

    @property
    def num_classes(self) -> int:
        return self.class_counts[0]


def _is_counter(key: str) -> bool:
    return key.endswith(_COUNTER_SUFFIX)


def _patterns(keys: Iterable[str]) -> frozenset[str]:
    return frozenset(re.sub(r"\d+", "#", k) for k in keys)


def _builder_kwargs(arch: str, aux: bool, in_channels: int) -> dict[str, Any]:
    if arch in _AUX_PREFIXES:
        # Fine-tuned from torchvision's pretrained weights, these take ImageNet-normalised input and
        # rescale it themselves (transform_input=True), as torchvision's pretrained models do.
        return {"aux_logits": aux, "init_weights": False, "transform_input": in_channels == 3}
    return {}


def _build_on_meta(
    arch: str, num_classes: int, aux: bool, in_channels: int = 3, first_conv: str | None = None
) -> nn.Module:
    builder = torchvision.models.get_model_builder(arch)
    with _MetaAllocations():
        module = builder(weights=None, num_classes=num_classes, **_builder_kwargs(arch, aux, in_channels))
        if in_channels != 3 and first_conv is not None:
            _replace_first_conv(module, first_conv, in_channels)
    return module


def _replace_first_conv(module: nn.Module, name: str, in_channels: int) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    old = getattr(parent, child)
    if not isinstance(old, nn.Conv2d) or old.groups != 1:
        raise ModelLoadError(f"The first convolution of this architecture cannot take {in_channels} inputs.")
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,  # type: ignore[arg-type]
        stride=old.stride,  # type: ignore[arg-type]
        padding=old.padding,  # type: ignore[arg-type]
        dilation=old.dilation,  # type: ignore[arg-type]
        groups=1,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    setattr(parent, child, new)


@functools.lru_cache(maxsize=256)
def _signature(arch: str) -> _Signature | None:
    """The keys and shapes of ``arch``'s state dict (None if it cannot be built without memory)."""
    try:
        module = _build_on_meta(arch, _PROBE_CLASSES, aux=True)
    except Exception:  # noqa: BLE001 - an architecture we cannot probe is simply not a candidate
        _log.debug("cannot probe %s on the meta device", arch, exc_info=True)
        return None
    shapes = {k: tuple(t.shape) for k, t in module.state_dict().items() if not _is_counter(k)}
    first_conv = next((n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)), None)
    return _Signature(
        arch=arch,
        shapes=shapes,
        class_keys=frozenset(k for k, s in shapes.items() if s and s[0] == _PROBE_CLASSES),
        first_conv=first_conv,
        aux_keys=frozenset(k for k in shapes if k.startswith(_AUX_PREFIXES.get(arch, ()))),
    )


@functools.lru_cache(maxsize=1)
def _families() -> dict[str, tuple[str, ...]]:
    """Architectures grouped by the torchvision module that defines them (resnet, efficientnet ...)."""
    groups: dict[str, list[str]] = {}
    for name in classification_models():
        family = torchvision.models.get_model_builder(name).__module__
        groups.setdefault(family, []).append(name)
    return {family: tuple(names) for family, names in groups.items()}


def _compare(sig: _Signature, variant: _Variant) -> _Fit:
    state, keys = variant.state, variant.keys
    aux = bool(sig.aux_keys & keys)
    expected = sig.keys if aux else sig.keys_without_aux
    union = len(keys | expected)
    overlap = len(keys & expected) / union if union else 0.0
    if keys != expected:
        missing = tuple(k for k in sig.shapes if k in expected and k not in keys)
        unexpected = tuple(k for k in state if k not in expected and not _is_counter(k))
        return _Fit(sig.arch, variant, aux, missing=missing, unexpected=unexpected, overlap=overlap)
    mismatched = []
    counts = []
    first_conv_key = sig.first_conv_key
    for key in sig.shapes:
        if key not in expected:
            continue
        want, have = sig.shapes[key], tuple(state[key].shape)
        if len(want) != len(have):
            same = False
        elif key in sig.class_keys:
            same = want[1:] == have[1:]
            counts.append(have[0])
        elif key == first_conv_key:
            same = want[:1] + want[2:] == have[:1] + have[2:]
        else:
            same = want == have
        if not same:
            mismatched.append((key, have, want))
    in_channels = 3
    if first_conv_key in state and state[first_conv_key].ndim == 4:
        in_channels = int(state[first_conv_key].shape[1])
    return _Fit(
        sig.arch,
        variant,
        aux,
        mismatched=tuple(mismatched),
        class_counts=tuple(dict.fromkeys(counts)),
        in_channels=in_channels,
        overlap=overlap,
    )


def _best_fit(sig: _Signature, variants: list[_Variant]) -> _Fit:
    """The variant that fits ``sig``, or else the one closest to it."""
    best: _Fit | None = None
    for variant in variants:
        fit = _compare(sig, variant)
        if fit.ok:
            return fit
        if best is None or fit.overlap > best.overlap:
            best = fit
    assert best is not None
    return best


def _candidate_order(variants: list[_Variant], hints: list[str]) -> list[str]:
    """Every architecture, the most likely first: hints, then families whose key patterns look alike."""
    variant_patterns = [_patterns(variant.keys) for variant in variants]
    scored = []
    for family, names in _families().items():
        sig = next((s for s in map(_signature, names) if s is not None), None)
        score = 0.0
        if sig is not None:
            score = max(len(p & sig.patterns) / len(p | sig.patterns) for p in variant_patterns)
        scored.append((score, family))
    scored.sort(key=lambda item: -item[0])
    ordered = [*hints, *chain.from_iterable(_families()[family] for _, family in scored)]
    return list(dict.fromkeys(ordered))


def _detect(variants: list[_Variant], hints: list[str]) -> _Fit:
    """The architecture whose keys and shapes the checkpoint has (torchvision's are all distinct)."""
    closest: _Fit | None = None
    for name in _candidate_order(variants, hints):
        sig = _signature(name)
        if sig is None:
            continue
        fit = _best_fit(sig, variants)
        if fit.ok:
            return fit
        if closest is None or fit.overlap > closest.overlap:
            closest = fit
    detail = ""
    if closest is not None and closest.overlap >= 0.5:
        detail = f" The closest is {closest.arch}: {_describe_misfit(closest)}"
    raise ModelLoadError(
        "No torchvision architecture matches this checkpoint." + detail + " Choose the architecture "
        "explicitly, or save the state dict of a torchvision model, e.g. "
        'torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), "model.pt").'
    )


def _fit_for(arch: str, variants: list[_Variant], hints: list[str]) -> _Fit:
    sig = _signature(arch)
    if sig is None:
        raise ModelLoadError(f"featviz cannot load checkpoints for {arch}; choose another architecture.")
    fit = _best_fit(sig, variants)
    if fit.ok:
        return fit
    suggestion = ""
    try:
        other = _detect(variants, hints)
        suggestion = f" It does fit {other.arch}: choose that one, or let featviz detect the architecture."
    except ModelLoadError:
        pass
    raise ModelLoadError(f"The checkpoint does not fit {arch}: {_describe_misfit(fit)}{suggestion}")


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) or "scalar"


def _few(keys: Iterable[str], limit: int = 3) -> str:
    keys = list(keys)
    text = ", ".join(keys[:limit])
    return text + (", ..." if len(keys) > limit else "")


def _describe_misfit(fit: _Fit) -> str:
    parts = []
    if fit.missing:
        parts.append(f"{len(fit.missing)} weights it needs are missing from the file ({_few(fit.missing)})")
    if fit.unexpected:
        parts.append(f"{len(fit.unexpected)} weights in the file are not part of it ({_few(fit.unexpected)})")
    if fit.mismatched:
        examples = [
            f"{k} is {_shape(have)} in the file but {_shape(want)} in {fit.arch}"
            for k, have, want in fit.mismatched[:3]
        ]
        more = ", ..." if len(fit.mismatched) > 3 else ""
        parts.append(f"{len(fit.mismatched)} weights have other shapes ({'; '.join(examples)}{more})")
    if not parts and len(fit.class_counts) > 1:
        counts = " and ".join(map(str, fit.class_counts))
        parts.append(f"its classifiers disagree on the number of classes ({counts})")
    return "; ".join(parts) + "."


# ---------------------------------------------------------------------------------------------------
# building the model and its preprocessing


def _instantiate(fit: _Fit) -> nn.Module:
    """``fit.arch`` holding the checkpoint's tensors, in eval mode, without allocating other weights."""
    sig = _signature(fit.arch)
    assert sig is not None
    module = _build_on_meta(fit.arch, fit.num_classes, fit.aux, fit.in_channels, sig.first_conv)
    reference = module.state_dict(keep_vars=True)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, ref in reference.items():
        tensor = fit.variant.state.get(key)
        if tensor is None and _is_counter(key):
            tensor = torch.zeros((), dtype=ref.dtype)  # older checkpoints have no BatchNorm counters
        if tensor is None:
            raise ModelLoadError(f"The checkpoint has no weights for {key} of {fit.arch}.")
        state[key] = tensor if tensor.dtype == ref.dtype else tensor.to(ref.dtype)
    # Module versions (MNASNet and BatchNorm read them): the checkpoint's where it has them.
    metadata = dict(getattr(reference, "_metadata", {}))
    metadata.update((k, v) for k, v in fit.variant.metadata.items() if k in metadata)
    state._metadata = metadata  # type: ignore[attr-defined]
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, ValueError) as exc:
        _log.debug("load_state_dict refused the checkpoint", exc_info=True)
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()][:3]
        raise ModelLoadError(
            f"The checkpoint does not fit {fit.arch}: {' '.join(lines) or 'the weights do not match'}"
        ) from None
    if any(t.is_meta for t in chain(module.parameters(), module.buffers())):
        raise ModelLoadError(f"featviz could not set up every weight of {fit.arch} from this checkpoint.")
    return module.eval()


def _preprocessing(
    arch: str, in_channels: int
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], Any], tuple[int, int]]:
    """The DEFAULT weights' ``transforms()`` (grey: one channel, mean of the means and stds), view, size."""
    transforms = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
    crop = list(transforms.crop_size)
    resize = list(transforms.resize_size) if transforms.resize_size is not None else None
    if in_channels == 1:
        transforms = type(transforms)(
            crop_size=crop[0],
            resize_size=resize[0] if resize else crop[0],
            mean=(statistics.fmean(transforms.mean),),
            std=(statistics.fmean(transforms.std),),
            interpolation=transforms.interpolation,
            antialias=transforms.antialias,
        )
    view = view_transform(resize, crop, transforms.interpolation)
    return transforms, view, (crop[0], crop[-1])


def _provenance(fit: _Fit, detected: bool, filename: str | None, named: bool) -> str:
    name = _display_name(filename)
    source = f"your checkpoint {name}" if name else "your checkpoint"
    how = "detected architecture" if detected else "architecture"
    classes = f"{fit.num_classes} class{'es' if fit.num_classes != 1 else ''}"
    channels = "1 input channel" if fit.in_channels == 1 else f"{fit.in_channels} input channels"
    text = f"{source} — {how} {fit.arch} ({classes}, {channels})"
    if named:
        text += ", class names from your file"
    if fit.arch in _AUX_PREFIXES and fit.in_channels == 3:
        text += "; input scaled as for torchvision's pretrained weights (transform_input=True)"
    if not is_convolutional(fit.arch):
        text += "; a transformer: only its convolutional stem gives channel maps"
    return text


def _names_from_json(parsed: Any) -> list[str]:
    def name_of(value: Any, where: str) -> str:
        if isinstance(value, list | tuple) and value:
            value = value[-1]  # ImageNet's {"0": ["n01440764", "tench"]}
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ModelLoadError(f"The class-name file has an entry that is not a name ({where}).")
        text = str(value).strip()
        if not text:
            raise ModelLoadError(f"The class-name file has an empty name ({where}).")
        return text

    if isinstance(parsed, list):
        if not parsed:
            raise ModelLoadError("The class-name file is an empty list. Give one class name per class.")
        return [name_of(value, f"item {i}") for i, value in enumerate(parsed)]
    if isinstance(parsed, dict) and parsed:
        if all(_as_index(k) is not None for k in parsed):
            by_index = {_as_index(k): v for k, v in parsed.items()}
        elif all(_as_index(v) is not None for v in parsed.values()):
            by_index = {_as_index(v): k for k, v in parsed.items()}  # Keras' {"cat": 0, "dog": 1}
        else:
            raise ModelLoadError(
                "The class-name file is a JSON object but does not map class indices to names "
                '(like {"0": "cat", "1": "dog"}).'
            )
        if sorted(by_index) != list(range(len(parsed))):
            raise ModelLoadError(
                f"The class-name file should number its {len(parsed)} classes 0 to {len(parsed) - 1}, "
                "each once."
            )
        return [name_of(by_index[i], f"class {i}") for i in range(len(parsed))]
    raise ModelLoadError(
        "The class-name file should be a JSON list of names, a JSON object mapping index to name, "
        "or plain text with one class name per line."
    )


def _as_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
