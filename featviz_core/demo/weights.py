"""The demo models' bundled weight files: read as tensors only, into a freshly built module, with one sentence when a
file is missing or damaged."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelLoadError

__all__ = ["load_bundled"]


@lru_cache(maxsize=4)
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_bundled(module: nn.Module, path: Path, what: str, retrain: str) -> str:
    """Load ``path`` (a float32 state dict) into ``module``, put it in eval mode; the file's SHA-256 (for the key).
    ``what`` names the model in the error, ``retrain`` is the command that rebuilds the file."""
    try:
        stat = path.stat()
        digest = _digest(path, stat.st_mtime_ns, stat.st_size)
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise ModelLoadError(
            f"The bundled {what} could not be loaded from {path} ({type(exc).__name__}). "
            f"Reinstall featviz, or retrain it with '{retrain}'."
        ) from None
    module.eval()
    return digest
