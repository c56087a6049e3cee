"""The Feature maps page's charts, drawn by featviz's own small build of Plotly, so the first map comes soon.

``st.plotly_chart`` starts Streamlit's Plotly bundle: 4.7 MB of JavaScript for every kind of chart, about 1.6 s
of the browser's main thread on a 2-core machine before its first chart can be drawn. The Feature maps page
draws heatmaps, a picture under an overlay and a histogram only: ``ui/plotly_light/plotly-light.min.js``
(Plotly's core with the heatmap, image and bar traces: 1.2 MB, plotly.js 4.1.1, the release the plotly Python
package carries; rebuilt by ``scripts/plotly_light/build.sh``) starts in about 0.3 s. Measured in Chromium
(``python -m bench.run --only first_view``): the first interactive mosaic comes before a bare Streamlit page's
single ``st.plotly_chart`` of it.

A chart is a Streamlit component drawn in the page itself (no frame): the same figure JSON as
``st.plotly_chart`` sends, themed as Streamlit themes its charts (colours and fonts read from the page), with
Plotly's mode bar (PNG export with the given file name, zoom, a full-screen button) and, when asked, a click on
a point reported to Python. The script is served from ``ui/plotly_light`` through Streamlit's component file
route and started after the page's next paint, so the still picture of ``ui/still.py`` shows first.

The other pages keep ``st.plotly_chart``: their charts need more of Plotly, and come after the first view.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st
import streamlit.components.v1 as components_v1

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["ASSETS", "BUNDLE", "COMPONENT", "PREFETCH_KEY", "figure_of", "light_chart", "payload", "prefetch"]

ASSETS = Path(__file__).with_name("plotly_light")
BUNDLE = "plotly-light.min.js"
COMPONENT = "featviz.light_chart"
PREFETCH_KEY = "fv_chart_code"
TRACES = frozenset({"heatmap", "image", "bar", "scatter"})
"""The trace types the bundle draws (scatter comes with Plotly's core)."""
_SERVED = "plotly_light"
_served_by: list[object] = []  # the server (runtime) the folder is registered with

_render = st.components.v2.component(COMPONENT, js=(ASSETS / "light_chart.js").read_text(encoding="utf-8"),
                                     isolate_styles=False)


def _bundle_route() -> str:
    """The bundle's address relative to the page (``component/<name>/...``, under any base path): the folder is
    registered with the running server's component file route once per server, from inside a script run; without
    a server, as in ``AppTest``, only the address is made)."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    runtime = Runtime.instance() if Runtime.exists() else None
    if runtime is not None and runtime not in _served_by and get_script_run_ctx(suppress_warning=True) is not None:
        components_v1.declare_component(_SERVED, path=str(ASSETS))  # registers only inside a script run
        _served_by[:] = [runtime]  # once per server, not once per chart
    return f"component/{__name__}.{_SERVED}/{BUNDLE}"


def _head(**fields: Any) -> str:
    return json.dumps({"src": _bundle_route(), **fields})


def payload(fig: go.Figure, config: dict[str, Any] | None = None, *, clicks: bool = False) -> bytes:
    """What the browser gets: one line of JSON (the bundle's address, whether clicks are reported), then the
    figure as ``st.plotly_chart`` sends it (``plotly.io.to_json``, arrays as base64) with ``config`` (over
    :data:`featviz_core.export.PLOTLY_CONFIG`) inside."""
    import plotly.io  # here: ui/frame.py's prefetch runs before the app (plotly, torch) is imported

    from featviz_core.export import PLOTLY_CONFIG

    unknown = {trace.type for trace in fig.data} - TRACES
    if unknown:
        raise ValueError(f"light_chart draws {sorted(TRACES)} traces, not {sorted(unknown)}: use st.plotly_chart")
    spec = plotly.io.to_json(fig, validate=False)  # "{...}": the config goes in front of its keys
    head = _head(clicks=clicks) + '\n{"config":' + json.dumps({**PLOTLY_CONFIG, **(config or {})})
    return (head + ("}" if spec == "{}" else "," + spec[1:])).encode("utf-8")


def prefetch() -> None:
    """An instance that draws nothing and takes no room: it fetches and starts the chart's code, for while the
    app is still being imported and the page waits anyway (ui/frame.py). The first chart that follows is drawn
    at once. Not for a warm server: there the code's start would only hold up the still picture (measured)."""
    _render(key=PREFETCH_KEY, data=(_head(start=True) + "\n").encode("utf-8"), height="content")


def figure_of(sent: bytes) -> dict[str, Any]:
    """The figure (with its ``config``) in what :func:`payload` made: for tests, as ``json.loads`` of
    ``st.plotly_chart``'s spec."""
    figure: dict[str, Any] = json.loads(sent.decode("utf-8").split("\n", 1)[1])
    return figure


def light_chart(fig: go.Figure, *, key: str, config: dict[str, Any] | None = None,
                clicks: bool = False) -> dict[str, Any] | None:
    """Draw ``fig`` (only :data:`TRACES`) across the container's width at the figure's height. With ``clicks``,
    returns the click of the run that follows a click on the chart, as ``st.plotly_chart`` reports a point
    selection (``{"selection": {"points": [{"curve_number", "point_index", "x", "y", "customdata"}]}}``);
    otherwise (and in every other run) None."""
    sent = payload(fig, config, clicks=clicks)
    if not clicks:
        _render(key=key, data=sent, height="content")
        return None
    result = _render(key=key, data=sent, height="content", on_click_change=lambda: None)
    click = getattr(result, "click", None)
    if not isinstance(click, dict):
        return None
    return {"selection": {"points": list(click.get("points") or [])}}
