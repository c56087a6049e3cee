"""The model that :func:`featviz.show` hands to the app running in the same process.

A notebook's model class lives in its ``__main__`` and cannot be imported again by another process, so
``featviz.show(model)`` serves the app from a thread of the calling process and leaves the loaded model here;
the sidebar's "Your code" source (``ui/source_code.py``) reads it before the command line's ``--model``.
Nothing here imports torch or Streamlit.
"""

from __future__ import annotations

import itertools
import sys
import threading
import types
from dataclasses import dataclass
from typing import Any

__all__ = ["Shown", "clear", "current", "next_number", "publish", "remember_main_module", "restore_main_module"]


@dataclass(frozen=True)
class Shown:
    """One model handed over by ``featviz.show``: ``model`` a ``featviz_core.LoadedModel``; ``number`` counts
    the models shown in this process (1, 2, ...)."""

    model: Any
    number: int


_lock = threading.Lock()
_numbers = itertools.count(1)
_current: Shown | None = None
_main_module: types.ModuleType | None = None


def next_number() -> int:
    """A fresh number for the next model (its cache key carries it, so a retrained model is never mistaken
    for the one shown before)."""
    with _lock:
        return next(_numbers)


def publish(model: Any, number: int | None = None) -> Shown:
    """Make ``model`` the one the app shows from now on (replacing the one before)."""
    global _current
    shown = Shown(model, number if number is not None else next_number())
    with _lock:
        _current = shown
    return shown


def current() -> Shown | None:
    """The model ``featviz.show`` handed over in this process, or None."""
    with _lock:
        return _current


def clear() -> None:
    """Forget the model (the server that showed it has stopped)."""
    global _current
    with _lock:
        _current = None


def remember_main_module() -> None:
    """Note this process's own ``__main__`` (the notebook's or script's), once, before the app first runs."""
    global _main_module
    with _lock:
        if _main_module is None:
            _main_module = sys.modules.get("__main__")


def restore_main_module() -> None:
    """Put this process's ``__main__`` back, when ``featviz.show`` serves from inside it (``app.py`` calls it
    first thing; without ``featviz.show`` it does nothing).

    Streamlit installs a fresh module as ``sys.modules["__main__"]`` for every script run and leaves it there.
    Run by ``streamlit run`` that is harmless; inside a notebook it would hide the notebook's own namespace from
    everything that looks classes up there: ``pickle``, ``torch.save(model)``, DataLoader workers.
    """
    with _lock:
        main = _main_module
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main
