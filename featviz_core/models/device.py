"""Where models run: a CUDA GPU, then Apple's MPS, then the CPU; ``FEATVIZ_DEVICE=cpu|cuda|mps`` overrides.

:func:`place` moves a loaded model to the chosen device and tries one forward pass there; a model that does
not fit, or uses an operation the device lacks (some MPS builds), stays on the CPU, and :class:`Placement`
says why in one sentence. Every method then feeds its inputs to ``model.device`` and brings results back to
the CPU once per call.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

import torch

from ..errors import FeatvizError
from .loaded import LoadedModel

__all__ = ["DEVICE_ENV", "Placement", "choose_device", "describe_device", "place"]

_log = logging.getLogger("featviz")

DEVICE_ENV = "FEATVIZ_DEVICE"
_KINDS = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(preference: str | None = None) -> torch.device:
    """The device models run on: ``preference`` (or ``$FEATVIZ_DEVICE``) if given, else CUDA, MPS, CPU.

    Asking for a device this machine does not have raises :class:`FeatvizError` saying which it has.
    """
    wanted = (preference if preference is not None else os.environ.get(DEVICE_ENV, "")).strip().lower()
    if wanted:
        kind = wanted.split(":")[0]
        if kind not in _KINDS:
            raise FeatvizError(f"{DEVICE_ENV}={wanted!r} is not a device featviz knows; use cpu, cuda or mps.")
        if kind == "cuda" and not torch.cuda.is_available():
            raise FeatvizError(f"{DEVICE_ENV} asks for a CUDA GPU, but this machine has none; use cpu.")
        if kind == "mps" and not _mps_available():
            raise FeatvizError(f"{DEVICE_ENV} asks for Apple's MPS, but it is not available here; use cpu.")
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """``"NVIDIA H200 (CUDA)"``, ``"Apple GPU (MPS)"`` or ``"CPU"``."""
    if device.type == "cuda":
        try:
            return f"{torch.cuda.get_device_name(device)} (CUDA)"
        except (RuntimeError, AssertionError):
            return "CUDA GPU"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return "CPU"


@dataclass(frozen=True)
class Placement:
    """Where a model ended up, and why it is not where it was asked to be (None when it is)."""

    model: LoadedModel
    device: torch.device
    fallback: str | None = None


def _moved(model: LoadedModel, device: torch.device) -> LoadedModel:
    module = model.module.to(device)
    suffix = "" if device.type == "cpu" else f"@{device.type}"
    return dataclasses.replace(model, module=module, key=model.key.split("@")[0] + suffix)


def place(model: LoadedModel, device: torch.device | str | None = None) -> Placement:
    """``model`` on ``device`` (default: :func:`choose_device`), checked with one forward pass there.

    Out of memory or an unsupported operation: the model stays on (or returns to) the CPU, and
    ``Placement.fallback`` says so in one sentence. Models that run outside PyTorch (onnxruntime) stay put.
    """
    target = torch.device(device) if device is not None else choose_device()
    if target.type == "cpu" or not model.supports_gradients or model.device == target:
        return Placement(model, model.device)
    try:
        moved = _moved(model, target)
        dummy = torch.zeros(1, model.input_channels, *model.input_size, device=target)
        with model.lock, torch.inference_mode():
            moved.module(dummy)
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        return Placement(moved, target)
    except (RuntimeError, NotImplementedError, MemoryError) as exc:
        _log.warning("%s does not run on %s; using the CPU", model.name, target, exc_info=True)
        back = _moved(model, torch.device("cpu"))
        if target.type == "cuda":
            torch.cuda.empty_cache()
        text = str(exc).lower()
        why = "it does not fit in the GPU's memory" if "out of memory" in text else (
            f"it uses an operation {describe_device(target)} does not support"
        )
        return Placement(back, torch.device("cpu"), f"{model.name} runs on the CPU because {why}.")
