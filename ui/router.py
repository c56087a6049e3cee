"""The app's router: page config, st.navigation over pages/, the shared sidebar, then the chosen page.

app.py calls :func:`run_app`. Every page file starts with :func:`ensure_routed`: Streamlit runs a file of
``pages/`` on its own when a fresh server's first visitor opens a page's address directly (its multipage
mode from before ``st.navigation``), and then the sidebar would be missing. ``ensure_routed`` notices that
and runs the whole app instead, so every address works, first visit or not.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import streamlit as st

from . import jobs, sidebar
from .state import apply_requests, keep_page_state

_local = threading.local()
ICON = str(Path(__file__).with_name("icon.png"))  # bundled: no icon font fetched from the internet

PAGES = (
    ("pages/feature_maps.py", "Feature maps", ":material/grid_view:"),
    ("pages/responds_to.py", "What it responds to", ":material/palette:"),
    ("pages/where_it_looks.py", "Where it looks", ":material/visibility:"),
    ("pages/exemplars.py", "Exemplars", ":material/photo_library:"),
    ("pages/compare.py", "Compare", ":material/compare:"),
    ("pages/filters.py", "Filters", ":material/blur_on:"),
    ("pages/model.py", "Model", ":material/account_tree:"),
)


def run_app() -> None:
    """Configure the page, route, draw the sidebar, run the chosen page."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    st.set_page_config(
        page_title="featviz — see inside a CNN",
        page_icon=ICON,
        layout="wide",
        initial_sidebar_state="expanded",
        menu_items={"About": "featviz shows every channel of a convolutional network's layers for your image."},
    )
    pages = [
        st.Page(path, title=title, icon=icon, default=index == 0)
        for index, (path, title, icon) in enumerate(PAGES)
    ]
    page = st.navigation(pages, position="sidebar")
    jobs.leave_page(jobs.session_id(), page.url_path)  # long jobs stop when their page is left
    keep_page_state()
    apply_requests()
    sidebar.render_safely()
    _local.routed = True
    try:
        page.run()
    finally:
        _local.routed = False


def ensure_routed() -> None:
    """At the top of every page: if this page was started without the app around it, run the app."""
    if getattr(_local, "routed", False):
        return
    run_app()
    st.stop()
