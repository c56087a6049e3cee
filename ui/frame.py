"""The page frame, drawn before anything heavy is imported, and a spinner that shows at once.

ui/router.py sets the page config and draws the navigation, then shows "Loading the model…" (with
:func:`busy`, in :func:`loading_app`) while it imports the rest of the app (torch, torchvision, the model
code: seconds on a small machine), so the first visitor of a fresh ``streamlit run app.py`` never looks at
a blank page. This module imports nothing but Streamlit.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

__all__ = ["ICON", "LOADING", "busy", "loading_app", "prefetch_charts", "set_page_config"]

ICON = str(Path(__file__).with_name("icon.png"))  # bundled: no icon font fetched from the internet
LOADING = "Loading the model…"

_delay_lock = threading.Lock()


def set_page_config() -> None:
    """Title, icon, wide layout, open sidebar (the same on every page; calling it again is harmless)."""
    st.set_page_config(
        page_title="featviz — see inside a CNN",
        page_icon=ICON,
        layout="wide",
        initial_sidebar_state="expanded",
        menu_items={"About": "featviz shows every channel of a convolutional network's layers for your image."},
    )


@contextmanager
def busy(text: str) -> Iterator[None]:
    """``st.spinner(text)``, shown at once: Streamlit's own waits half a second before it appears, which
    reads as a frozen page when a model takes seconds to build. Without a running script it does nothing."""
    from streamlit.elements import spinner as spinner_module

    with ExitStack() as stack:
        with _delay_lock:  # the delay is read when the spinner starts its timer
            default = getattr(spinner_module, "DELAY_SECS", None)
            if default is not None:
                spinner_module.DELAY_SECS = 0.0
            try:
                stack.enter_context(st.spinner(text))
            finally:
                if default is not None:
                    spinner_module.DELAY_SECS = default
        yield


@contextmanager
def loading_app() -> Iterator[None]:
    """Around the router's first import of the app: "Loading the model…" until it is done.

    Once the app is imported (every later run, or ``featviz run``, which imports it before it listens),
    nothing is shown.
    """
    if _APP_MODULE in sys.modules:
        yield
        return
    with busy(LOADING):
        yield


_APP_MODULE = "ui.sidebar"  # imports featviz_core, torch and torchvision

_PREFETCHED = "_charts_prefetched"


def prefetch_charts(cold: bool | None = None) -> Any:
    """Once per session, while the app still has to be imported (``cold``; by default: the app's modules
    are not loaded yet, as for the first visitor of a fresh ``streamlit run app.py``), an element that draws
    nothing and fetches and starts the code of the feature-map chart (ui/light_chart.py: 1.2 MB, about a
    third of a second of the browser's main thread) during the seconds of importing, so the first maps are
    drawn as soon as they come.

    Once the app is imported (``featviz run``, every later visitor), the maps follow within the same quick
    run, with the still picture of ui/still.py; the chart's code is started after that picture is painted
    (started earlier, it would only hold the picture up). Returns the placeholder to clear at the end of the
    run (None when there is nothing to clear)."""
    if cold is None:
        cold = _APP_MODULE not in sys.modules
    if not cold or st.session_state.get(_PREFETCHED):
        return None
    st.session_state[_PREFETCHED] = True
    from .light_chart import prefetch  # Streamlit's component API only: plotly is not imported

    slot = st.empty()
    with slot:
        prefetch()
    return slot
