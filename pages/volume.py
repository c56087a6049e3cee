"""Volumes and clips: a scan (CT, MR) in three planes, or a clip frame by frame, from the phantom or a file."""

from __future__ import annotations

import streamlit as st

from featviz_core.images import VOLUME_EXTENSIONS, Volume, image_digest, phantom_nifti_bytes, phantom_volume
from featviz_core.images.phantom import PHANTOM_FILENAME
from ui import cache, volume_view
from ui.errors import guard
from ui.router import ensure_routed

ensure_routed()

SOURCES = {"phantom": "Sample CT (phantom)", "upload": "Upload"}
HOW_TO_READ = """
A scan is a stack of pictures. Here it is cut three ways, each at the slice chosen under it:

- **Axial** (red frame): across the body, as if looking up from the feet. The patient's **right is on the
  left** of the picture (R), the front (A) at the top, as on a hospital viewer.
- **Coronal** (green frame): from the front, the head (S) at the top.
- **Sagittal** (yellow frame): from the side, the front (A) on the left, the head at the top.

The coloured lines show where the two other cuts pass; they cross at the same point of the body in all
three pictures. Pixels keep their real size in millimetres, so thick slices look stretched, not squeezed.

**The window** sets which values run from black to white. A CT value is in Hounsfield units (HU): air
−1000, fat about −100, water 0, soft tissue 20–80, bone 400 and more. The *lung* window shows the lungs'
detail (everything denser is white), *mediastinum* soft tissue, *bone* bone, *brain* the brain's small
differences. *Level* is the value shown mid-grey, *width* how many values the grey scale spans. The window
changes only the colours: hover any pixel for its exact value.

A clip (a video or a multi-frame file) shows one frame at a time; the strip below shows evenly spaced frames.
Files stay in this computer's memory and are never written to disk or sent anywhere else.
"""


def choose_file() -> tuple[bytes, str] | None:
    """The uploaded file's bytes and name; None for the phantom, or while nothing is uploaded (then stop)."""
    source = st.segmented_control(
        "Source", list(SOURCES), key="volume_source", default="phantom", format_func=SOURCES.get,
        help="A generated CT of a torso (no file needed), or a file of yours, kept in memory only.",
    ) or "phantom"
    if source == "phantom":
        st.download_button(
            "Download the phantom (.nii.gz)", data=phantom_nifti_bytes, file_name=PHANTOM_FILENAME,
            mime="application/gzip", icon=":material/download:", on_click="ignore",
            help="The same scan as a NIfTI file, to try the upload or another viewer.",
        )
        return None
    upload = st.file_uploader(
        "Upload a scan or a clip", type=list(VOLUME_EXTENSIONS), key="volume_upload",
        help="NIfTI (.nii, .nii.gz), a zip of one DICOM series (or several: you choose one), a multi-frame "
             "DICOM file, or a video (.mp4, .webm, .avi, .mov). Kept in memory for this session only.",
    )
    if upload is None:
        st.info("Upload a NIfTI file, a zip of DICOM slices, a multi-frame DICOM file or a video.",
                icon=":material/upload:")
        st.stop()
    return upload.getvalue(), upload.name


def load(chosen: tuple[bytes, str] | None) -> tuple[str, Volume]:
    """The volume to show and its cache key: the phantom (in HU, built once), or the upload, read once per
    digest of its bytes (and series)."""
    if chosen is None:
        return "phantom", phantom_volume()
    data, name = chosen
    digest = image_digest(data)
    series = choose_series(data, digest)
    with guard("reading the file"):
        return f"{digest}|{series or ''}", cache.volume(digest, name, series, data)


def choose_series(data: bytes, digest: str) -> str | None:
    """For a zip of several DICOM series: the chosen one's UID (None when there is only one, or no zip)."""
    if data[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        return None
    with guard("reading the zip file"):
        series = cache.volume_series(digest, data)
    if len(series) < 2:
        return None
    labels = {info.uid: info.label for info in series}
    if st.session_state.get("volume_series") not in labels:
        st.session_state["volume_series"] = series[0].uid
    return st.selectbox(
        f"This zip holds {len(series)} series: choose one", list(labels), key="volume_series",
        format_func=labels.get, help="Each series is one scan (e.g. a scout, thin and thick slices).",
    )


def main() -> None:
    st.title("Volumes and clips")
    description = st.empty()  # the scan's description, under the title once it is read
    key, volume = load(choose_file())
    description.caption(volume.description)
    with st.expander("How to read this", icon=":material/help:"):
        st.markdown(HOW_TO_READ)
    volume_view.viewer(key, volume)


main()
