"""Option types shared by the app's command line (``featviz run``, read by ``ui/cli.py``) and the exemplars
command (``python -m featviz_core.exemplars``). Plain :mod:`argparse`: importing this imports neither torch nor
Streamlit, so ``featviz --help`` and the app's option parsing stay fast.
"""

from __future__ import annotations

import argparse

__all__ = ["NORMALIZATIONS", "input_size"]

NORMALIZATIONS: tuple[str, ...] = ("imagenet", "0-1", "-1-1", "0-255")
"""The input scalings a model from code or an ONNX file may ask for (``featviz_core.NORMALIZATIONS`` explains
each one)."""


def input_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"256x320"`` or ``"256×320"`` -> (256, 320) (height, width); at least 8 pixels.
    Anything else: :class:`argparse.ArgumentTypeError` with an example, which argparse shows as a usage error."""
    parts = [p for p in text.lower().replace("×", "x").split("x") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size like 224 or 256x320") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 8:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size like 224 or 256x320")
    return values[0], values[1]
