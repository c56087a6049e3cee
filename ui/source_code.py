"""Sidebar, model source "Your code": a model handed over in this process by ``featviz.show(model)`` (a
notebook's or script's ``nn.Module``), else the model class named on the command line
(``--model pkg.mod:factory``).

Shown only when there is one of these: code is never taken from the browser.
"""

from __future__ import annotations

import streamlit as st

from featviz.registry import Shown, current
from featviz_core import FeatvizError, LoadedModel
from featviz_core.models import ModelSource, ModelSpec

from . import cache
from .cli import Options, options
from .errors import log

SPEC = ModelSpec(ModelSource.CODE)  # "code": the model given on the command line


def from_python() -> Shown | None:
    """The model ``featviz.show`` handed to this process, if any (it comes before the command line's)."""
    return current()


def available() -> Options | None:
    """The command line's model settings, or None when no model was given there."""
    found = options()
    return found if found.model else None


def offered() -> bool:
    """Whether "Your code" has a model to show: from ``featviz.show`` or from the command line."""
    return from_python() is not None or available() is not None


def label() -> str | None:
    """What the first-view notice calls the model: its name and where it came from."""
    shown = from_python()
    if shown is not None:
        return f"{shown.model.name}, handed over by featviz.show()"
    found = available()
    return None if found is None else f"{found.model}, as given on the command line"


def section() -> tuple[LoadedModel | None, ModelSpec]:
    shown = from_python()
    if shown is not None:
        st.caption(f"From Python: `{shown.model.name}` (featviz.show)")
        with cache.model_spinner(f"Preparing {shown.model.name}…", "python", shown.number):
            return cache.prepared(shown.model), SPEC
    found = available()
    if found is None:  # pragma: no cover - the kind is only offered when a model was given
        st.caption("Start featviz with --model package.module:factory to see your own model here.")
        return None, SPEC
    st.caption(f"From the command line: `{found.model}`" + (f" with `{found.weights}`" if found.weights else ""))
    try:
        with cache.model_spinner(f"Building {found.model}…", SPEC, found):
            model = cache.prepared(cache.code_model(found.model, found.weights, found.classes, found.input_size,
                                                    found.normalization))
        return model, SPEC
    except FeatvizError as exc:
        st.error(str(exc))
    except Exception:
        log.exception("Unexpected error while building %s", found.model)
        st.error(f"{found.model} could not be built; the details were written to the server log.")
    return None, SPEC
