"""Where the Exemplars page's pictures come from: the bundled examples (the first view: nothing to upload), a zip
upload, a folder given when featviz was started, or a result saved earlier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from featviz_core.exemplars import Exemplars
from featviz_core.exemplars.demo_collection import demo_collection, provenance
from featviz_core.images import Collection, image_digest, zip_collection
from featviz_core.images.collection import MAX_FILES, folder_collection, inside, resolve_subfolder
from featviz_core.models import LoadedModel
from ui.errors import guard
from ui.state import remember

__all__ = [
    "BUNDLED",
    "FOLDER",
    "RESULT",
    "ZIP",
    "bundled_source",
    "choose_source",
    "folder_source",
    "keep",
    "result_source",
    "sticky",
    "zip_source",
]

BUNDLED, ZIP, FOLDER, RESULT = "Bundled examples", "Zip file", "Folder on this computer", "Saved result (.npz)"


def sticky(key: str, default: Any) -> None:
    """Keep a widget's value when other pages run (Streamlit forgets widgets that are not drawn)."""
    state = st.session_state
    if key not in state:
        state[key] = state.get("_keep_" + key, default)


def keep(key: str) -> None:
    st.session_state["_keep_" + key] = st.session_state.get(key)


def choose_source(root: str | None) -> str:
    """The collection to read. First view: the folder featviz was started with, else the bundled examples."""
    sources = [BUNDLED, ZIP, *([FOLDER] if root else []), RESULT]
    first = FOLDER if root else BUNDLED
    sticky("ex_source", first)
    if st.session_state.get("ex_source") not in sources:
        st.session_state["ex_source"] = first
    def never_none() -> None:  # a click on the chosen segment unselects it: keep it chosen instead
        if st.session_state.get("ex_source") is None:
            st.session_state["ex_source"] = st.session_state.get("_keep_ex_source") or first

    source = st.segmented_control(
        "Images", sources, key="ex_source", on_change=never_none,
        help="The bundled examples (photos and drawn shapes that come with featviz), a zip file of your own "
        "images (it stays in memory), " + ("a folder on this computer, " if root else "")
        + "or a result saved earlier.",
    ) or first
    keep("ex_source")
    return source


def bundled_source() -> Collection:
    """The bundled examples, with a caption saying what they are and where they come from."""
    collection = demo_collection()
    st.caption(provenance(collection) + " Choose “Zip file” to search your own images.")
    return collection


def zip_source() -> Collection | None:
    state = st.session_state
    upload = st.file_uploader(
        "A zip file of your images", type=["zip"], key="ex_zip",
        help="Put the images in a folder (sub-folders are fine), compress it, and upload the .zip. PNG, JPEG, "
        "WebP, BMP, GIF, TIFF and DICOM files are read. It stays in memory for this session only: nothing is "
        "unpacked to disk.",
    )
    remember(upload, "_ex_zip_file")
    if not state.get("_ex_zip_file"):
        st.caption("Upload a zip file to start.")
        return None
    name, data = state["_ex_zip_file"]
    digest = image_digest(data)
    cached = state.get("_ex_zip_collection")
    if cached is None or cached[0] != digest:
        with guard("opening the zip file"):
            cached = (digest, zip_collection(data, name))
        state["_ex_zip_collection"] = cached
    return cached[1]


def folder_source(root: str) -> Collection | None:
    state = st.session_state
    base = Path(root).expanduser()
    sticky("ex_folder", "")
    relative = st.text_input(
        f"Folder inside {base.name}", key="ex_folder", placeholder="(all of it)",
        help=f"featviz was started with the folder {base}; type a folder inside it (e.g. ward3/2024), or leave "
        "this empty for all of it. Folders outside it cannot be opened from here.",
    )
    keep("ex_folder")
    with guard("opening the folder"):
        target = resolve_subfolder(base, relative)
        cached = state.get("_ex_folder_collection")
        if cached is None or cached[0] != str(target) or st.button("Look again for new files", key="ex_rescan"):
            cached = (str(target), folder_collection(target, root=base, max_files=MAX_FILES))
            state["_ex_folder_collection"] = cached
    return cached[1]


def result_source(model: LoadedModel, root: str | None) -> Exemplars | None:
    state = st.session_state
    upload = st.file_uploader(
        "A result file (.npz)", type=["npz"], key="ex_result_file",
        help="A file saved from this page, or written by python -m featviz_core.exemplars on the command line.",
    )
    remember(upload, "_ex_result")
    if not state.get("_ex_result"):
        st.caption("Upload a result file to see it.")
        return None
    _name, data = state["_ex_result"]
    with guard("reading the result file"):
        result = Exemplars.load(data)
    if result.model_key != model.key:
        st.warning(f"This result was made with {result.model_name}; choose that model in the sidebar to see its "
                   "pictures. The numbers are shown below.", icon=":material/warning:")
        return result
    if result.collection_key == demo_collection().key:  # made on the bundled examples: they are here too
        return result.with_images(demo_collection(), model.model_view)
    saved = Path(result.collection_root) if result.collection_root else None
    if root and saved is not None and inside(saved.resolve(), Path(root).expanduser().resolve()) and saved.is_dir():
        with guard("opening the folder of the result"):
            result = result.with_images(folder_collection(saved, root=Path(root).expanduser()), model.model_view)
    else:
        st.info("The pictures of this result are in a folder this app cannot open. Start featviz with that "
                "folder (make run IMAGES=/path/to/folder) to see them; the numbers are shown below.",
                icon=":material/info:")
    return result
