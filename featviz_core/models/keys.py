"""The cache key of every model (``LoadedModel.key``), built here for every source.

A key is the source and the parts that make two models differ, joined by ``:`` — the same key means the same
weights, preprocessing and class names, so caches (extractions, maps, jobs) may share results between them::

    torchvision:resnet18:IMAGENET1K_V1      torchvision:resnet18:random
    timm:resnet50.a1_in1k:pretrained        timm:resnet50d:random
    checkpoint:<bytes digest>:<library>:<architecture>[:<class names digest>]
    onnx:<bytes digest>:<H>x<W>:<normalization>[:<class names digest>]
    code:<spec>:<weights digest or "own">:<H>x<W>:<normalization>:<mean>:<std>:<channels>:<names digest or "-">
    python:<name>:<object id>:<H>x<W>:...     (a module in memory, featviz.show; the same parts as code)
    hf:<hub id>                             hf-zip:<bytes SHA-256>
    demo:tinyvgg:<weight file digest>
    <model key>:randomized:<seed>           (the sanity check's copy with re-initialised layers)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .loaded import ModelSource

__all__ = ["bytes_digest", "model_key", "names_digest"]


def model_key(source: ModelSource | str, *parts: object) -> str:
    """``source:part:part...``: the key of a model of ``source`` told apart by ``parts``. ``source`` may also
    be a variant's word (``hf-zip``, ``python``) or a key that ``parts`` extend."""
    return ":".join(str(part) for part in (source, *parts))


def bytes_digest(data: bytes | bytearray | memoryview) -> str:
    """The first 16 hex digits of the SHA-256 of a file's bytes (weights, an ONNX graph)."""
    return hashlib.sha256(bytes(data)).hexdigest()[:16]


def names_digest(categories: Sequence[str]) -> str:
    """The first 8 hex digits of the SHA-256 of class names, one a line: extractions carry the names, so a
    model with other names has another key."""
    return hashlib.sha256("\n".join(categories).encode("utf-8")).hexdigest()[:8]
