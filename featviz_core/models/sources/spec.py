"""Loading the model one string names, for the command line (``featviz exemplars --model ...``, ``featviz run``).

The strings (``demo``, ``resnet18``, ``tv:resnet18:random``, ``timm:resnet50.a1_in1k``, ``hf:ORG/NAME``, a
``.pth``/``.safetensors``, ``.onnx`` or transformers ``.zip`` file, ``package.module:factory``) are those of
:class:`~featviz_core.models.spec.ModelSpec`;
``--weights`` and ``--classes`` apply to your own model class, ``--classes`` to checkpoints and ONNX files too.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import ModelLoadError
from ..class_names import parse_class_names
from ..loaded import LoadedModel, ModelSource
from ..spec import ModelSpec
from .download import ProgressCallback

__all__ = ["load_spec"]


def load_spec(
    spec: str | ModelSpec,
    *,
    weights: str | os.PathLike[str] | None = None,
    classes: str | os.PathLike[str] | None = None,
    input_size: tuple[int, int] | None = None,
    normalization: str | None = None,
    progress: ProgressCallback | None = None,
) -> LoadedModel:
    """The model ``spec`` names (see the table above); ModelLoadError saying what is wrong otherwise."""
    text = str(spec).strip()
    parsed = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(text)
    categories = parse_class_names(Path(classes).read_bytes()) if classes is not None else None
    source, name = parsed.source, parsed.name
    if source is ModelSource.DEMO:
        from ...demo import load_demo

        return load_demo()
    path = Path(name).expanduser()
    if source is ModelSource.ONNX and name:
        if not path.is_file():
            raise ModelLoadError(f"There is no ONNX file {name}.")
        from .onnx import load_onnx

        return load_onnx(path.read_bytes(), path.name, input_size=input_size,
                         normalization=normalization or "imagenet", categories=categories)
    if source is ModelSource.HF:
        from .hf import load_hf

        if not parsed.is_file:
            return load_hf(name, progress=progress)
        if not path.is_file():
            raise ModelLoadError(f"There is no zip file {name}.")
        return load_hf(path.read_bytes(), filename=path.name)
    if source is ModelSource.CHECKPOINT and name and path.is_file():
        from .checkpoint import load_checkpoint

        return load_checkpoint(path.read_bytes(), categories=categories, filename=path.name)
    if source is ModelSource.TIMM:
        from .timm import load_timm

        return load_timm(name, pretrained=parsed.pretrained, progress=progress)
    if source is ModelSource.CODE and name:
        from .code import load_from_code

        return load_from_code(name, weights, categories, input_size=input_size, normalization=normalization)
    if source is ModelSource.TORCHVISION:
        from .torchvision import classification_models, load_torchvision

        if ":" in text or name in classification_models():  # a bare name must be one of torchvision's
            return load_torchvision(name, weights="DEFAULT" if parsed.pretrained else None, progress=progress)
    raise ModelLoadError(
        f"'{spec}' is not a model featviz knows: give demo, a torchvision name (resnet18), timm:NAME, hf:ORG/NAME, "
        "a .pth/.safetensors/.onnx file, a .zip of a transformers model folder, or package.module:factory."
    )
