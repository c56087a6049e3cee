"""The app's router: page config, st.navigation over pages/, the shared sidebar, then the chosen page.

app.py calls :func:`run_app`. Every page file starts with :func:`ensure_routed`: Streamlit runs a file of
``pages/`` on its own when a fresh server's first visitor opens a page's address directly (its multipage
mode from before ``st.navigation``), and then the sidebar would be missing. ``ensure_routed`` notices that
and runs the whole app instead, so every address works, first visit or not.

This module imports only Streamlit: the page frame and the navigation are drawn first, then the rest of
the app (torch, torchvision, the model code) is imported under "Loading the model…" (:mod:`ui.frame`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import streamlit as st

from .frame import loading_app, prefetch_charts, set_page_config

_local = threading.local()

PAGES = (
    ("pages/feature_maps.py", "Feature maps", ":material/grid_view:"),
    ("pages/responds_to.py", "What it responds to", ":material/palette:"),
    ("pages/where_it_looks.py", "Where it looks", ":material/visibility:"),
    ("pages/attention.py", "Attention", ":material/center_focus_strong:"),
    ("pages/exemplars.py", "Exemplars", ":material/photo_library:"),
    ("pages/compare.py", "Compare", ":material/compare:"),
    ("pages/filters.py", "Filters", ":material/blur_on:"),
    ("pages/model.py", "Model", ":material/account_tree:"),
    ("pages/volume.py", "Volumes and clips", ":material/view_in_ar:"),
)


def run_app() -> None:
    """Configure the page, route, draw the sidebar, run the chosen page."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_page_config()
    pages = [
        st.Page(path, title=title, icon=icon, default=index == 0)
        for index, (path, title, icon) in enumerate(PAGES)
    ]
    page = st.navigation(pages, position="sidebar")
    charts = prefetch_charts()  # a cold server: the browser loads Plotly while the app is imported
    try:
        with loading_app():  # the first time only: the frame and the navigation are on screen meanwhile
            from . import jobs, sidebar
            from .state import apply_requests, keep_page_state
            from .still import send_style
        send_style()  # a session's first run: before the sidebar, so the first maps' picture waits for nothing
        jobs.leave_page(jobs.session_id(), page.url_path)  # long jobs stop when their page is left
        keep_page_state()
        apply_requests()
        selection = sidebar.render_safely(for_scans=page.url_path == Path(VOLUMES).stem)
        if _opens_on_volumes(page.url_path, selection):
            st.switch_page(VOLUMES)
        _local.routed = True
        page.run()
    finally:
        _local.routed = False
        if charts is not None:
            charts.empty()


VOLUMES = "pages/volume.py"


def _opens_on_volumes(url_path: str, selection: Any) -> bool:
    """A session's first run on the app's address with a 3-D model given on the command line (or by
    ``featviz.show``): the visitor came to see that model, which looks at scans and clips, so the app opens on
    *Volumes and clips* instead of a page for pictures. Any other page asked for by its address is kept."""
    state = st.session_state
    if state.get("_first_page_chosen"):
        return False
    state["_first_page_chosen"] = True
    from .model_picker import CODE

    model = getattr(selection, "model", None)
    return url_path == "" and model is not None and model.is_volumetric and state.get("model_kind") == CODE


def ensure_routed() -> None:
    """At the top of every page: if this page was started without the app around it, run the app."""
    if getattr(_local, "routed", False):
        return
    run_app()
    st.stop()
