"""The first feature maps as a still picture while the browser is still starting Plotly.

Plotly's JavaScript is fetched and started only when the page's first chart arrives: one to three
seconds on a small machine (more on an old hospital PC), during which the chart's place would stay empty.
On a session's first chart, :func:`still_until_drawn` puts the same maps there as a picture drawn by the
server (:func:`featviz_core.figures.preview.heatmap_png`: the same colours, square pixels, at the chart's
height), and a style rule hides the picture as soon as the interactive chart has been drawn in the same
box. Browsers without CSS ``:has()`` (Firefox before 121) hide it after 20 seconds instead; in the others it
stays as long as Plotly cannot draw (a slow or failing network), so the maps are never lost.
"""

from __future__ import annotations

import base64

import plotly.graph_objects as go
import streamlit as st

from featviz_core.figures.preview import heatmap_png

__all__ = ["STILL_KEY", "still_until_drawn"]

STILL_KEY = "grid_still"
_SHOWN = "_still_shown"

_STYLE = """<style>
.st-key-{box}:has(.js-plotly-plot) .st-key-{still} {{ display: none; }}
@supports not selector(:has(a)) {{
  .st-key-{still} {{ animation: fv-still-off 0s linear 20s forwards; }}
  @keyframes fv-still-off {{ to {{ visibility: hidden; height: 0; overflow: hidden; }} }}
}}
</style>"""


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
    source = base64.b64encode(png).decode("ascii")
    with st.container(key=STILL_KEY):
        st.markdown(
            _STYLE.format(box=box, still=STILL_KEY)
            + f'<div style="height:{height}px;padding:{top}px 80px {bottom}px 0;box-sizing:border-box">'
            f'<img src="data:image/png;base64,{source}" alt="The feature maps (the interactive view is loading)" '
            'style="height:100%;width:100%;object-fit:contain;object-position:center top;'
            'image-rendering:pixelated"></div>',
            unsafe_allow_html=True,
        )
