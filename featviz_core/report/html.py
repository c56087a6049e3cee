"""The one-click report: one self-contained HTML file (bytes) with what featviz showed for one image.

It opens in any current browser without a network: plotly.js is embedded once (the copy shipped inside
plotly's Python package), images are ``data:`` URIs, and a Content-Security-Policy forbids every request
(``default-src 'none'``), so nothing can reach any host even by accident. Charts keep their exact hovers
(the same figures as the app: :func:`featviz_core.figures.mosaic_figure` and friends).

What goes in: the image as the model saw it (only when the caller passes ``view``), the model's provenance,
its top 5 (or a sentence for models without class scores), the layer's 16 strongest channels (only those:
the file stays small however wide the layer), one channel in detail, "where it looks" with its sanity
check, what the maps do not prove, the date and featviz's version.

Without ``view`` no pixel of the picture is in the file: maps are drawn on their own (on the layer's grid)
instead of over the picture, the file's name for the picture is left out, and the report says so.
Feature maps are the model's response to the picture, so early layers can still show its outlines.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import plotly
import plotly.graph_objects as go
from PIL import Image

from .. import figures, stats
from ..cam.base import CamResult
from ..cam.methods import METHODS
from ..cam.sanity import SanityResult
from ..layers.discovery import LayerInfo
from ..models.loaded import LoadedModel

__all__ = [
    "DOES_NOT_PROVE", "SHOWN_CHANNELS", "Charts", "chart_specs", "escape", "footer", "html_page", "plotly_js", "report_html",
    "section_limits", "top_table",
]

SHOWN_CHANNELS = 16

DOES_NOT_PROVE = (
    "They show correlation inside this one network, not a cause in the world.",
    "They are coarse: one cell per position of the layer, stretched over the image.",
    "A map that sits on the right spot does not mean the prediction is right, and a wrong spot does not "
    "prove it wrong.",
    "Different methods can disagree; a map that barely changes when the model's weights are randomised "
    "(the sanity check) tells more about the image than about the model.",
    "For medical images: these pictures explain the model's behaviour; they are not a diagnosis.",
)

_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:24px auto;
padding:0 16px;color:#1f2328;line-height:1.45}
h1{font-size:26px;margin-bottom:4px}h2{font-size:20px;margin-top:32px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}.sub{color:#59636e}table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;
border-bottom:1px solid #eaeef2}.bar{background:#4c78a8;height:12px;display:inline-block}.row{display:flex;
gap:16px;flex-wrap:wrap}.row>div{flex:1 1 420px;min-width:320px}.note{background:#f6f8fa;border-left:4px solid
#8c959f;padding:8px 12px;margin:12px 0}.verdict{padding:10px 14px;border-radius:6px;margin:12px 0}
.model{background:#dafbe1;border-left:4px solid #1a7f37}.partly{background:#fff8c5;border-left:4px solid #9a6700}
.image{background:#ffebe9;border-left:4px solid #cf222e}.empty{background:#f6f8fa;border-left:4px solid #8c959f}
footer{margin-top:40px;color:#59636e;font-size:13px}img.view{image-rendering:auto;border:1px solid #d0d7de}
"""


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as shipped inside plotly's Python package (read once; never fetched from a network)."""
    text = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text(encoding="utf-8")
    return text.replace("</script", "<\\/script")


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Charts:
    """Figures of one report, each a div and one Plotly.newPlot call."""

    def __init__(self) -> None:
        self.specs: list[tuple[str, str]] = []

    def add(self, fig: go.Figure, name: str, height: int | None = None) -> str:
        div = f"chart-{len(self.specs)}-{name}"
        if height is not None:
            fig.update_layout(height=height)
        spec = fig.to_json().replace("<", "\\u003c")  # no "</script>" can end the script early
        self.specs.append((div, spec))
        px = int(fig.layout.height or 480)
        return f'<div id="{div}" class="chart" data-name="{escape(name)}" style="height:{px}px"></div>'

    def script(self) -> str:
        calls = "\n".join(
            f'draw("{div}", {spec});' for div, spec in self.specs
        )
        return (
            "<script>\nconst CONFIG = {displaylogo: false, showSendToCloud: false, responsive: true};\n"
            "function draw(id, spec) { Plotly.newPlot(id, spec.data, spec.layout, CONFIG); }\n"
            f"{calls}\n</script>"
        )


def _map_figure(view: Image.Image | None, map2d: np.ndarray, title: str, bar: str, **options: Any) -> go.Figure:
    """The map over the grey picture, or on its own (on the layer's grid) when the picture is left out."""
    if view is not None:
        return figures.overlay_figure(view, map2d, title=title, colorbar_title=bar, height=420, **options)
    options.pop("opacity", None)
    return figures.channel_figure(map2d, title=title, colorbar_title=bar, height=420, **options)


def _row(left: str, right: str) -> str:
    """Two charts side by side (one above the other on a narrow screen)."""
    return f'<div class="row"><div>{left}</div><div>{right}</div></div>'


def top_table(top_k: Sequence[tuple[str, float]]) -> str:
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td style="width:320px"><span class="bar" style="width:{max(p, 0) * 300:.1f}px">'
        f"</span></td><td>{p * 100:.1f}%</td></tr>"
        for name, p in top_k
    )
    return f"<table><tr><th>class</th><th></th><th>probability</th></tr>{rows}</table>"


def _section_cam(charts: Charts, view: Image.Image | None, cam: CamResult | None, layer: str, note: str | None) -> str:
    title = METHODS[cam.method].title if cam is not None and cam.method in METHODS else "The map"
    parts = ["<h2>Where it looks</h2>"]
    if cam is None:
        return parts[0] + f'<p class="note">{escape(note or "Not computed.")}</p>'
    summary = METHODS[cam.method].summary if cam.method in METHODS else ""
    what = f"“{cam.class_name}”" + (
        f" (probability {cam.probability * 100:.1f}%)" if math.isfinite(cam.probability) else ""
    )
    parts.append(
        f"<p>{escape(title)} at layer <b>{escape(layer)}</b> ({cam.shape[1]}×{cam.shape[0]} cells) for {escape(what)}, "
        f"score {cam.score:.4g}. {escape(summary)}</p>"
    )
    peak = float(cam.cam.max())
    parts.append(_row(
        charts.add(_map_figure(view, cam.normalized, f"What drives {cam.class_name}",
                               "share of the strongest push (0–1)", colorscale="Turbo", zrange=(0.0, 1.0),
                               opacity=0.8), "cam"),
        charts.add(_map_figure(view, cam.activations_mean, "What fires at this layer (all channels averaged)",
                               "mean activation", colorscale="Viridis", opacity=0.8), "mean"),
    ))
    if peak == 0:
        parts.append('<p class="note">No area pushes towards this score at this layer.</p>')
    return "".join(parts)


def _section_sanity(charts: Charts, view: Image.Image | None, sanity: SanityResult | None, note: str | None) -> str:
    head = "<h2>Does this depend on the model?</h2>"
    if sanity is None:
        return head + f'<p class="note">{escape(note or "The sanity check was not run.")}</p>'
    rho = f"{sanity.spearman:.3f}" if math.isfinite(sanity.spearman) else "undefined (a map is constant)"
    layers = ", ".join(sanity.randomized_modules) or "none"
    parts = [
        head,
        f'<div class="verdict {sanity.level}" id="verdict">{escape(sanity.verdict)}</div>',
        f"<p>The same map on a copy of the model whose layers from the output down to "
        f"<b>{escape(sanity.original.layer)}</b> were re-initialised with random weights (seed {sanity.seed}; "
        f"layers: {escape(layers)}). Rank correlation (Spearman) <b>{rho}</b>, structural similarity (SSIM) "
        f"<b>{sanity.ssim:.3f}</b>, on both maps scaled 0–1 at {sanity.size[1]}×{sanity.size[0]} pixels. "
        "After Adebayo et al., “Sanity Checks for Saliency Maps” (NeurIPS 2018).</p>",
        _row(
            charts.add(_map_figure(view, sanity.original.normalized, "The model", "0–1 (its own strongest = 1)",
                                   colorscale="Turbo", zrange=(0.0, 1.0), opacity=0.8), "sanity-model"),
            charts.add(_map_figure(view, sanity.randomized.normalized, "Randomised copy",
                                   "0–1 (its own strongest = 1)", colorscale="Turbo", zrange=(0.0, 1.0), opacity=0.8),
                       "sanity-random"),
        ),
    ]
    return "".join(parts)


def _section_view(view: Image.Image | None, model: LoadedModel) -> str:
    head = "<h2>The image as the model saw it</h2>"
    if view is not None:
        return head + (f'<img class="view" id="view" alt="the image as the model saw it" src="{_png(view)}" '
                       f'width="{max(view.width, 224)}">'
                       f'<p class="sub">{view.width}×{view.height} pixels after resizing and cropping.</p>')
    return head + (
        '<p class="note" id="no-image">Your picture is not in this file: you chose not to include it. '
        "No pixel of it is stored here. The maps below are drawn on their own, on the layer's grid (each "
        f"cell covers a patch of the {model.input_size[1]}×{model.input_size[0]}-pixel picture the model saw), "
        "not over the picture. Feature maps are the model's response to the picture, so those of early "
        "layers can still show its outlines.</p>"
    )


def _section_model(model: LoadedModel, top_k: Sequence[tuple[str, float]]) -> str:
    return ("<h2>The model</h2><table>"
            f"<tr><th>name</th><td>{escape(model.name)}</td></tr>"
            f"<tr><th>where it comes from</th><td>{escape(model.provenance)}</td></tr>"
            f"<tr><th>input</th><td>{model.input_channels} channel(s), {model.input_size[1]}×{model.input_size[0]} pixels</td></tr>"
            f"<tr><th>identifier</th><td><code>{escape(model.key)}</code></td></tr></table>"
            "\n<h2>The model's top 5 guesses</h2>\n"
            + (top_table(top_k) if top_k else
               '<p class="note">This model does not output class scores (it is not a classifier), so there is '
               "no list of guesses.</p>"))


def _section_layer(charts: Charts, layer: LayerInfo, array: np.ndarray, shown: list[int],
                   zrange: tuple[float, float]) -> str:
    shape = "×".join(str(s) for s in layer.shape or ())
    return (f"<h2>Layer {escape(layer.name)} ({escape(layer.type)}, {escape(shape)}): its {len(shown)} strongest "
            "channels</h2>\n"
            f"<p>Of {array.shape[0]} channels, the {len(shown)} with the highest average for this image, "
            "strongest first. One colour scale for the whole layer; hover for exact values.</p>\n"
            + charts.add(figures.mosaic_figure(array, shown, zrange=zrange, labels=True), "mosaic"))


def _section_channel(charts: Charts, view: Image.Image | None, array: np.ndarray, chosen: int,
                     zrange: tuple[float, float]) -> str:
    summary = stats.summary(array[chosen])
    detail = charts.add(figures.channel_figure(
        array[chosen], zrange=zrange, title=f"Channel {chosen} ({array.shape[2]}×{array.shape[1]})",
        colorbar_title="activation (layer scale)", height=420), "channel")
    overlay = "" if view is None else charts.add(figures.overlay_figure(
        view, array[chosen], opacity=0.8, title="Over the image (in grey)",
        colorbar_title="activation (this channel's range)", height=420), "channel-overlay")
    return (f"<h2>Channel {chosen} in detail</h2><p>" + " · ".join(f"{escape(k)} {v:.4g}" for k, v in summary.items())
            + "</p>\n" + _row(detail, overlay))


def section_limits() -> str:
    return ("<h2>What these maps do not prove</h2><ul>"
            + "".join(f"<li>{escape(line)}</li>" for line in DOES_NOT_PROVE) + "</ul>")


def footer(version: str, created: datetime) -> str:
    return (f"<footer>Made with featviz {escape(version)} on {escape(created.isoformat(timespec='seconds'))}. "
            f"Charts by plotly.js {escape(plotly_version())}, embedded: this file opens offline and makes no "
            "request to any host.</footer>")


def html_page(title: str, body: list[str], charts: Charts) -> bytes:
    """The whole file: plotly.js once, the sections, then the script that draws every chart."""
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style>"
        f"<script>{plotly_js()}</script></head><body>"
        + "\n".join(body)
        + charts.script()
        + "</body></html>"
    )
    return page.encode("utf-8")


def report_html(
    model: LoadedModel,
    layer: LayerInfo,
    maps: np.ndarray,
    *,
    view: Image.Image | None,
    image_name: str | None = None,
    top_k: Sequence[tuple[str, float]] = (),
    channel: int | None = None,
    cam: CamResult | None = None,
    cam_note: str | None = None,
    sanity: SanityResult | None = None,
    sanity_note: str | None = None,
    version: str = "",
    created: datetime | None = None,
) -> bytes:
    """The report as UTF-8 HTML bytes.

    ``maps`` are the chosen ``layer``'s feature maps (C, H, W); only its :data:`SHOWN_CHANNELS` strongest
    channels (by mean) and ``channel`` (default: the strongest) go in. ``view`` is the picture as the model
    saw it (``model.model_view(image)``), or None to leave every pixel of the picture out (then
    ``image_name`` is not written either). ``top_k`` are (class, probability) pairs (empty: a model without
    class scores). ``cam`` and ``sanity`` are the results to show; when they are missing, ``cam_note`` and
    ``sanity_note`` say why.
    """
    created = created or datetime.now(timezone.utc).astimezone()
    array = np.asarray(maps, dtype=np.float32)
    shown = [int(c) for c in stats.order_channels(stats.channel_stats(array), "mean")[:SHOWN_CHANNELS]]
    chosen = int(channel) if channel is not None and 0 <= int(channel) < array.shape[0] else shown[0]
    zrange = figures.layer_range(array)
    charts = Charts()
    picture = escape(image_name) if view is not None and image_name else "your image"
    title = f"featviz report · {model.name} · layer {layer.name}"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{picture} · {escape(created.strftime("%Y-%m-%d %H:%M %Z").strip())}</p>',
        _section_view(view, model),
        _section_model(model, top_k),
        _section_layer(charts, layer, array, shown, zrange),
        _section_channel(charts, view, array, chosen, zrange),
        _section_cam(charts, view, cam, cam.layer if cam is not None else "", cam_note),
        _section_sanity(charts, view, sanity, sanity_note),
        section_limits(),
        footer(version, created),
    ]
    return html_page(title, body, charts)


@lru_cache(maxsize=1)
def plotly_version() -> str:
    head = plotly_js()[:400]
    marker = "plotly.js v"
    start = head.find(marker)
    return head[start + len(marker):].split()[0] if start >= 0 else "(bundled)"


def chart_specs(data: bytes) -> list[dict[str, Any]]:
    """The chart specs inside a report (for tests): one dict per chart, in order."""
    text = data.decode("utf-8")
    specs = []
    for line in text.splitlines():
        if line.startswith('draw("'):
            specs.append(json.loads(line[line.index(", ") + 2: -2]))
    return specs
