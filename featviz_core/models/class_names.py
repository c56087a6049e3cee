"""Class names for a model's outputs, from a user's file (text, one per line; or JSON)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import ModelLoadError

__all__ = ["MAX_CLASS_NAMES_BYTES", "parse_class_names"]

MAX_CLASS_NAMES_BYTES = 10 << 20
"""Largest class-name file accepted (10 MiB)."""


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MB" if size >= 1 << 20 else f"{size / 1024:,.0f} KB"


def parse_class_names(data: bytes) -> list[str]:
    """Class names from a file's bytes, in output order.

    A text file with one name per line (blank lines and surrounding whitespace ignored, UTF-8 with or
    without BOM), a JSON list of names, or a JSON object mapping index to name (``{"0": "cat"}``, also
    ImageNet's ``{"0": ["n01440764", "tench"]}``) or name to index (``{"cat": 0}``).
    """
    if len(data) > MAX_CLASS_NAMES_BYTES:
        raise ModelLoadError(
            f"The class-name file is too large ({_megabytes(len(data))}; the limit is "
            f"{_megabytes(MAX_CLASS_NAMES_BYTES)}). Give one class name per line."
        )
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelLoadError(
            "The class-name file is not UTF-8 text. Save it as plain UTF-8 text, one class name per line."
        ) from None
    stripped = text.strip()
    if not stripped:
        raise ModelLoadError("The class-name file is empty. Give one class name per line.")
    if (stripped[0], stripped[-1]) in (("[", "]"), ("{", "}")):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            raise ModelLoadError(
                "The class-name file looks like JSON but could not be read. Give a JSON list of names, "
                "or plain text with one class name per line."
            ) from None
        return _names_from_json(parsed)
    return [line.strip() for line in text.splitlines() if line.strip()]


def _names_from_json(parsed: Any) -> list[str]:
    def name_of(value: Any, where: str) -> str:
        if isinstance(value, list | tuple) and value:
            value = value[-1]  # ImageNet's {"0": ["n01440764", "tench"]}
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ModelLoadError(f"The class-name file has an entry that is not a name ({where}).")
        text = str(value).strip()
        if not text:
            raise ModelLoadError(f"The class-name file has an empty name ({where}).")
        return text

    if isinstance(parsed, list):
        if not parsed:
            raise ModelLoadError("The class-name file is an empty list. Give one class name per class.")
        return [name_of(value, f"item {i}") for i, value in enumerate(parsed)]
    if isinstance(parsed, dict) and parsed:
        if all(_as_index(k) is not None for k in parsed):
            by_index = {_as_index(k): v for k, v in parsed.items()}
        elif all(_as_index(v) is not None for v in parsed.values()):
            by_index = {_as_index(v): k for k, v in parsed.items()}  # Keras' {"cat": 0, "dog": 1}
        else:
            raise ModelLoadError(
                "The class-name file is a JSON object but does not map class indices to names "
                '(like {"0": "cat", "1": "dog"}).'
            )
        if sorted(by_index) != list(range(len(parsed))):
            raise ModelLoadError(
                f"The class-name file should number its {len(parsed)} classes 0 to {len(parsed) - 1}, "
                "each once."
            )
        return [name_of(by_index[i], f"class {i}") for i in range(len(parsed))]
    raise ModelLoadError(
        "The class-name file should be a JSON list of names, a JSON object mapping index to name, "
        "or plain text with one class name per line."
    )


def _as_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
