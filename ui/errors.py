"""Errors at the UI edge: a FeatvizError becomes one friendly st.error; anything else is logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from featviz_core import FeatvizError

log = logging.getLogger("featviz")

GENERIC = (
    "Something went wrong while {what}. Please try another image, layer or model; "
    "the details were written to the server log."
)


def _is_streamlit_control_flow(exc: BaseException) -> bool:
    """st.stop(), st.rerun() and st.switch_page() work by raising; never swallow them."""
    return any(cls.__name__ == "ScriptControlException" for cls in type(exc).__mro__)


@contextmanager
def guard(what: str, *, stop: bool = True) -> Iterator[None]:
    """Run a block; show a FeatvizError's message, or a short generic one for anything else.

    With ``stop=True`` (default) the script stops after showing the error, so the lines after the block
    never run with missing values. Tracebacks never reach the screen.
    """
    try:
        yield
    except FeatvizError as exc:
        st.error(str(exc), icon=":material/error:")
        if stop:
            st.stop()
    except Exception as exc:
        if _is_streamlit_control_flow(exc):
            raise
        log.exception("Unexpected error while %s", what)
        st.error(GENERIC.format(what=what), icon=":material/error:")
        if stop:
            st.stop()
