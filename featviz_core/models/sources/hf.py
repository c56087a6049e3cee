"""Hugging Face ``transformers`` image models: a hub id or a zip of a ``save_pretrained`` folder.

The class is the library's own, chosen from the config: the image-classification class the config names
(``ViTForImageClassification``, ``DeiTForImageClassificationWithTeacher`` ...), otherwise the model type's
backbone (``Dinov2Model``: no class scores). Weights are safetensors only, read in float32 with eager
attention (so attention weights can be asked for); a model's own code (``auto_map``, ``trust_remote_code``)
is never run: the config is built from its JSON by the library's class for its ``model_type``.
Preprocessing is the model's image processor replayed by :mod:`.hf_preprocess`; class names come from
``config.id2label``. The model returns a ``ModelOutput``; featviz reads its ``logits`` as the class scores
(:func:`featviz_core.extract.class_scores`). transformers is imported only when such a model loads.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from ...errors import ModelLoadError
from ..keys import model_key
from ..loaded import LoadedModel, ModelSource
from .download import ProgressCallback
from .hf_files import download_hf, hf_cached, read_json, split_model_id, unzip_model
from .hf_preprocess import hf_preprocessing

__all__ = ["download_hf", "hf_cached", "load_hf"]

_log = logging.getLogger("featviz")
_GENERIC_LABEL = re.compile(r"LABEL_\d+")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:  # pragma: no cover - transformers is in requirements.txt
        raise ModelLoadError("transformers is not installed here; install it with 'pip install transformers'.") from None
    return transformers


def load_hf(
    source: str | bytes, *, filename: str | None = None, progress: ProgressCallback | None = None
) -> LoadedModel:
    """A transformers image model: ``source`` is a hub id (``"google/vit-base-patch16-224"``, optionally
    ``@revision``) or the bytes of a zip of a ``save_pretrained`` folder (``filename`` names it).

    A hub model is read from huggingface_hub's cache, downloaded first when missing (see :func:`download_hf`);
    a zip never touches the network. Raises :class:`ModelLoadError` only.
    """
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            return _load_zip(bytes(source), filename)
        if not isinstance(source, str):
            raise ModelLoadError("Give a Hugging Face model id (text) or the bytes of a zip of its folder.")
        return _load_hub(source.strip(), progress)
    except ModelLoadError:
        raise
    except Exception as exc:  # the boundary: nothing but ModelLoadError leaves
        _log.warning("unexpected error while loading a transformers model", exc_info=True)
        raise ModelLoadError(
            f"The Hugging Face model could not be loaded ({type(exc).__name__}). It should be a transformers "
            "image model saved with save_pretrained (config.json and model.safetensors)."
        ) from None


def _load_hub(model_id: str, progress: ProgressCallback | None) -> LoadedModel:
    split_model_id(model_id)
    folder = download_hf(model_id, progress)
    commit = os.path.basename(folder)  # huggingface_hub's cache: snapshots/<commit>/
    where = f" (commit {commit[:10]})" if re.fullmatch(r"[0-9a-f]{40}", commit) else ""
    return _load_folder(folder, name=model_id, key=model_key(ModelSource.HF, model_id), origin=f"Hugging Face model {model_id}",
                        weights_from=f"weights from the Hugging Face hub{where}", weights=model_id)


def _load_zip(data: bytes, filename: str | None) -> LoadedModel:
    digest = hashlib.sha256(data).hexdigest()
    label = Path(filename).name if filename else None
    name = label[:-4] if label and label.lower().endswith(".zip") else label
    origin = f"your Hugging Face model folder {label}" if label else "your Hugging Face model folder"
    with tempfile.TemporaryDirectory(prefix="featviz-hf-", ignore_cleanup_errors=True) as folder:
        unzip_model(data, folder)
        return _load_folder(folder, name=name, key=model_key("hf-zip", digest), origin=origin,
                            weights_from="safetensors weights", weights=None)


def _config(folder: str) -> Any:
    """The config from config.json, built by the library's class for its model type (see :func:`_public`)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    values = read_json(os.path.join(folder, "config.json"), "config.json")
    model_type = values.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        own = " and brings its own Python code (auto_map), which featviz never runs" if "auto_map" in values else ""
        raise ModelLoadError(
            f"This model's type ({str(model_type or 'none given')[:60]}) is not one the installed transformers "
            f"knows{own}; featviz shows the library's own image models (ViT, DeiT, Swin, ConvNeXT, DINOv2 ...)."
        )
    return CONFIG_MAPPING[model_type].from_dict(_public(values))


def _public(values: Any) -> Any:
    """A config without what could make the library fetch or run code: ``auto_map``, ``trust_remote_code``
    and private keys (``_attn_implementation_internal`` named a hub kernel in CVE-2026-4372), at any depth."""
    if isinstance(values, dict):
        return {k: _public(v) for k, v in values.items()
                if not (isinstance(k, str) and (k.startswith("_") or k in ("auto_map", "trust_remote_code")))}
    if isinstance(values, list):
        return [_public(v) for v in values]
    return values


def _model_class(config: Any) -> tuple[Any, bool]:
    """(class, is a classifier): the image-classification class the config names, else the backbone."""
    from transformers.models.auto import modeling_auto

    transformers = _transformers()
    classifiers: set[str] = set()
    for names in modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.values():
        classifiers.update((names,) if isinstance(names, str) else names)
    named = [getattr(transformers, a, None) for a in (getattr(config, "architectures", None) or []) if a in classifiers]
    if named and named[0] is not None:
        return named[0], True
    backbone = modeling_auto.MODEL_FOR_IMAGE_MAPPING_NAMES.get(config.model_type)
    if isinstance(backbone, tuple | list):
        backbone = backbone[0]
    cls = getattr(transformers, backbone, None) if isinstance(backbone, str) else None
    parameters = list(inspect.signature(cls.forward).parameters) if cls is not None else []
    if cls is None or parameters[1:2] != ["pixel_values"]:
        raise ModelLoadError(
            f"A {config.model_type} model is not an image model featviz can show: it needs one that takes an image "
            "(pixel_values), such as ViT, DeiT, Swin, ConvNeXT or DINOv2."
        )
    return cls, False


def _module(cls: Any, folder: str, config: Any) -> tuple[Any, str]:
    try:
        module, info = cls.from_pretrained(
            folder, config=config, use_safetensors=True, local_files_only=True, attn_implementation="eager",
            dtype=torch.float32, output_loading_info=True,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        _log.warning("transformers could not load %s", folder, exc_info=True)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"The weights do not fit {cls.__name__}: {first}") from None
    missing = sorted(str(k) for k in info.get("missing_keys", ()))
    damaged = [k for k in missing if "pooler." not in k] + [str(k) for k in info.get("mismatched_keys", ())]
    if damaged:
        raise ModelLoadError(
            f"The weights do not fit {cls.__name__}: {len(damaged)} of its weights are missing from the file or "
            f"of another shape ({', '.join(damaged[:3])})."
        )
    note = "; its pooler is not in the file (random weights: ignore pooler_output)" if missing else ""
    return module.eval(), note


def _processor(folder: str, config: Any) -> tuple[Any, str]:
    """The model's image processor, the library's own class; and a note when the folder has none."""
    from transformers import AutoImageProcessor

    path = os.path.join(folder, "preprocessor_config.json")
    options: dict[str, Any] = {"config": config, "trust_remote_code": False, "local_files_only": True}
    note = ""
    if os.path.isfile(path):
        _check_processor_class(read_json(path, "preprocessor_config.json"))
    else:  # the model type's processor with its defaults, at the config's image size
        options["processor_config"] = {}
        size = getattr(config, "image_size", None)
        if isinstance(size, int):
            options.update(size={"height": size, "width": size}, do_center_crop=False)
        note = "; no preprocessor_config.json, so its image processor's defaults are used"
    try:
        return AutoImageProcessor.from_pretrained(folder, **options), note
    except (OSError, ValueError) as exc:
        _log.warning("no image processor for %s: %r", folder, exc)
        raise ModelLoadError(
            "featviz could not read this model's preprocessor_config.json with the installed transformers (a "
            "processor of the model's own code is never run); save the model with a library image processor."
        ) from None


def _check_processor_class(values: dict[str, Any]) -> None:
    """Refuse a processor class the library does not have (the library would put its model type's in its
    place, which is not the preprocessing the model was made with)."""
    from transformers.models.auto.image_processing_auto import get_image_processor_class_from_name

    name = values.get("image_processor_type") or str(values.get("feature_extractor_type") or "").replace(
        "FeatureExtractor", "ImageProcessor")
    if isinstance(name, str) and name:
        base = name.removesuffix("Fast")
        if get_image_processor_class_from_name(base) is None:
            raise ModelLoadError(
                f"This model's image processor ({base[:60]}) is its own code, which featviz never runs; save the "
                "model with one of the library's image processors."
            )


def _categories(config: Any, classes: int) -> list[str] | None:
    labels = getattr(config, "id2label", None) or {}
    try:
        names = [str(labels[i]) for i in range(classes)]
    except (KeyError, TypeError):
        return None
    return None if all(_GENERIC_LABEL.fullmatch(n) for n in names) else names


def _load_folder(folder: str, *, name: str | None, key: str, origin: str, weights_from: str,
                 weights: str | None) -> LoadedModel:
    _transformers()
    config = _config(folder)
    cls, classifier = _model_class(config)
    channels = int(getattr(config, "num_channels", 3) or 3)
    if channels not in (1, 3):
        raise ModelLoadError(
            f"This model takes {channels} input channels; featviz shows models that take grey (1 channel) or "
            "colour (3 channels) images."
        )
    processor, note = _processor(folder, config)
    transform, view, pipeline = hf_preprocessing(processor, channels)
    if pipeline is None:
        note += f"; images prepared by its {type(processor).__name__} itself"
    module, pooler_note = _module(cls, folder, config)
    size = pipeline.input_size if pipeline is not None else None
    if size is None:
        side = getattr(config, "image_size", 224)
        size = tuple(side) if isinstance(side, list | tuple) else (int(side), int(side))
    classes = int(getattr(config, "num_labels", 0) or 0) if classifier else 0
    what = f"{cls.__name__}, {classes} class{'es' if classes != 1 else ''}" if classifier else \
        f"{cls.__name__}, a backbone without class scores"
    return LoadedModel(
        module=module,
        name=name or cls.__name__,
        key=key,
        categories=_categories(config, classes) if classifier else None,
        input_channels=channels,
        input_size=(int(size[0]), int(size[1])),
        transform=transform,
        view=view,
        source=ModelSource.HF,
        provenance=f"{origin} ({what}), {weights_from}{note}{pooler_note}",
        weights=weights,
    )
