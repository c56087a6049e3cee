"""The download button and its in-app progress bar, shared by the sources that fetch weights (ImageNet models
from torchvision and timm, Hugging Face models): nothing is fetched until the user presses the button."""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from featviz_core import FeatvizError
from featviz_core.models.sources.download import ProgressCallback, offline

__all__ = ["download_with_progress", "weights_gate"]


def download_with_progress(label: str, size: str, fetch: Callable[[ProgressCallback], object]) -> None:
    """Run ``fetch(progress)`` under a progress bar that counts megabytes; the bar goes when it ends."""
    bar = st.progress(0.0, text=f"Downloading {label} weights ({size})…")
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        now = time.monotonic()
        if total and (now - last[0] > 0.1 or done >= total):
            last[0] = now
            bar.progress(min(done / total, 1.0), text=f"Downloading {label}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

    try:
        fetch(progress)
    finally:
        bar.empty()


def weights_gate(label: str, size: str, cached: bool, fetch: Callable[[ProgressCallback], object],
                 where: str, auto: bool = False) -> bool:
    """True when the weights are on this machine (downloading them if the user presses the button).

    Offline (``FEATVIZ_OFFLINE``) it says so in one sentence; a failed download is one sentence too.
    """
    if cached:
        return True
    if offline():
        st.warning(f"{label}'s weights are not on this machine and downloads are switched off here.")
        return False
    if auto or st.button(
        f"Download {label} weights ({size})",
        help=f"Fetches the official weights once from {where} and keeps them in the cache on this server. "
        "Nothing else is ever downloaded, and your images never leave this computer.",
        type="primary",
    ):
        try:
            download_with_progress(label, size, fetch)
        except FeatvizError as exc:
            st.error(str(exc))
            return False
        return True
    st.caption(f"{label}'s pretrained weights are not downloaded yet.")
    return False
