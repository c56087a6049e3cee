"""The "Download report" button every page shows (in its header), and what it gathers.

The button's data is a callable: the report is built only when the button is clicked (in a worker thread of
the server, outside the script run), from what this session chose (the sidebar's selection, and the
:class:`~ui.state.CamChoice` of "Where it looks", read at the click) and from the caches (the extraction, the
map, the sanity check). A map that takes many forward passes (Score-CAM) is used only when its background job has
finished; the report says so otherwise.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import streamlit as st

import featviz_core
from featviz_core import FeatvizError, export
from featviz_core.cam import METHODS, CamResult, CamTarget, SanityResult, default_cam_layer
from featviz_core.report import report_html

from . import cache, jobs
from .state import CamChoice, LatestCamChoice, Selection, latest_cam_choice

log = logging.getLogger("featviz")

INCLUDE_KEY = "report_include_image"


@dataclass(frozen=True)
class ReportRequest:
    """What the report is about: the selection and the choices of the "Where it looks" page at the time."""

    selection: Selection
    include_image: bool
    cam_layer: str | None
    cam_class: int | None
    cam_method: str
    target: CamTarget | None
    channel: int | None


def request_for(selection: Selection, include_image: bool, channel: int | None,
                choice: CamChoice | None) -> ReportRequest:
    """The report of ``selection`` with the map of ``choice`` where it was made for the same model (its layer,
    target) and image (its class); what does not apply is left for :func:`build_report` to default."""
    same_model = choice is not None and choice.model_key == selection.model.key
    same_image = same_model and choice is not None and choice.image_digest == selection.image_digest
    return ReportRequest(
        selection=selection,
        include_image=include_image,
        cam_layer=choice.layer if choice is not None and same_model else None,
        cam_class=choice.class_index if choice is not None and same_image else None,
        cam_method=choice.method if choice is not None and choice.method in METHODS else "gradcam",
        target=choice.target if choice is not None and same_model else None,
        channel=channel,
    )


def request_from_state(selection: Selection, include_image: bool) -> ReportRequest:
    """The report of what this session has chosen so far."""
    channel = st.session_state.get("channel")
    return request_for(selection, include_image, channel if isinstance(channel, int) else None,
                       latest_cam_choice().choice)


def _map(request: ReportRequest, choice: CamChoice) -> tuple[CamResult | None, str | None]:
    sel, method, target = request.selection, choice.method, choice.target
    if METHODS[method].many_passes:
        job = jobs.get(choice.key)
        if job is None or job.state != "done":
            return None, (f"{METHODS[method].title} runs the model once per channel; it had not finished when "
                          "this report was made. Open “Where it looks” and wait for it, then download again.")
        return job.result, None
    result = cache.cam(sel.image_digest, sel.model.key, choice.layer, choice.class_index, sel.model, sel.image,
                       method, target.key if target else "", target)
    return result, None


def _sanity(request: ReportRequest, choice: CamChoice, original: CamResult) -> SanityResult | None:
    sel, method, target = request.selection, choice.method, choice.target
    if METHODS[method].many_passes:
        job = jobs.get(choice.sanity_key)
        return job.result if job is not None and job.state == "done" else None
    return cache.sanity(sel.image_digest, sel.model.key, original.layer, choice.class_index, method,
                        target.key if target else "", 0, sel.model, sel.image, target, original)


def build_report(request: ReportRequest) -> bytes:
    """The report's bytes for ``request`` (what the button's callable returns)."""
    sel = request.selection
    model = sel.model
    extraction = cache.extraction(sel.image_digest, model.key, (sel.layer.name,), model, sel.image)
    top = extraction.top_k(5)
    cam_result: CamResult | None = None
    cam_note: str | None = None
    sanity: SanityResult | None = None
    sanity_note: str | None = None
    # What the page's choice leaves open (another model or image, or no visit yet) is resolved as the page
    # resolves its defaults, so the page's cached results are found.
    class_index = (request.cam_class if request.cam_class is not None else extraction.top_k_indices(1)[0]) if top else None
    try:
        choice = CamChoice(sel.image_digest, model.key, request.cam_layer or default_cam_layer(model), class_index,
                           request.cam_method, request.target)
        if not top and request.target is None:
            cam_note = ("This model is not a classifier: open “Where it looks” and choose which of its outputs to "
                        "explain, then download the report again.")
        else:
            cam_result, cam_note = _map(request, choice)
    except FeatvizError as exc:
        cam_note = str(exc)
    if cam_result is not None:
        try:
            sanity = _sanity(request, choice, cam_result)
            if sanity is None:
                sanity_note = ("The sanity check of this method runs the model once per channel and had not been "
                               "run; run it on “Where it looks”, then download again.")
        except FeatvizError as exc:
            sanity_note = str(exc)
    return report_html(
        model,
        sel.layer,
        extraction.activations[sel.layer.name],
        view=model.model_view(sel.image) if request.include_image else None,
        image_name=sel.image_name if request.include_image else None,
        top_k=top,
        channel=request.channel,
        cam=cam_result,
        cam_note=cam_note,
        sanity=sanity,
        sanity_note=sanity_note,
        version=featviz_core.__version__,
    )


def _safe_build(selection: Selection, include_image: bool, channel: int | None, latest: LatestCamChoice) -> bytes:
    try:
        return build_report(request_for(selection, include_image, channel, latest.choice))
    except Exception:  # noqa: BLE001 - a download must not end in a traceback; the log has the details
        log.exception("The report could not be built")
        return (b"<!DOCTYPE html><meta charset='utf-8'><title>featviz report</title><p>The report could not be "
                b"built; the details were written to the server log. Please try again.</p>")


def report_button(selection: Selection) -> None:
    """"Include my image" (on for samples, off for uploads and camera photos) and "Download report"."""
    state = st.session_state
    if state.get("_report_for") != (selection.image_digest, selection.image_source):
        state["_report_for"] = (selection.image_digest, selection.image_source)
        state[INCLUDE_KEY] = selection.image_source == "sample"
    channel = state.get("channel")
    build = functools.partial(_safe_build, selection, bool(state.get(INCLUDE_KEY)),
                              channel if isinstance(channel, int) else None, latest_cam_choice())
    name = export.export_filename(selection.model.name, selection.layer.name, selection.image_stem, "html")
    st.download_button(
        "Download report", data=build, file_name=name.replace(".html", "_report.html"),
        mime="text/html", icon=":material/description:", on_click="ignore", key="report_download",
        help="One HTML file that opens in any browser, also offline: the image as the model saw it, the model, "
        "its top 5, this layer's strongest channels, where it looks with its sanity check, and what the maps "
        "do not prove.",
    )
    st.checkbox(
        "Include my image", key=INCLUDE_KEY,
        help="Off: no pixel of your picture goes into the file (the maps are shown on their own). Even then, the "
        "maps of early layers can show the picture's outlines. On by default for samples only.",
    )
