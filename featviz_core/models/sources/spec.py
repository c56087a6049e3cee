"""One string for any model, for the command line (``featviz exemplars --model ...``, ``featviz run``).

==================================  ==============================================================
``demo``                            the bundled offline demo model
``resnet18``, ``tv:resnet18``       a torchvision architecture with its pretrained weights
``tv:resnet18:random``              the same with seeded random weights
``timm:resnet50.a1_in1k``           a timm architecture (with a weight tag) and its pretrained weights
``timm:resnet50d:random``           a timm architecture with seeded random weights
``hf:google/vit-base-patch16-224``  a Hugging Face transformers image model (``@revision`` may follow)
``path/to/folder.zip``              a zip of a transformers ``save_pretrained`` folder
``path/to/weights.pth``             a checkpoint or ``.safetensors`` file (architecture detected)
``path/to/model.onnx``              an ONNX file
``package.module:factory``          your own model class (``--weights`` and ``--classes`` apply)
==================================  ==============================================================
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import ModelLoadError
from ..class_names import parse_class_names
from ..loaded import LoadedModel
from .download import ProgressCallback

__all__ = ["load_spec"]

_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pth.tar", ".tar")


def load_spec(
    spec: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    classes: str | os.PathLike[str] | None = None,
    input_size: tuple[int, int] | None = None,
    normalization: str | None = None,
    progress: ProgressCallback | None = None,
) -> LoadedModel:
    """The model ``spec`` names (see the table above); ModelLoadError saying what is wrong otherwise."""
    text = spec.strip()
    categories = parse_class_names(Path(classes).read_bytes()) if classes is not None else None
    lower = text.lower()
    if lower == "demo":
        from ...demo import load_demo

        return load_demo()
    path = Path(text).expanduser()
    if lower.endswith(".onnx"):
        if not path.is_file():
            raise ModelLoadError(f"There is no ONNX file {text}.")
        from .onnx import load_onnx

        return load_onnx(path.read_bytes(), path.name, input_size=input_size,
                         normalization=normalization or "imagenet", categories=categories)
    if lower.endswith(".zip"):
        if not path.is_file():
            raise ModelLoadError(f"There is no zip file {text}.")
        from .hf import load_hf

        return load_hf(path.read_bytes(), filename=path.name)
    if lower.endswith(_WEIGHT_SUFFIXES) and path.is_file():
        from .checkpoint import load_checkpoint

        return load_checkpoint(path.read_bytes(), categories=categories, filename=path.name)
    library, _, rest = text.partition(":")
    if library == "hf":
        from .hf import load_hf

        return load_hf(rest, progress=progress)
    if library in ("timm", "tv", "torchvision"):
        name, _, flag = rest.partition(":")
        pretrained = flag != "random"
        if flag not in ("", "random"):
            raise ModelLoadError(f"'{spec}': after the name, only ':random' may follow.")
        if library == "timm":
            from .timm import load_timm

            return load_timm(name, pretrained=pretrained, progress=progress)
        from .torchvision import load_torchvision

        return load_torchvision(name, weights="DEFAULT" if pretrained else None, progress=progress)
    if ":" in text:
        from .code import load_from_code

        return load_from_code(text, weights, categories, input_size=input_size, normalization=normalization)
    from .torchvision import classification_models, load_torchvision

    if text in classification_models():
        return load_torchvision(text, progress=progress)
    raise ModelLoadError(
        f"'{spec}' is not a model featviz knows: give demo, a torchvision name (resnet18), timm:NAME, hf:ORG/NAME, "
        "a .pth/.safetensors/.onnx file, a .zip of a transformers model folder, or package.module:factory."
    )
