"""Reading a weights file's bytes safely: PyTorch checkpoints (``weights_only=True``) and safetensors files.

A file is only ever treated as a dictionary of tensors, never as code. Pickled models, TorchScript archives
and pickles that would run something while loading are refused with a :class:`ModelLoadError` that says how
to save a plain state dict. Training checkpoints (PyTorch examples, Lightning, timm's ``train.py``) are
unwrapped, and the key prefixes wrappers add (``module.``, ``model.``, ``_orig_mod.``) are removed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ...errors import ModelLoadError

__all__ = ["MAX_CHECKPOINT_BYTES", "SAVE_HINT", "Variant", "WeightFile", "display_name", "read_weights"]

MAX_CHECKPOINT_BYTES = 1 << 30
"""Largest weights file accepted (1 GiB); checked before anything else is done with the bytes."""
MAX_SAFETENSORS_HEADER = 100 << 20
"""Largest safetensors header accepted (the format's own limit: 100 MB of JSON)."""

SAVE_HINT = (
    'In Python, save only the weights with torch.save(model.state_dict(), "model.pt") (or as .safetensors) '
    "and upload that file."
)

# Dictionary keys under which training scripts keep the state dict (PyTorch examples, Lightning, timm ...),
# the trained weights before their moving averages (timm saves both: ``state_dict`` and ``state_dict_ema``).
_WRAPPER_KEYS = (
    "state_dict", "model_state_dict", "model", "net", "weights", "module", "network",
    "state_dict_ema", "model_ema", "ema_state_dict", "ema",
)  # fmt: skip
# Key prefixes added by wrappers: DataParallel/DDP, Lightning modules, torch.compile.
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.", "net.")
COUNTER_SUFFIX = "num_batches_tracked"
# Globals that only a pickle trying to run something would name.
_DANGEROUS_MODULES = (
    "os", "posix", "nt", "subprocess", "sys", "builtins", "shutil", "pathlib", "socket", "pty", "runpy",
    "importlib", "code", "webbrowser", "pickle", "marshal", "ctypes", "multiprocessing", "urllib",
)  # fmt: skip
_DANGEROUS_NAMES = {"eval", "exec", "getattr", "setattr", "__import__", "open", "compile", "apply"}
# File name extensions of other frameworks' model files, for a clearer message when torch cannot read one.
_OTHER_FORMATS = {
    ".onnx": "an ONNX model (choose “ONNX file” as the model source)",
    ".h5": "a Keras model",
    ".hdf5": "a Keras model",
    ".keras": "a Keras model",
    ".pb": "a TensorFlow model",
    ".tflite": "a TensorFlow Lite model",
    ".npz": "a NumPy archive",
}
# Entries of a checkpoint, or of a safetensors header's metadata, that may name the architecture.
_ARCH_ENTRIES = ("arch", "architecture", "model_name", "model", "model_type", "timm_model", "name")


def is_counter(key: str) -> bool:
    return key.endswith(COUNTER_SUFFIX)


@dataclass(frozen=True)
class WeightFile:
    """What a weights file holds: its tensors in every plausible key variant, and hints about its model."""

    variants: list[Variant]
    format: str  # "pytorch" or "safetensors"
    entry: str  # where the state dict was inside the file ("" at the top, "state_dict_ema" ...)
    arch_names: tuple[str, ...]  # architecture names the file itself states (timm's "arch" entry ...)
    filename: str


def read_weights(data: bytes, filename: str | None = None) -> WeightFile:
    """Parse a weights file's bytes (size checked first) into a :class:`WeightFile`; ModelLoadError only."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelLoadError(f"A checkpoint must be given as the file's bytes, not {type(data).__name__}.")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise ModelLoadError(
            f"The checkpoint is too large ({megabytes(len(data))}; the limit is "
            f"{megabytes(MAX_CHECKPOINT_BYTES)}). Training checkpoints also hold optimizer state: "
            f"{SAVE_HINT}"
        )
    if len(data) == 0:
        raise ModelLoadError(f"The checkpoint file is empty. {SAVE_HINT}")
    data = bytes(data)
    name = display_name(filename)
    if _looks_like_safetensors(data) or name.lower().endswith(".safetensors"):
        state, metadata = _read_safetensors(data)
        names = tuple(str(metadata[k]) for k in _ARCH_ENTRIES if isinstance(metadata.get(k), str))
        return WeightFile(_key_variants(state, {}), "safetensors", "", names, name)
    _refuse_other_formats(data)
    obj = _torch_load(data, filename)
    state, module_metadata, entry = _find_state_dict(obj)
    names = ()
    if isinstance(obj, Mapping):
        names = tuple(str(obj[k]) for k in _ARCH_ENTRIES if isinstance(obj.get(k), str))
    return WeightFile(_key_variants(state, module_metadata), "pytorch", entry, names, name)


def _read_safetensors(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and ``__metadata__`` of a safetensors file (the format holds no code; read with its library)."""
    damaged = (
        "This file is not a readable safetensors file (it may be damaged or truncated). Save it again with "
        "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')."
    )
    if len(data) < 10:
        raise ModelLoadError(damaged)
    header_length = int.from_bytes(data[:8], "little")
    if header_length > MAX_SAFETENSORS_HEADER:
        raise ModelLoadError(
            f"This safetensors file's header claims {megabytes(header_length)}, more than the format allows "
            "(100 MB): the file is damaged or not a real safetensors file."
        )
    if header_length > len(data) - 8:
        raise ModelLoadError(damaged)
    try:
        header = json.loads(data[8 : 8 + header_length])
    except ValueError:
        raise ModelLoadError(damaged) from None
    if not isinstance(header, dict):
        raise ModelLoadError(damaged)
    raw_metadata = header.get("__metadata__") or {}
    metadata = {str(k): str(v) for k, v in raw_metadata.items()} if isinstance(raw_metadata, dict) else {}
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    try:
        state = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError):
        raise ModelLoadError(damaged) from None
    if not state:
        raise ModelLoadError(f"This safetensors file holds no tensors. {SAVE_HINT}")
    return dict(state), metadata


def _refuse_other_formats(data: bytes) -> None:
    """Recognise, by their contents, files that are not PyTorch pickles before torch sees them."""
    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise ModelLoadError(f"This is a Keras/HDF5 file; featviz reads PyTorch checkpoints. {SAVE_HINT}")
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
            f"code. {SAVE_HINT}"
        )
    if sum(info.file_size for info in infos) > MAX_CHECKPOINT_BYTES:
        raise ModelLoadError(
            f"The checkpoint is too large once unpacked (over {megabytes(MAX_CHECKPOINT_BYTES)}). "
            f"{SAVE_HINT}"
        )


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    header_length = int.from_bytes(data[:8], "little")
    return 0 < header_length <= len(data) - 8 and data[8:10] in (b'{"', b"{ ", b"{\n")


def _torch_load(data: bytes, filename: str | None = None) -> Any:
    """``torch.load`` restricted to tensors and plain containers; every failure becomes a ModelLoadError.

    Besides tensors and containers, only ``argparse.Namespace`` may be unpickled: timm's training script
    keeps its command-line arguments in every checkpoint, and a Namespace is a plain attribute holder.
    """
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - classified below
        message = str(exc)
    if "TorchScript" in message:
        raise ModelLoadError(
            "This is a TorchScript archive (saved with torch.jit.save); featviz does not run TorchScript "
            f"code. {SAVE_HINT}"
        ) from None
    found = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", message)
    if found:
        name = found.group(1)
        module, _, attribute = name.rpartition(".")
        if module.split(".")[0] in _DANGEROUS_MODULES or attribute in _DANGEROUS_NAMES or not module:
            raise ModelLoadError(
                f"This file tries to run code while it is being read (it calls {name}). featviz refused "
                f"it and nothing was run. Only upload weights from a source you trust. {SAVE_HINT}"
            ) from None
        if ".models." in f".{module}." or module.startswith(("torch.nn", "torchvision")):
            raise ModelLoadError(
                f"This file holds a whole pickled model ({name}), not just its weights. For safety featviz "
                f"only reads weights. {SAVE_HINT}"
            ) from None
        raise ModelLoadError(
            f"This file holds pickled Python objects ({name}), not only weights: a whole model saved with "
            f"torch.save(model), or training extras. For safety featviz only reads tensors. {SAVE_HINT}"
        ) from None
    extension = os.path.splitext(display_name(filename).lower())[1]
    other = _OTHER_FORMATS.get(extension)
    if other:
        raise ModelLoadError(f"This looks like {other}; featviz reads PyTorch checkpoints. {SAVE_HINT}")
    raise ModelLoadError(
        "This file is not a PyTorch checkpoint featviz can read (it may be damaged, truncated, or in "
        f"another format). {SAVE_HINT}"
    )


def _tensor_entries(mapping: Mapping[Any, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in mapping.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


@dataclass(frozen=True)
class Variant:
    """The checkpoint's tensors with wrapper prefixes removed, and torch's per-module version numbers."""

    prefix: str
    state: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    keys: frozenset[str] = field(init=False)  # without the BatchNorm counters

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", frozenset(k for k in self.state if not is_counter(k)))


def _find_state_dict(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """The tensors of the state dict inside ``obj`` (a bare state dict or a training checkpoint), the
    ``_metadata`` that ``state_dict()`` attaches (module versions, which some modules need to load), and
    the wrapper entry it was found under ("" for a bare state dict)."""
    found = _search_state_dict(obj, depth=0, path="")
    if found is not None:
        mapping, entry = found
        metadata = getattr(mapping, "_metadata", None)
        return _tensor_entries(mapping), dict(metadata) if isinstance(metadata, Mapping) else {}, entry
    if isinstance(obj, Mapping):
        keys = ", ".join(sorted(str(k) for k in obj)[:8]) or "nothing"
        what = f"a dictionary with {keys}"
    elif isinstance(obj, torch.Tensor):
        what = "a single tensor"
    else:
        what = type(obj).__name__
    raise ModelLoadError(f"The file was read but holds no model weights (it holds {what}). {SAVE_HINT}")


def _search_state_dict(obj: Any, depth: int, path: str) -> tuple[Mapping[Any, Any], str] | None:
    if not isinstance(obj, Mapping):
        return None
    if depth < 2:
        for key in _WRAPPER_KEYS:
            found = _search_state_dict(obj.get(key), depth + 1, f"{path}/{key}" if path else key)
            if found is not None:
                return found
    return (obj, path) if _tensor_entries(obj) else None


def _key_variants(state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> list[Variant]:
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
    return [Variant(prefix, found[prefix], _strip_metadata(metadata, prefix)) for prefix in order]


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


def megabytes(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MB" if size >= 1 << 20 else f"{size / 1024:,.0f} KB"


def display_name(filename: str | None) -> str:
    if not filename:
        return ""
    name = os.path.basename(str(filename).replace("\\", "/")).strip()
    return name if len(name) <= 80 else name[:77] + "..."
