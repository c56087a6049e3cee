"""Sidebar, model source "Your code": the model class named on the command line (``--model pkg.mod:factory``).

Shown only when the server was started with one: code is never taken from the browser.
"""

from __future__ import annotations

import streamlit as st

from featviz_core import FeatvizError, LoadedModel
from featviz_core.models import ModelSource, ModelSpec

from . import cache
from .cli import Options, options
from .errors import log

SPEC = ModelSpec(ModelSource.CODE)  # "code": the model given on the command line


def available() -> Options | None:
    """The command line's model settings, or None when no model was given there."""
    found = options()
    return found if found.model else None


def section() -> tuple[LoadedModel | None, ModelSpec]:
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
