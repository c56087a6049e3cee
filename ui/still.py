"""The first feature maps as a still picture while the browser is still starting Plotly.

Plotly's JavaScript is fetched and started only when the page's first chart arrives (ui/light_chart.py:
1.2 MB, about half a second on a small machine from its arrival to the drawn chart, more on an old hospital PC
or a slow network), during which the chart's place would stay empty.
On a session's first chart, :func:`still_until_drawn` puts the same maps there as a picture drawn by the
server (:func:`featviz_core.figures.preview.still_png`: the same colours, laid out at the chart's size), and
a style rule hides the picture as soon as the interactive chart has been drawn in the same box. Browsers
without CSS ``:has()`` (Firefox before 121) hide it after 20 seconds instead; in the others it stays as long
as Plotly cannot draw (a slow or failing network), so the maps are never lost.

The picture is a plain Markdown image of a data URL, centred, that needs no style rule to be in place: it
comes inside the page's own message (not as one more request to a busy server), and Markdown is drawn by
code the browser has from the start, while ``st.image``, ``st.html`` and most elements wait for their own piece
of code to be fetched. Waiting, the picture was drawn in the same paint as whatever else was pending, often
only after the chart's code had been started (then Streamlit's Plotly, 4.7 MB, a second of a small machine):
the first picture came 1.9 s after the server was ready instead of 1.3 s (bench/floor.py; a bare page with
the same picture: 1.1 s). The chart's code is now started only after the next paint. The style rules (go out through ``st.html`` at the start of the session's first run,
:func:`send_style`) only hide the picture once the chart is there and keep its cells sharp on dense screens.
"""

from __future__ import annotations

import base64

import plotly.graph_objects as go
import streamlit as st

from featviz_core.figures.preview import still_png

__all__ = ["ALT", "STILL_KEY", "send_style", "still_until_drawn"]

STILL_KEY = "grid_still"
ALT = "The feature maps (a still picture while the interactive chart starts)"
_SHOWN = "_still_shown"
_STYLED = "_still_styled"

_STYLE = """<style>
.st-key-{box}:has(.js-plotly-plot) .st-key-{still},
.st-key-{box}:has(.js-plotly-plot) [data-testid=stLayoutWrapper]:has(> .st-key-{still}) {{ display: none; }}
.st-key-{still} img {{ image-rendering: pixelated; }}
@supports not selector(:has(a)) {{
  .st-key-{still} {{ animation: fv-still-off 0s linear 20s forwards; }}
  @keyframes fv-still-off {{ to {{ visibility: hidden; height: 0; overflow: hidden; }} }}
}}
</style>"""


def _style(box: str) -> str:
    return _STYLE.format(box=box, still=STILL_KEY)


def send_style(box: str = "grid_box") -> None:
    """At the start of a session's first run (ui/router.py): the rules that place the still picture in
    ``box`` and hide it once the chart is drawn, so the browser has the code for them before the picture
    comes (style only: it takes no room on the page). The picture brings them again (a later run's first
    chart has no rules of the first run's left); later runs send nothing."""
    state = st.session_state
    if state.get(_SHOWN) or state.get(_STYLED):
        return
    state[_STYLED] = True
    st.html(_style(box))


def still_until_drawn(fig: go.Figure, box: str) -> None:
    """Call inside ``st.container(key=box)``, just before the chart of ``fig``: on the session's first
    call, a picture of the figure's heatmap that disappears once the chart is drawn; later calls do
    nothing (Plotly is loaded by then)."""
    state = st.session_state
    if state.get(_SHOWN):
        return
    state[_SHOWN] = True
    png = still_png(fig)
    if png is None:
        return
    with st.container(key=STILL_KEY):
        url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        st.markdown(f"![{ALT}]({url})", text_alignment="center")
        st.html(_style(box))  # after the picture: while its code loads, it moves nothing
