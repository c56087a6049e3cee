"""What it responds to: a picture optimized to excite one channel, beside that channel's map on the image."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from featviz_core import export, figures, stats
from featviz_core.visualize import GalleryPreview, Visualization, visualize, visualize_channels
from featviz_core.visualize.optimize import check_model, montage
from ui import jobs, keys
from ui.errors import guard
from ui.job_view import start, stop_button
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import Selection, current, request, url_values, write_url

ensure_routed()

PAGE = Path(__file__).stem  # the page's url_path: jobs started here stop when the user leaves it
GALLERY_SIZE = 8
SIZES = (64, 96, 128, 160, 224)
STEPS = (64, 128, 256, 512, 1024)
OBJECTIVES = {
    "channel": "Whole channel (its average)",
    "neuron": "One position (the centre)",
    "negative": "What it responds to least",
    "diversity": "Four different pictures",
}
DEFAULTS: dict[str, Any] = {"viz_size": 128, "viz_steps": 256, "viz_objective": "channel", "viz_seed": 0}

HOW_TO_READ = """
**What these pictures are.** Each picture on this page is *made*, not photographed: featviz starts from faint
noise and changes its pixels step by step so that the chosen channel responds as strongly as it can (the
method of Olah et al., “Feature Visualization”, 2017). Whatever repeats in the result — stripes, dots, a
texture, a colour, part of an object — is what this channel looks for. Beside it is the same channel's map
over your image: where in *your* picture that pattern was found.

- **Activation reached** is the channel's average value on the made picture; compare it with the value on
  your image (below the map). The small curve shows it rising while the picture was made.
- **Options**: *One position* asks only the centre of the channel to respond; *What it responds to least* makes
  the opposite picture; *Four different pictures* makes four at once that must differ from each other, because a
  channel often responds to several different things. The **seed** picks the starting noise: the same seed gives
  the same picture again (it is kept in the page's link), another seed a different picture of the same preference.

**What they do not prove.** The pictures exaggerate: no real image looks like this, and a channel that responds
to this pattern may respond to other things too. They show what excites one channel, not how the network uses
it for its decision. A pattern that looks like something you know (a vessel, a lesion) does not mean the
network has learnt that concept. For medical images these pictures describe the *model*, not the patient; they
are not a diagnosis.
"""


# ---------------------------------------------------------------------------------------------------
# Choices


def _strongest(maps: np.ndarray) -> list[int]:
    """Channels by their mean on this image, strongest first."""
    return [int(c) for c in stats.order_channels(stats.channel_stats(maps), "mean")]


def _sync_channel(selection: Selection, n: int, strongest: int) -> None:
    """The channel to look at: the one chosen on Feature maps, else the strongest one for this image.
    Kept while the model and layer stay the same; a link's channel is kept on the first view."""
    state = st.session_state
    here = (selection.model.key, selection.layer.name)
    from_maps = state.get("channel")
    from_maps = from_maps if isinstance(from_maps, int) and 0 <= from_maps < n else None
    valid = isinstance(state.get("viz_channel"), int) and 0 <= state["viz_channel"] < n
    if state.get("_viz_for") != here:
        first = state.get("_viz_for") is None
        state["_viz_for"] = here
        if not (first and valid):
            state["viz_channel"] = from_maps if from_maps is not None else strongest
    elif from_maps is not None and from_maps != state.get("_viz_maps_channel"):
        state["viz_channel"] = from_maps  # chosen on Feature maps since the last visit
    elif not valid:
        state["viz_channel"] = strongest
    state["_viz_maps_channel"] = from_maps


def _controls(n: int) -> tuple[int, str, int, int, int]:
    state = st.session_state
    for key, value in DEFAULTS.items():
        allowed = {"viz_size": SIZES, "viz_steps": STEPS, "viz_objective": tuple(OBJECTIVES)}.get(key)
        if key not in state or (allowed is not None and state[key] not in allowed):
            state[key] = value
    c1, c2, c3, c4, c5 = st.columns([1, 1.6, 0.8, 0.8, 0.8])
    channel = c1.number_input("Channel", 0, n - 1, step=1, key="viz_channel",
                              help=f"Which of the layer's {n} channels (0 to {n - 1}).")
    objective = c2.selectbox("Make a picture of", list(OBJECTIVES), key="viz_objective", format_func=OBJECTIVES.get,
                             help="What the picture is optimized for; see “How to read this”.")
    size = c3.selectbox("Size (px)", SIZES, key="viz_size", help="Width and height of the picture.")
    steps = c4.selectbox("Steps", STEPS, key="viz_steps",
                         help="How long to optimize: more steps give clearer pictures and take longer.")
    seed = c5.number_input("Seed", 0, 2**31 - 1, step=1, key="viz_seed",
                           help="The starting noise. The same seed gives the same picture again.")
    return int(channel), str(objective), int(size), int(steps), int(seed)


# ---------------------------------------------------------------------------------------------------
# Drawing


def _display(picture: np.ndarray, width: int = 320) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(picture))
    return image.resize((width, round(width * image.height / image.width)), Image.Resampling.BICUBIC)


def _pictures(images: np.ndarray, captions: list[str] | None = None) -> None:
    shown = [_display(p, 320 if len(images) == 1 else 200) for p in images]
    if len(shown) == 1:
        st.image(shown[0], caption=captions[0] if captions else None)
        return
    columns = st.columns(2)
    for i, picture in enumerate(shown):
        columns[i % 2].image(picture, caption=captions[i] if captions else None)


def _curve(result: Visualization) -> go.Figure:
    fig = go.Figure(go.Scatter(y=result.activation, mode="lines", line={"width": 2}, name="activation",
                               hovertemplate="step %{x}<br>activation %{y:.4g}<extra></extra>"))
    fig.update_layout(height=200, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False,
                      title={"text": "Activation at each step (picture moved a little each step)", "font": {"size": 13}})
    fig.update_xaxes(title_text="step")
    return fig


def _filename(selection: Selection, what: str) -> str:
    base = export.export_filename(selection.model.name, selection.layer.name, selection.image_stem, "png")
    return base.rsplit(".", 1)[0] + f"_{what}.png"


def _draw_single(selection: Selection, channel: int, job: jobs.Job) -> None:
    if job.running:
        eta = job.eta()
        left = f" · about {eta:.0f} s left" if eta is not None else ""
        st.progress(job.fraction, text=f"Making the picture: step {job.done} of {job.total}{left}")
        if job.preview is not None:
            _pictures(job.preview, [f"Step {job.done}"] * len(job.preview))
        stop_button(job, "viz_stop")
        return
    if job.state == "failed":
        st.error(job.error or "This picture could not be made.", icon=":material/error:")
        return
    if job.state == "stopped":
        st.info("Stopped before the end. Press Start to make the picture again.", icon=":material/info:")
        return
    result: Visualization = job.result
    captions = [f"Picture {i + 1}" for i in range(len(result.images))] if len(result.images) > 1 else None
    _pictures(result.images, captions)
    least = result.objective == "negative"
    value = float(result.reached.mean())
    mine = float(selection.maps()[channel].mean())
    st.metric("Activation reached" + (" (lowered)" if least else ""), f"{value:.4g}",
              help="The channel's average on the picture (its centre value for “one position”); for several "
              "pictures, their average.")
    if mine > 0 and result.objective in ("channel", "diversity"):  # both averages over the whole map
        st.caption(f"{value / mine:.1f}× this channel's average on your image ({mine:.4g}).")
    st.plotly_chart(_curve(result), width="stretch", key="viz_curve", config={"displayModeBar": False})
    st.download_button(
        "Download picture (PNG)" if len(result.images) == 1 else "Download pictures (PNG)",
        data=result.png(), file_name=_filename(selection, f"channel{channel}_{result.objective}_seed{result.seed}"),
        mime="image/png", icon=":material/download:", on_click="ignore", key="viz_download",
    )


def _draw_map(selection: Selection, maps: np.ndarray, channel: int) -> None:
    one = maps[channel]
    cmap = st.session_state.get("cmap") if st.session_state.get("cmap") in figures.COLORSCALES else None
    st.plotly_chart(
        figures.overlay_figure(selection.model.model_view(selection.image), one, opacity=0.8, colorscale=cmap,
                               title=f"Where channel {channel} fires in your image",
                               colorbar_title="activation", height=420),
        width="stretch", key="viz_map",
        config=export.plotly_config(_filename(selection, f"channel{channel}_overlay").rsplit(".", 1)[0]),
    )
    st.caption(f"On your image channel {channel} averages {float(one.mean()):.4g} (highest {float(one.max()):.4g}).")


def _draw_gallery(selection: Selection, channels: list[int], job: jobs.Job) -> None:
    preview = job.preview if isinstance(job.preview, GalleryPreview) else None
    finished = list(job.result) if job.state == "done" else list(preview.finished if preview else [])
    if job.running:
        st.progress(job.fraction, text=f"Making {len(channels)} pictures: {len(finished)} done")
    elif job.state == "failed":
        st.error(job.error or "These pictures could not be made.", icon=":material/error:")
    elif job.state == "stopped":
        st.info("Stopped before the end. Press the button again to go on.", icon=":material/info:")
    by_channel = {r.channel: r for r in finished}
    columns = st.columns(4)
    for i, channel in enumerate(channels):
        with columns[i % 4]:
            done = by_channel.get(channel)
            if done is not None:
                st.image(_display(done.images[0], 180), caption=f"Channel {channel} · {float(done.reached[0]):.3g}")
                if st.button("Open", key=f"viz_open_{channel}", help=f"Show channel {channel} above."):
                    request(viz_channel=channel)
                    st.rerun()
            elif preview is not None and preview.channel == channel and preview.images is not None:
                st.image(_display(preview.images[0], 180), caption=f"Channel {channel} · being made…")
            else:
                st.caption(f"Channel {channel} · waiting")
    if job.state == "done":
        st.download_button(
            f"Download all {len(finished)} (PNG)", data=_sheet_png(finished),
            file_name=_filename(selection, "strongest_channels"),
            mime="image/png", icon=":material/download:", on_click="ignore", key="viz_gallery_download",
        )


def _sheet_png(results: list[Visualization]) -> bytes:
    buffer = io.BytesIO()
    montage([r.images[0] for r in results], columns=4).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------
# The page


def _known(model_key: str, layer: str, channels: list[int], size: int, steps: int, seed: int) -> dict[int, Any]:
    """Finished single pictures with the gallery's settings (they are not made again)."""
    found = {}
    for channel in channels:
        job = jobs.get(keys.visualize_key(model_key, layer, channel, "channel", size, steps, seed))
        if job is not None and job.state == "done":
            found[channel] = job.result
    return found


def _from_gallery(selection: Selection, key: str, channel: int, strongest: list[int], size: int, steps: int,
                  seed: int) -> None:
    """The picture of ``channel`` made for the finished gallery, as this picture's job (not made again)."""
    model, layer = selection.model, selection.layer.name
    gallery = jobs.get(keys.gallery_key(model.key, layer, strongest, size, steps, seed))
    if jobs.get(key) is None and gallery is not None and gallery.state == "done":
        made = {r.channel: r for r in gallery.result}.get(channel)
        if made is not None:
            start(key, lambda _progress: made, label=f"visualize {layer} #{channel} (from the gallery)", page=PAGE,
                  total=steps)


def _single(selection: Selection, maps: np.ndarray, strongest: list[int], settings: tuple[int, str, int, int, int],
            ) -> None:
    """One picture for the chosen channel (made when asked), beside the channel's map on the image."""
    model, layer = selection.model, selection.layer.name
    channel, objective, size, steps, seed = settings
    state = st.session_state
    key = keys.visualize_key(model.key, layer, channel, objective, size, steps, seed)
    auto = state.pop("_viz_autostart", False)  # asked for from the Feature maps page
    if not state.get("_viz_seen"):
        state["_viz_seen"] = True
        auto = auto or bool(st.query_params.get("vseed"))  # opened from a link that holds a picture's settings
    if objective == "channel":
        _from_gallery(selection, key, channel, strongest, size, steps, seed)
    existing = jobs.get(key)
    busy = existing is not None and existing.state in ("running", "done")  # made or being made: nothing to start
    pressed = st.button(f"Start: make a picture for channel {channel}", type="primary", icon=":material/play_arrow:",
                        disabled=busy, key="viz_start",
                        help="Optimizes a picture for this channel (a few seconds to a minute, depending on the "
                        "model and layer). The page stays usable meanwhile; leaving it stops the computation.")
    if pressed or auto:
        def work(progress: jobs.Progress) -> Visualization:
            return visualize(model, layer, channel, objective=objective, size=size, steps=steps, seed=seed,
                             progress=progress)

        start(key, work, label=f"visualize {model.name} {layer} #{channel}", page=PAGE, total=steps)
        st.rerun()  # draw it as running (the Start button greyed out) from the first moment
    left, right = st.columns(2)
    with left:
        if jobs.get(key) is None:
            st.info(f"Press **Start** to make a picture that channel {channel} responds to. Meanwhile, the map on "
                    "the right shows where this channel fires in your image.", icon=":material/touch_app:")
        jobs.watch(key, lambda job: _draw_single(selection, channel, job))
    with right:
        _draw_map(selection, maps, channel)


def _gallery(selection: Selection, strongest: list[int], size: int, steps: int, seed: int) -> None:
    """One picture for each of the layer's strongest channels, made one after another when asked."""
    model, layer = selection.model, selection.layer.name
    st.subheader(f"The {GALLERY_SIZE} strongest channels of this layer for this image")
    key = keys.gallery_key(model.key, layer, strongest, size, steps, seed)
    st.caption(f"Channels {', '.join(map(str, strongest))}, strongest first (by their average on your image). "
               f"One picture each, {size} px, {steps} steps, seed {seed}.")
    gallery = jobs.get(key)
    if st.button(f"Make all {len(strongest)} pictures", icon=":material/grid_view:", key="viz_gallery_start",
                 disabled=gallery is not None and gallery.state in ("running", "done"),
                 help="One picture for each of these channels, one after another (about 8 times as long as one)."):
        known = _known(model.key, layer, strongest, size, steps, seed)

        def work_all(progress: jobs.Progress) -> list[Visualization]:
            return visualize_channels(model, layer, strongest, size=size, steps=steps, seed=seed, progress=progress,
                                      known=known)

        start(key, work_all, label=f"gallery {model.name} {layer}", page=PAGE, total=steps * len(strongest))
        st.rerun()
    jobs.watch(key, lambda job: _draw_gallery(selection, strongest, job))


def main() -> None:
    selection = current()
    page_header("What it responds to", HOW_TO_READ, selection)
    with guard("checking the model"):
        check_model(selection.model)
        maps = selection.maps()
    order = _strongest(maps)
    _sync_channel(selection, maps.shape[0], order[0])
    settings = _controls(maps.shape[0])
    strongest = order[:GALLERY_SIZE]
    _single(selection, maps, strongest, settings)
    _gallery(selection, strongest, *settings[2:])
    write_url(url_values(selection))


main()
