"""The first feature maps as a still picture while the browser is still starting Plotly.

Plotly's JavaScript is fetched and started only when the page's first chart arrives: one to three
seconds on a small machine (more on an old hospital PC), during which the chart's place would stay empty.
On a session's first chart, :func:`still_until_drawn` puts the same maps there as a picture drawn by the
server (:func:`featviz_core.figures.preview.heatmap_png`: the same colours, square pixels, at the chart's
height), and a style rule hides the picture as soon as the interactive chart has been drawn in the same
box. Browsers without CSS ``:has()`` (Firefox before 121) hide it after 20 seconds instead; in the others it
stays as long as Plotly cannot draw (a slow or failing network), so the maps are never lost.

The picture is an ``st.image`` of a data URL (the browser already has the image code for the sidebar's
photo, and the picture comes inside the page's message, not as one more request to a busy server) and the
style rules go out through ``st.html`` at the start of the session's first run (:func:`send_style`), so
nothing the picture needs is fetched after it: as a Markdown image it waited for the browser to fetch and
start the Markdown-with-HTML code (190 kB), which a busy server hands out slowly.
"""

from __future__ import annotations

import base64

import plotly.graph_objects as go
import streamlit as st

from featviz_core.figures.preview import heatmap_png

__all__ = ["STILL_KEY", "send_style", "still_until_drawn"]

STILL_KEY = "grid_still"
_SHOWN = "_still_shown"
_STYLED = "_still_styled"

_STYLE = """<style>
.st-key-{box}:has(.js-plotly-plot) .st-key-{still} {{ display: none; }}
.st-key-{still} img {{ width: 100%; object-fit: contain; object-position: center top; image-rendering: pixelated; }}
@supports not selector(:has(a)) {{
  .st-key-{still} {{ animation: fv-still-off 0s linear 20s forwards; }}
  @keyframes fv-still-off {{ to {{ visibility: hidden; height: 0; overflow: hidden; }} }}
}}
</style>"""
_SIZE = """<style>.st-key-{still} {{ padding: {top}px 80px {bottom}px 0; box-sizing: border-box; }}
.st-key-{still} img {{ height: {height}px; }}</style>"""


def send_style(box: str = "grid_box") -> None:
    """At the start of a session's first run (ui/router.py): the rules that place the still picture in
    ``box`` and hide it once the chart is drawn, so the browser has the code for them before the picture
    comes (style only: it takes no room on the page). The picture brings them again; later runs send
    nothing."""
    state = st.session_state
    if state.get(_SHOWN) or state.get(_STYLED):
        return
    state[_STYLED] = True
    st.html(_STYLE.format(box=box, still=STILL_KEY))


def still_until_drawn(fig: go.Figure, box: str) -> None:
    """Call inside ``st.container(key=box)``, just before the chart of ``fig``: on the session's first
    call, a picture of the figure's heatmap that disappears once the chart is drawn; later calls do
    nothing (Plotly is loaded by then)."""
    state = st.session_state
    if state.get(_SHOWN):
        return
    state[_SHOWN] = True
    png = heatmap_png(fig)
    if png is None:
        return
    height = int(fig.layout.height or 450)
    margin = fig.layout.margin
    top, bottom = int(margin.t or 0), int(margin.b or 0)
    with st.container(key=STILL_KEY):
        st.html(_STYLE.format(box=box, still=STILL_KEY) + _SIZE.format(still=STILL_KEY, top=top, bottom=bottom, height=max(height - top - bottom, 1)))
        # a data URL: the picture comes with the page's own message, not as a second request to a busy server
        st.image("data:image/png;base64," + base64.b64encode(png).decode("ascii"), width="stretch")
