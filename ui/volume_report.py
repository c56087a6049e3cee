"""The Volumes page's "Download report": a 3-D model on the scan, with the three planes at the chosen slices
(:func:`featviz_core.report.volume_report_html`). Built only when the button is clicked, from the cached maps and
Grad-CAM; "Include my scan" is ticked for the generated phantom and not for uploads."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

import numpy as np
import streamlit as st

import featviz_core
from featviz_core import export
from featviz_core.cam import CamResult
from featviz_core.images import Volume
from featviz_core.models import LoadedModel
from featviz_core.report import volume_report_html

log = logging.getLogger("featviz")

INCLUDE_KEY = "volume_report_include_scan"
PHANTOM_NAME = "the generated CT phantom"


def _top_k(model: LoadedModel, result: CamResult, k: int = 5) -> list[tuple[str, float]]:
    names = model.categories or [str(i) for i in range(len(result.probabilities))]
    return [(names[i], float(result.probabilities[i])) for i in np.argsort(-result.probabilities)[:k]]


def _safe_build(model: LoadedModel, layer: str, maps: np.ndarray, volume: Volume, indices: dict[str, int],
                window: tuple[float, float], include: bool, name: str | None, result: CamResult) -> bytes:
    try:
        return volume_report_html(model, layer, maps, volume=volume, indices=indices, window=window,
                                  include_scan=include, scan_name=name, top_k=_top_k(model, result), cam=result,
                                  version=featviz_core.__version__)
    except Exception:  # noqa: BLE001 - a download must not end in a traceback; the log has the details
        log.exception("The volume report could not be built")
        return (b"<!DOCTYPE html><meta charset='utf-8'><title>featviz report</title><p>The report could not be "
                b"built; the details were written to the server log. Please try again.</p>")


def report_button(volume_key: str, volume: Volume, model: LoadedModel, layer: str, maps: np.ndarray,
                  result: CamResult, indices: Mapping[str, int], window: tuple[float, float]) -> None:
    """"Download report" and "Include my scan" (on for the phantom, off for an uploaded scan)."""
    state = st.session_state
    phantom = volume_key == "phantom"
    if state.get("_volume_report_for") != volume_key:
        state["_volume_report_for"] = volume_key
        state[INCLUDE_KEY] = phantom
    include = bool(state.get(INCLUDE_KEY))
    build = functools.partial(_safe_build, model, layer, maps, volume, dict(indices), window, include,
                              PHANTOM_NAME if phantom else None, result)
    name = export.export_filename(model.name, layer, "phantom" if phantom else "scan", "html")
    left, right = st.columns([1, 3], vertical_alignment="center")
    left.download_button(
        "Download report", data=build, file_name=name.replace(".html", "_report.html"), mime="text/html",
        icon=":material/description:", on_click="ignore", key="volume_report_download",
        help="One HTML file that opens in any browser, also offline: the scan in three planes at these slices, "
        "the model and its guesses, this layer's strongest channels at this depth, and Grad-CAM in three planes.",
    )
    right.checkbox(
        "Include my scan", key=INCLUDE_KEY,
        help="Off: no voxel of your scan, nor its description, goes into the file (Grad-CAM is shown on its own). "
        "Even then, the maps of early layers can show the scan's outlines. On by default for the phantom only.",
    )
