"""featviz: see what a convolutional network sees. Run with `make run` (or `streamlit run app.py`)."""

from __future__ import annotations

import logging

import streamlit as st

from ui import sidebar
from ui.state import apply_requests, keep_page_state

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

st.set_page_config(
    page_title="featviz — see inside a CNN",
    page_icon=":material/grid_view:",
    layout="wide",
    initial_sidebar_state="expanded",
    menu_items={"About": "featviz shows every channel of a convolutional network's layers for your image."},
)

PAGES = [
    st.Page("pages/feature_maps.py", title="Feature maps", icon=":material/grid_view:", default=True),
    st.Page("pages/where_it_looks.py", title="Where it looks", icon=":material/visibility:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/filters.py", title="Filters", icon=":material/blur_on:"),
    st.Page("pages/model.py", title="Model", icon=":material/account_tree:"),
]

page = st.navigation(PAGES, position="sidebar")
keep_page_state()
apply_requests()
sidebar.render_safely()
page.run()
