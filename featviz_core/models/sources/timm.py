"""timm's architectures (PyTorch Image Models), with their pretrained weights from the Hugging Face hub.

Weights are fetched only when asked for (:func:`download_timm_weights`, which the sidebar's Download button
calls), into huggingface_hub's usual cache (``$HF_HOME/hub``), with progress, checked against the hub's
SHA-256, and read from that cache without any network request afterwards. Preprocessing is exactly timm's
own: ``resolve_model_data_config`` + ``create_transform(is_training=False)``. timm itself is imported
only when a timm model is used.
"""

from __future__ import annotations

import difflib
import logging
import os
import statistics
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision import transforms as T

from ...errors import ModelLoadError
from ..keys import model_key
from ..loaded import LoadedModel, ModelSource
from .download import ProgressCallback, fetch, offline
from .hub import hf_cache_dir, hub_failure_reason, hub_progress_bar, verify_blob

__all__ = ["download_timm_weights", "load_timm", "split_timm_name", "timm_preprocessing", "timm_weights_cached"]

_log = logging.getLogger("featviz")
_HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm itself looks for, in its order


def _timm() -> Any:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is in requirements.txt
        raise ModelLoadError("timm is not installed here; install it with 'pip install timm'.") from None
    return timm


def split_timm_name(name: str) -> tuple[str, str | None]:
    """``"resnet50.a1_in1k"`` -> ``("resnet50", "a1_in1k")``; a bare architecture has no tag."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def _check(name: str) -> tuple[str, str | None]:
    timm = _timm()
    arch, tag = split_timm_name(name.strip())
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"'{arch}' is not a timm architecture.{hint} See timm.list_models().")
    return arch, tag


def _pretrained_cfg(name: str) -> Any:
    timm = _timm()
    arch, tag = _check(name)
    try:
        cfg = timm.models.get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    except RuntimeError:  # an unknown tag
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        tags = timm.list_pretrained(f"{arch}.*")[:6]
        hint = f" Its pretrained versions are: {', '.join(tags)}." if tags else " It has no pretrained weights."
        raise ModelLoadError(f"timm has no pretrained weights called '{name}'.{hint}")
    return cfg


def _cached_file(cfg: Any) -> str | None:
    """The weights file of ``cfg`` if it is already on this machine (no network)."""
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        for filename in (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HF_FILES:
            found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir(), revision=revision or None)
            if isinstance(found, str) and os.path.isfile(found):
                return found
        return None
    path = _url_cache_path(cfg.url)
    return path if os.path.isfile(path) else None


def _url_cache_path(url: str) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url.split("?")[0]))


def timm_weights_cached(name: str) -> bool:
    """True when ``name``'s pretrained weights are already on disk, so loading needs no network."""
    try:
        return _cached_file(_pretrained_cfg(name)) is not None
    except ModelLoadError:
        return False


def download_timm_weights(name: str, progress: ProgressCallback | None = None) -> str:
    """Make sure ``name``'s pretrained weights are in the local cache; return the file's path.

    Nothing is fetched when the file is there. Otherwise it comes from the Hugging Face hub (or timm's
    original address), reporting ``progress(done, total)``, and is checked. Offline or failing ->
    :class:`ModelLoadError` in one sentence.
    """
    cfg = _pretrained_cfg(name)
    cached = _cached_file(cfg)
    if cached is not None:
        return cached
    if not cfg.hf_hub_id:
        return fetch(cfg.url, _url_cache_path(cfg.url), progress, f"the pretrained weights of {name}")
    if offline():
        raise ModelLoadError(
            f"The pretrained weights of {name} are not on this machine and downloads are switched off here "
            "(FEATVIZ_OFFLINE). Use the offline demo model or your own checkpoint."
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    repo, _, revision = cfg.hf_hub_id.partition("@")
    filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HF_FILES
    for i, filename in enumerate(filenames):
        try:
            path = hf_hub_download(
                repo, filename, revision=revision or None, cache_dir=hf_cache_dir(),
                tqdm_class=hub_progress_bar(progress), library_name="featviz",
            )
        except EntryNotFoundError:
            if i + 1 < len(filenames):
                continue
            raise ModelLoadError(f"The Hugging Face hub has no weights file for {name}.") from None
        except RepositoryNotFoundError:
            raise ModelLoadError(f"The Hugging Face hub has no model {repo} (for {name}).") from None
        except Exception as exc:  # noqa: BLE001 - network failures of every kind
            _log.warning("download of %s/%s failed: %r", repo, filename, exc)
            raise ModelLoadError(
                f"Could not download the pretrained weights of {name} from the Hugging Face hub: "
                f"{hub_failure_reason(exc)}. Check the internet connection, or use the offline demo model or "
                "your own checkpoint."
            ) from None
        verify_blob(path)
        return path
    raise AssertionError("unreachable")  # pragma: no cover


def timm_preprocessing(
    module: nn.Module, in_channels: int = 3
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], Any], tuple[int, int]]:
    """(transform, view, input size) exactly as timm evaluates ``module`` (grey: the means averaged)."""
    from timm.data import create_transform, resolve_model_data_config

    config = dict(resolve_model_data_config(module))
    if in_channels == 1:
        config["mean"] = (statistics.fmean(config["mean"]),)
        config["std"] = (statistics.fmean(config["std"]),)
        config["input_size"] = (1, *config["input_size"][1:])
    transform = create_transform(**config, is_training=False)
    steps = list(getattr(transform, "transforms", [transform]))
    geometric = []
    for step in steps:
        if type(step).__name__ in ("ToTensor", "MaybeToTensor", "PILToTensor"):
            break
        geometric.append(step)
    view = T.Compose(geometric) if geometric else (lambda image: image)
    _channels, height, width = config["input_size"]
    return transform, view, (int(height), int(width))


def timm_categories(module: nn.Module, classes: int) -> list[str] | None:
    """ImageNet class names when the model's head is an ImageNet one (1k, 21k, 22k ...), else None."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    try:
        subset = infer_imagenet_subset(module)
        if not subset:
            return None
        info = ImageNetInfo(subset)
        names = [description.split(",")[0].strip() for description in info.label_descriptions()]
    except Exception:  # noqa: BLE001 - a head of another data set: class numbers instead of names
        return None
    return names if len(names) == classes else None


def _num_classes(module: nn.Module) -> int:
    return int(getattr(module, "num_classes", 0) or 0)


def loaded_timm(module: nn.Module, name: str, *, pretrained: bool, tag: str | None, source_note: str = "") -> LoadedModel:
    module.eval()
    transform, view, input_size = timm_preprocessing(module)
    full = name if tag is None or "." in name else f"{name}.{tag}"
    if pretrained:
        provenance = f"timm {full}, pretrained weights{source_note}"
    else:
        provenance = f"timm {full}, random weights (seed 0), not trained"
    return LoadedModel(
        module=module,
        name=full,
        key=model_key(ModelSource.TIMM, full, "pretrained" if pretrained else "random"),
        categories=timm_categories(module, _num_classes(module)),
        input_channels=3,
        input_size=input_size,
        transform=transform,
        view=view,
        source=ModelSource.TIMM,
        provenance=provenance,
        weights=full if pretrained else None,
    )


def load_timm(name: str, pretrained: bool = True, progress: ProgressCallback | None = None) -> LoadedModel:
    """A timm model by name (``"resnet50"`` or with a weight tag, ``"resnet50.a1_in1k"``).

    With ``pretrained`` its weights are read from the local cache, downloaded first when missing (see
    :func:`download_timm_weights`); without, the architecture gets seeded random weights (seed 0).
    """
    timm = _timm()
    arch, tag = _check(name)
    if pretrained:
        cfg = _pretrained_cfg(name)
        path = download_timm_weights(name, progress)
        full = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = timm.create_model(full, pretrained=True, pretrained_cfg_overlay={"file": path})
        except Exception as exc:  # noqa: BLE001 - a damaged cache file
            _log.warning("timm could not read %s", path, exc_info=True)
            raise ModelLoadError(
                f"The cached weights of {full} at {path} could not be read ({type(exc).__name__}). Delete "
                "that file so it downloads again, or use the offline demo model."
            ) from None
        where = f" from the Hugging Face hub ({cfg.hf_hub_id})" if cfg.hf_hub_id else ""
        return loaded_timm(module, full, pretrained=True, tag=None, source_note=where)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = timm.create_model(f"{arch}.{tag}" if tag else arch, pretrained=False)
    return loaded_timm(module, arch, pretrained=False, tag=tag)
