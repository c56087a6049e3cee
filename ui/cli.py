"""What the person who started the server asked for on the command line (never from the browser).

    streamlit run app.py -- --model mynets.faces:build --weights faces.safetensors --classes names.txt
    featviz run --model mynets.faces:build --weights faces.safetensors --images ~/xrays
    make run MODEL=mynets.faces:build WEIGHTS=faces.safetensors IMAGES=~/xrays

The same settings may come from the environment (``FEATVIZ_MODEL``, ``FEATVIZ_WEIGHTS``,
``FEATVIZ_CLASSES``, ``FEATVIZ_INPUT_SIZE``, ``FEATVIZ_NORMALIZATION``, ``FEATVIZ_IMAGES``), which is how
``featviz run`` and ``make run`` pass them on. A model given here imports the user's own code into the
server, which is why only the command line can name one.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from featviz.options import NORMALIZATIONS, input_size

__all__ = ["Options", "options", "parser"]


@dataclass(frozen=True)
class Options:
    model: str | None = None
    weights: str | None = None
    classes: str | None = None
    input_size: tuple[int, int] | None = None
    normalization: str | None = None
    images: str | None = None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--model", help="your own model: package.module:factory (or path/to/file.py:factory)")
    p.add_argument("--weights", help="weights for --model: a state dict (.pt/.pth) or .safetensors file")
    p.add_argument("--classes", help="class names, one per line (or JSON), in the model's output order")
    p.add_argument("--input-size", type=input_size, help="input size for --model, e.g. 224 or 256x320")
    p.add_argument("--normalization", choices=NORMALIZATIONS,
                   help="input scaling for --model (default: ImageNet mean/std)")
    p.add_argument("--images", help="a folder of images on this machine, for the Exemplars page")
    return p


def options(argv: list[str] | None = None) -> Options:
    """The command line's options (unknown arguments ignored), completed from the environment."""
    args, _unknown = parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    env = os.environ

    def pick(value: str | None, name: str) -> str | None:
        return value if value else (env.get(name) or None)

    size = args.input_size
    if size is None and env.get("FEATVIZ_INPUT_SIZE"):
        try:
            size = input_size(env["FEATVIZ_INPUT_SIZE"])
        except argparse.ArgumentTypeError:
            size = None
    return Options(
        model=pick(args.model, "FEATVIZ_MODEL"),
        weights=pick(args.weights, "FEATVIZ_WEIGHTS"),
        classes=pick(args.classes, "FEATVIZ_CLASSES"),
        input_size=size,
        normalization=pick(args.normalization, "FEATVIZ_NORMALIZATION"),
        images=pick(args.images, "FEATVIZ_IMAGES"),
    )
