"""One string for any model: :class:`ModelSpec` parses it and writes it back (command line, shared links).

==================================  ==============================================================
``demo``                            the bundled offline demo model
``resnet18``, ``tv:resnet18``       a torchvision architecture with its pretrained weights
``torchvision:resnet18``            the same (``tv:`` is how it is written back)
``tv:resnet18:random``              the same with seeded random weights
``timm:resnet50.a1_in1k``           a timm architecture (with a weight tag) and its pretrained weights
``timm:resnet50d:random``           a timm architecture with seeded random weights
``hf:google/vit-base-patch16-224``  a Hugging Face transformers image model (``@revision`` may follow)
``path/to/folder.zip``              a zip of a transformers ``save_pretrained`` folder
``path/to/weights.pth``             a checkpoint or ``.safetensors`` file (architecture detected)
``path/to/model.onnx``              an ONNX file
``package.module:factory``          your own model class
``checkpoint``, ``onnx``,           the app's sidebar sources without their file (an upload is never in a link),
``code``                            and "the model given on the command line"
==================================  ==============================================================

Parsing reads the text only (no file is opened, nothing is imported); loading is
:func:`featviz_core.models.sources.load_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelLoadError
from .loaded import ModelSource

__all__ = ["WEIGHT_SUFFIXES", "ModelSpec"]

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pth.tar", ".tar")
"""File endings read as a checkpoint (state dict, training checkpoint, safetensors)."""

_LIBRARIES = {"tv": ModelSource.TORCHVISION, "torchvision": ModelSource.TORCHVISION, "timm": ModelSource.TIMM}
_WRITTEN = {ModelSource.TORCHVISION: "tv", ModelSource.TIMM: "timm"}
_SOURCE_WORDS = {"checkpoint": ModelSource.CHECKPOINT, "onnx": ModelSource.ONNX, "code": ModelSource.CODE}


@dataclass(frozen=True)
class ModelSpec:
    """A model named in one string (see the table above).

    ``name``: the architecture or timm tag, the file's path, or ``package.module:factory``; empty for the demo
    model and for a sidebar source named without its file. ``pretrained``: False for ``:random`` (torchvision and
    timm only). ``str(spec)`` writes it back in its usual form, which :meth:`parse` reads as the same spec.
    """

    source: ModelSource
    name: str = ""
    pretrained: bool = True

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """The spec ``text`` names; ModelLoadError when what follows a torchvision or timm name is not ``:random``.
        A bare name (``resnet18``) is read as torchvision's; whether such a model exists is the loader's business."""
        stripped = text.strip()
        lower = stripped.lower()
        library, _, rest = stripped.partition(":")
        if lower == "demo":
            return cls(ModelSource.DEMO)
        if lower.endswith(".onnx"):
            return cls(ModelSource.ONNX, stripped)
        if lower.endswith(".zip"):
            return cls(ModelSource.HF, stripped)
        if lower.endswith(WEIGHT_SUFFIXES) and library not in _LIBRARIES:
            return cls(ModelSource.CHECKPOINT, stripped)
        if library == "hf":
            return cls(ModelSource.HF, rest)
        if library in _LIBRARIES:
            name, _, flag = rest.partition(":")
            if flag not in ("", "random"):
                raise ModelLoadError(f"'{text}': after the name, only ':random' may follow.")
            return cls(_LIBRARIES[library], name, pretrained=flag != "random")
        if ":" in stripped:
            return cls(ModelSource.CODE, stripped)
        if stripped in _SOURCE_WORDS:
            return cls(_SOURCE_WORDS[stripped])
        return cls(ModelSource.TORCHVISION, stripped)

    def __str__(self) -> str:
        if self.source in _WRITTEN:
            return f"{_WRITTEN[self.source]}:{self.name}" + ("" if self.pretrained else ":random")
        if self.source is ModelSource.DEMO:
            return "demo"
        if self.source is ModelSource.HF and not self.is_file:
            return f"hf:{self.name}"
        return self.name or str(self.source)

    @property
    def is_file(self) -> bool:
        """The spec names a file (a checkpoint, an ONNX file, a zip of a transformers folder)."""
        if self.source is ModelSource.HF:
            return self.name.lower().endswith(".zip")
        return bool(self.name) and self.source in (ModelSource.CHECKPOINT, ModelSource.ONNX)

    @property
    def library(self) -> bool:
        """A torchvision or timm architecture (weights pretrained or seeded random)."""
        return self.source.library_weights

    def describe(self) -> str:
        """The model in a few words, for sentences ("timm model resnet50d")."""
        if self.library:
            return f"{self.source} model {self.name}"
        if self.source is ModelSource.DEMO:
            return "the demo model"
        if self.source is ModelSource.CODE:
            return f"your code's model {self.name}" if self.name else "the model given on the command line"
        if self.source is ModelSource.HF and not self.is_file:
            return f"Hugging Face model {self.name}"
        kind = {ModelSource.ONNX: "ONNX", ModelSource.HF: "zip"}.get(self.source, str(self.source))
        return f"the {kind} file {self.name}" if self.name else f"an uploaded {kind} file"
