"""Exemplars: the images (and patches) of a collection that excite each channel most — the bundled examples on
the first view, or the user's own (a zip upload, a folder given at start, a saved result)."""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import Any

import streamlit as st
from PIL import Image

from featviz_core import FeatvizError, export
from featviz_core.exemplars import Exemplars, ExemplarsProgress, find_exemplars
from featviz_core.exemplars.result import fit
from featviz_core.exemplars.search import EmptyCollectionError
from featviz_core.images import Collection
from featviz_core.models import LoadedModel
from ui import jobs, keys
from ui.cli import options
from ui.errors import guard
from ui.exemplar_sources import (
    BUNDLED,
    RESULT,
    ZIP,
    bundled_source,
    choose_source,
    folder_source,
    keep,
    result_source,
    sticky,
    zip_source,
)
from ui.job_view import start, stop_button
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import current, request

ensure_routed()

PAGE = "exemplars"  # this page's url path (jobs started here stop when the user leaves it)
K = 9
BATCH = 16
TILE = 160
ORDERS = {"strongest": "Strongest channels first", "index": "Channel number"}

HOW_TO_READ = """
Each **channel** of a layer reacts to one learned pattern. A good way to learn what that pattern is: run the
network over many of *your own* images and look at the ones that excite the channel most.

- **Strongest images**: the images of your collection in which this channel reached its highest value
  (its *peak*). The yellow box marks where in the image that peak is.
- **Their strongest patches**: the part of each image that one position of this layer can see (its
  *receptive field*), cut out around the peak. Light blue-grey means the patch reaches past the image's edge.
- **Weakest images**: the images where the channel stays lowest, i.e. what it ignores.
- **Open** puts an image in the sidebar, so the other pages show it.

Peaks are comparable within one channel; between channels, the numbers have no common unit. What the images
share is a hint about the pattern, not a proof: always look at several, and at the weakest ones too.
"""



def _short(name: str, length: int = 22) -> str:
    """The file name without its folders, shortened in the middle (the numbers that tell files apart are kept)."""
    base = name.rsplit("/", 1)[-1]
    return base if len(base) <= length else base[: length // 2 - 1] + "…" + base[-(length // 2):]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "working out the time left"
    if seconds < 60:
        return f"about {max(1, math.ceil(seconds))} s left"
    return f"about {math.ceil(seconds / 60)} min left"


# ---------------------------------------------------------------------------------------------------
# 2 · The run


def _job_key(model: LoadedModel, layer: str, collection: Collection) -> str:
    return keys.exemplars_key(model.key, layer, collection.key, K)


def _start(model: LoadedModel, layer: str, collection: Collection) -> None:
    # Finished jobs stay in a table shared by the whole server: what goes there holds no image (the page
    # attaches this session's collection to show pictures), so a zip upload leaves with its session.
    def light(progress: jobs.Progress) -> jobs.Progress:
        def report(done: int, total: int, preview: Any) -> None:
            if isinstance(preview, ExemplarsProgress):
                preview = dataclasses.replace(preview, partial=preview.partial.without_images())
            progress(done, total, preview)

        return report

    def run(progress: jobs.Progress) -> Exemplars | EmptyCollectionError:
        try:
            found = find_exemplars(model, layer, collection, k=K, batch_size=BATCH, progress=light(progress))
        except EmptyCollectionError as exc:  # shown with the list of files and reasons
            return exc
        return found.without_images()

    start(_job_key(model, layer, collection), run, label=f"exemplars {model.name} {layer}", page=PAGE,
          total=len(collection))


def _draw_progress(job: jobs.Job) -> None:
    if not job.running:
        return
    total = job.total or 1
    preview = job.preview
    rate = preview.rate if isinstance(preview, ExemplarsProgress) else None
    left_s = preview.seconds_left if isinstance(preview, ExemplarsProgress) else None
    speed = f"{rate:.1f} images per second" if rate else "starting"
    st.progress(job.fraction, text=f"{job.done:,} of {total:,} images · {speed} · {_duration(left_s)}")
    left, right = st.columns([4, 1])
    if isinstance(preview, ExemplarsProgress):
        failed = f" · {preview.failed} could not be read" if preview.failed else ""
        left.caption(f"Last read: {_short(preview.last, 40)}{failed}")
    stop_button(job, "ex_stop", help="Stop now and show what was found so far.", where=right)


def _outcome(job: jobs.Job | None) -> Exemplars | None:
    """What the job has to show: the result, a partial one when stopped, or nothing (a message is shown)."""
    if job is None or job.running:
        return None
    if job.state == "failed":
        st.error(job.error or "The run failed.", icon=":material/error:")
        return None
    if job.state == "stopped":
        preview = job.preview
        if not isinstance(preview, ExemplarsProgress) or preview.partial.count == 0:
            st.info("Stopped before the first images were read.", icon=":material/info:")
            return None
        st.info(f"Stopped after {preview.done:,} of {preview.total:,} files: these are the exemplars among the "
                "images read so far.", icon=":material/info:")
        return preview.partial
    if isinstance(job.result, EmptyCollectionError):
        st.warning(str(job.result), icon=":material/warning:")
        _failures(job.result.failed)
        return None
    return job.result


def _failures(failed: tuple[tuple[str, str], ...]) -> None:
    if failed:
        with st.expander(f"{len(failed):,} file{'s' if len(failed) != 1 else ''} could not be read",
                         icon=":material/report:"):
            st.dataframe({"file": [f for f, _ in failed], "why": [r for _, r in failed]}, hide_index=True,
                         width="stretch")


def _watching(key: str | None) -> None:
    """Remember the job this page shows now; stop this session's job for what it showed before (another layer,
    model or collection: no longer wanted)."""
    state = st.session_state
    previous = state.get("_ex_job")
    old = jobs.get(previous) if previous and previous != key else None
    if old is not None and old.running and old.owner == jobs.session_id():
        jobs.stop(old.key, "the user chose another layer, model or collection")
    state["_ex_job"] = key


def _stopped_here(job: jobs.Job) -> bool:
    """This session pressed Stop on ``job`` (then it waits for "Run again"; a job stopped because someone left
    or chose something else starts again for whoever asks for it)."""
    return job.owner == jobs.session_id() and job.stop_reason == jobs.PRESSED_STOP


def _run(model: LoadedModel, layer: str, collection: Collection, *, start_now: bool = False) -> Exemplars | None:
    """The search over ``collection``: its button (or, with ``start_now``, the search itself when it has not run
    yet), its progress while it runs, its result (or partial one)."""
    refused = f" ({len(collection.refused)} left out)" if collection.refused else ""
    if not collection.names:
        st.warning(collection.empty_message(), icon=":material/warning:")
        _failures(collection.refused)
        st.stop()
    key = _job_key(model, layer, collection)
    _watching(key)
    job = jobs.get(key)
    if start_now and (job is None or (job.state == "stopped" and not _stopped_here(job))):
        _start(model, layer, collection)
        job = jobs.get(key)
    st.caption(f"{collection.label[0].upper()}{collection.label[1:]}: {len(collection):,} files{refused} · layer {layer} "
               f"(choose the layer in the sidebar) · {K} images kept per channel")
    if job is None or job.state in ("stopped", "failed"):
        again = "Run again" if job is not None else f"Find the exemplars in {len(collection):,} files"
        # on_click: the job starts before the page is drawn again, so this button is gone while it runs
        st.button(again, key="ex_run", type="primary", icon=":material/play_arrow:", on_click=_start,
                  args=(model, layer, collection))
    if job is not None and job.running:
        jobs.watch(key, _draw_progress)
    result = _outcome(job)
    return result.with_images(collection, model.model_view) if result is not None else None


# ---------------------------------------------------------------------------------------------------
# 3 · The result


TILES_KEPT = 200


def _tile(result_key: str, channel: int, i: int, kind: str, result_: Exemplars) -> Image.Image:
    """One picture of the page, enlarged without blurring (a patch can be a few pixels). Kept in this
    session only (they are the user's images), the last TILES_KEPT of them."""
    state = st.session_state
    tiles: OrderedDict[tuple[str, int, int, str], Image.Image] = state.setdefault("_ex_tiles", OrderedDict())
    key = (result_key, channel, i, kind)
    if key in tiles:
        tiles.move_to_end(key)
        return tiles[key]
    bottom = kind == "bottom"
    image = result_.patch(channel, i, bottom=bottom) if kind == "patch" else result_.picture(channel, i, bottom=bottom)
    tiles[key] = fit(image, TILE)
    while len(tiles) > TILES_KEPT:
        tiles.popitem(last=False)
    return tiles[key]


def _open(result_: Exemplars, name: str) -> None:
    """Make an exemplar the sidebar's image (as if it had been uploaded there)."""
    state = st.session_state
    try:
        data = result_.image_bytes(name)
    except FeatvizError as exc:
        state["_ex_open_error"] = str(exc)
        return
    request(image_source="Upload", _last_upload=(name.rsplit("/", 1)[-1], data), _last_upload_by_widget=False)
    state["_ex_opened"] = name


def _row(result_: Exemplars, result_key: str, channel: int, kind: str, title: str) -> None:
    items = result_.bottom(channel) if kind == "bottom" else result_.top(channel)
    st.markdown(f"**{title}**")
    columns = st.columns(K)
    for i, item in enumerate(items):
        with columns[i]:
            if result_.has_images:
                try:
                    st.image(_tile(result_key, channel, i, kind, result_), width="stretch")
                except FeatvizError as exc:
                    st.caption(str(exc))
            with st.container(gap=None):  # the name on one line (its button's tooltip has it whole), the value below
                st.caption(_short(item.name, 15), wrap=False)
                st.caption(f"peak {item.peak:.3g}")
            if kind != "patch" and result_.has_images:
                st.button("Open", key=f"ex_open_{kind}_{i}", icon=":material/open_in_new:", on_click=_open,
                          args=(result_, item.name), help=f"Show {item.name} in the sidebar (and on every page).")


def _show(result_: Exemplars) -> None:
    state = st.session_state
    if state.get("_ex_opened"):
        st.success(f"{_short(state.pop('_ex_opened'), 60)} is now the image in the sidebar.",
                   icon=":material/check_circle:")
        st.page_link("pages/feature_maps.py", label="See its feature maps", icon=":material/grid_view:")
    if state.get("_ex_open_error"):
        st.error(state.pop("_ex_open_error"))
    speed = f" in {result_.seconds:.0f} s" if result_.seconds >= 1 else ""
    st.subheader(f"{result_.count:,} images read{speed}")
    _failures(result_.failed)
    field = result_.receptive_field
    h, w = result_.input_size
    how = field.note if field.method == "estimate" else (
        "Measured on this model." if field.method == "gradient" else
        "Measured on this model by changing parts of a test picture.")
    st.caption(f"Layer {result_.layer} of {result_.model_name}. Each patch is the part of the picture that one "
               f"spot of this layer can see: {field.size[0]}×{field.size[1]} pixels of the {h}×{w} picture the "
               f"model is given. {how}")
    sticky("ex_order", "strongest")
    c1, c2 = st.columns([1, 2])
    order = c1.selectbox("Order", list(ORDERS), key="ex_order", format_func=ORDERS.get,
                         help="“Strongest” puts the channels whose best images reach the highest values first.")
    keep("ex_order")
    channels = [int(c) for c in (result_.strongest_channels() if order == "strongest" else range(result_.channels))]
    best = {c: float(result_.top_peak[c, 0]) if result_.top_peak.shape[1] else 0.0 for c in channels}
    sticky("ex_channel", channels[0])
    if state.get("ex_channel") not in channels:
        state["ex_channel"] = channels[0]
    channel = c2.selectbox("Channel", channels, key="ex_channel",
                           format_func=lambda c: f"channel {c} · highest peak {best[c]:.3g}",
                           help="Type a number to jump to a channel.")
    keep("ex_channel")
    result_key = keys.exemplars_tiles_key(result_.collection_key, result_.model_key, result_.layer, result_.count)
    if not result_.has_images:
        st.caption("Pictures are not available for this result: the names and values are listed.")
    _row(result_, result_key, channel, "top", "Strongest images — the number is the channel's highest value in "
         "each image; the yellow box shows where")
    if result_.has_images:
        _row(result_, result_key, channel, "patch", "Their strongest patches — what the channel reacts to")
    _row(result_, result_key, channel, "bottom", "Weakest images — what the channel ignores")
    st.markdown("**Downloads**")
    stem = export.export_filename(result_.model_name, result_.layer, "exemplars", "npz").rsplit(".", 1)[0]
    d1, d2, d3 = st.columns(3)
    d1.download_button("Table (.npz)", data=result_.npz_bytes, file_name=f"{stem}.npz",
                       mime="application/octet-stream", icon=":material/download:", on_click="ignore",
                       help="Image name, channel, peak, mean and peak position for every exemplar; this page "
                       "can open it again (“Saved result”).")
    if _has_pyarrow():
        d2.download_button("Table (.parquet)", data=result_.parquet_bytes, file_name=f"{stem}.parquet",
                           mime="application/octet-stream", icon=":material/download:", on_click="ignore",
                           help="The same table for pandas, R or a spreadsheet tool that reads Parquet.")
    if result_.has_images:
        d3.download_button(f"Contact sheet of channel {channel} (.png)",
                           data=lambda: _sheet(result_, channel),
                           file_name=f"{stem}_channel{channel}.png", mime="image/png", icon=":material/download:",
                           on_click="ignore",
                           help="The strongest images, their patches and the weakest images in one picture.")


def _sheet(result_: Exemplars, channel: int) -> bytes:
    """The contact sheet; if an image has gone meanwhile, a picture saying so (a download cannot show errors)."""
    try:
        return result_.contact_sheet_png(channel)
    except FeatvizError as exc:
        import io

        from PIL import ImageDraw

        note = Image.new("RGB", (900, 60), "white")
        ImageDraw.Draw(note).text((10, 20), str(exc)[:140], fill="black")
        buffer = io.BytesIO()
        note.save(buffer, format="PNG")
        return buffer.getvalue()


def _has_pyarrow() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def main() -> None:
    selection = current()
    page_header("Exemplars", HOW_TO_READ, selection)
    model, layer, root = selection.model, selection.layer.name, options().images
    source = choose_source(root)
    result: Exemplars | None = None
    collection: Collection | None = None
    if source == RESULT:
        result = result_source(model, root)
    elif source == BUNDLED:
        collection = bundled_source()
    else:
        collection = zip_source() if source == ZIP else folder_source(str(root))
    if collection is None:
        _watching(None)
    else:
        # The bundled examples are searched as soon as they are shown (a few seconds, shared by every visitor);
        # the user's own collection, which may be large, when they press the button.
        result = _run(model, layer, collection, start_now=source == BUNDLED)
    if result is not None:
        with guard("showing the exemplars", stop=False):
            _show(result)


main()
