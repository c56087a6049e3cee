"""A user's weights file -> :class:`~featviz_core.models.loaded.LoadedModel`.

PyTorch checkpoints (read with ``torch.load(..., weights_only=True)`` only) and safetensors files (read
with ``safetensors.torch.load``, which holds no code) of a torchvision or timm architecture, possibly
fine-tuned to another number of classes or to grey (1-channel) input. A torchvision video classifier's weights
(``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``) open as a 3-D model, fed as torchvision feeds it. Given no architecture, it is
detected from the file's keys and shapes (:mod:`featviz_core.models.sources.detect`), helped by what the file
says about itself (timm's ``arch`` entry, a safetensors ``__metadata__`` name) and its file name.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import chain
from typing import Any

import torch
import torchvision
from torch import nn

from ...errors import ModelLoadError
from ..keys import bytes_digest, model_key, names_digest
from ..loaded import LoadedModel, ModelSource, view_transform
from ..volume_input import VideoPreprocessing, no_picture, no_view
from .detect import Arch, Fit, build, checkpoint_architectures, detect, fit_for, parse_arch, signature
from .state_dicts import SAVE_HINT, WeightFile, is_counter, read_weights
from .torchvision import VIDEO_FRAMES, is_convolutional, video_models

__all__ = ["load_checkpoint"]

_log = logging.getLogger(__name__)


def load_checkpoint(
    data: bytes,
    arch: str | None = None,
    categories: list[str] | None = None,
    filename: str | None = None,
) -> LoadedModel:
    """A torchvision or timm model with the weights of a user's file.

    ``data`` is the file's bytes: a state dict saved with ``torch.save(model.state_dict(), path)`` or
    ``safetensors.torch.save_file``, or a training checkpoint holding one (under ``state_dict``,
    ``model``, ``state_dict_ema``, ``model_ema`` ...; ``module.``/``model.``/``_orig_mod.`` key prefixes are
    removed). ``arch`` names the architecture (``"resnet18"``, ``"timm:resnet50d"``); None detects it.
    ``categories`` names the classes (see :func:`~featviz_core.models.class_names.parse_class_names`);
    ``filename`` describes the model and hints at its architecture. Raises :class:`ModelLoadError` only.
    """
    try:
        return _load_checkpoint(data, arch, categories, filename)
    except ModelLoadError:
        raise
    except Exception as exc:  # the boundary: nothing but ModelLoadError leaves
        _log.warning("unexpected error while loading a checkpoint", exc_info=True)
        raise ModelLoadError(
            f"The checkpoint could not be loaded ({type(exc).__name__}). It should be the state dict of a "
            f"torchvision or timm model. {SAVE_HINT}"
        ) from None


def _chosen_arch(arch: str | None) -> Arch | None:
    if arch is None:
        return None
    found = parse_arch(arch)
    if found is None:
        raise ModelLoadError(
            f"'{arch}' is not a torchvision or timm architecture. Choose one from the menu (or "
            "featviz_core.classification_models() / timm.list_models()), or let featviz detect it."
        )
    return found


def _hints(weights: WeightFile) -> list[Arch]:
    """Architectures to try first: what the file names itself, then names found in the file name."""
    hints = [a for a in (parse_arch(name) for name in weights.arch_names) if a is not None]
    lower = weights.filename.lower()
    hints.extend(
        Arch("torchvision", n)
        for n in sorted((n for n in checkpoint_architectures() if n in lower), key=len, reverse=True)
    )
    try:
        import timm

        stem = lower.rsplit(".", 1)[0]
        found = [n for n in timm.list_models() if len(n) > 4 and n in stem]
        hints.extend(Arch("timm", n) for n in sorted(found, key=len, reverse=True)[:8])
    except ImportError:  # pragma: no cover - timm is in requirements.txt
        pass
    return list(dict.fromkeys(hints))


def _load_checkpoint(
    data: bytes, arch: str | None, categories: list[str] | None, filename: str | None
) -> LoadedModel:
    chosen = _chosen_arch(arch)
    weights = read_weights(data, filename)
    hints = _hints(weights)
    started = time.perf_counter()
    fit = detect(weights.variants, hints) if chosen is None else fit_for(chosen, weights.variants, hints)
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
    module = instantiate(fit)
    is_video = fit.arch.library == "torchvision" and fit.arch.name in video_models()
    transform, view, input_size = _preprocessing(fit.arch, module, fit.in_channels)
    if categories is None and fit.arch.library == "timm" and fit.num_classes >= 1000:
        from .timm import timm_categories

        categories = timm_categories(module, fit.num_classes)
    names = () if categories is None else (names_digest(categories),)  # extractions carry the class names
    key = model_key(ModelSource.CHECKPOINT, bytes_digest(data), fit.arch.library, fit.arch.name, *names)
    return LoadedModel(
        module=module,
        name=fit.arch.name,
        key=key,
        categories=categories,
        input_channels=fit.in_channels,
        input_size=input_size,
        transform=no_picture if is_video else transform,
        view=view,
        source=ModelSource.CHECKPOINT,
        provenance=_provenance(fit, chosen is None, weights, categories is not None),
        weights=None,
        input_depth=VIDEO_FRAMES if is_video else None,
        volume_transform=VideoPreprocessing(transform, VIDEO_FRAMES, fit.in_channels) if is_video else None,
    )


def _preprocessing(
    arch: Arch, module: nn.Module, in_channels: int
) -> tuple[Callable[[Any], Any], Callable[[Any], Any], tuple[int, int]]:
    """The library's own eval preprocessing for ``arch`` (grey models: one channel, the means averaged)."""
    if arch.library == "timm":
        from .timm import timm_preprocessing

        return timm_preprocessing(module, in_channels)
    transforms = torchvision.models.get_model_weights(arch.name).DEFAULT.transforms()
    crop = list(transforms.crop_size)
    resize = list(transforms.resize_size) if transforms.resize_size is not None else None
    video = arch.name in video_models()  # VideoClassification: (T, C, H, W) clips, sizes as pairs
    if in_channels == 1:
        transforms = type(transforms)(
            crop_size=tuple(crop) if video else crop[0],
            resize_size=tuple(resize or crop) if video else resize[0] if resize else crop[0],
            mean=(statistics.fmean(transforms.mean),),
            std=(statistics.fmean(transforms.std),),
            interpolation=transforms.interpolation,
            **({} if video else {"antialias": transforms.antialias}),
        )
    if video:  # a 3-D model: LoadedModel.volume_transform feeds it (VideoPreprocessing), pictures are refused
        return transforms, no_view, (crop[0], crop[-1])
    view = view_transform(resize, crop, transforms.interpolation)
    return transforms, view, (crop[0], crop[-1])


def _provenance(fit: Fit, detected: bool, weights: WeightFile, named: bool) -> str:
    kind = "safetensors file" if weights.format == "safetensors" else "checkpoint"
    source = f"your {kind} {weights.filename}" if weights.filename else f"your {kind}"
    how = "detected architecture" if detected else "architecture"
    classes = f"{fit.num_classes} class{'es' if fit.num_classes != 1 else ''}"
    channels = "1 input channel" if fit.in_channels == 1 else f"{fit.in_channels} input channels"
    text = f"{source} — {how} {fit.arch} ({classes}, {channels})"
    if weights.entry:
        text += f", weights from its '{weights.entry}' entry"
    if named:
        text += ", class names from your file"
    if fit.arch.library == "torchvision" and fit.arch.name in ("googlenet", "inception_v3") and fit.in_channels == 3:
        text += "; input scaled as for torchvision's pretrained weights (transform_input=True)"
    if fit.arch.library == "torchvision" and not is_convolutional(fit.arch.name):
        text += "; a transformer: only its convolutional stem gives channel maps"
    if fit.arch.library == "torchvision" and fit.arch.name in video_models():
        text += f"; a 3-D model: {VIDEO_FRAMES} frames of a clip or slices of a scan (Volumes and clips page)"
    if detected and fit.alternatives:
        others = ", ".join(str(a) for a in fit.alternatives[:3])
        text += f"; the weights also fit {others} — choose it in the menu if that is what you trained"
    return text


# ---------------------------------------------------------------------------------------------------
# Building the model with the checkpoint's tensors


def instantiate(fit: Fit) -> nn.Module:
    """``fit.arch`` holding the checkpoint's tensors, in eval mode, without allocating other weights.

    Architectures that compute non-persistent buffers when built (timm's relative-position tables) are
    built for real instead, so those buffers hold values.
    """
    sig = signature(fit.arch)
    assert sig is not None
    module = build(fit.arch, fit.num_classes, fit.aux, fit.in_channels, sig.first_conv)
    _load_state(module, fit)
    if any(t.is_meta for t in chain(module.parameters(), module.buffers())):
        module = build(fit.arch, fit.num_classes, fit.aux, fit.in_channels, sig.first_conv, meta=False)
        _load_state(module, fit)
        if any(t.is_meta for t in chain(module.parameters(), module.buffers())):
            raise ModelLoadError(f"featviz could not set up every weight of {fit.arch} from this checkpoint.")
    return module.eval()


def _load_state(module: nn.Module, fit: Fit) -> None:
    reference = module.state_dict(keep_vars=True)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, ref in reference.items():
        tensor = fit.variant.state.get(key)
        if tensor is None and is_counter(key):
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
