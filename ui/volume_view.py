"""The viewer of a loaded volume or clip (pages/volume.py): a window, three planes with their sliders and
crosshair, or a clip's frame and filmstrip.

:func:`viewer` is a fragment: moving a slider or changing the window redraws only the viewer, from the cached
:class:`Volume` (ui/cache.py), sending the browser the three 2-D slices, never the volume. The chosen slices
live in session state under :data:`SLICE_KEYS` (:func:`slice_indices` reads them), so what is drawn at
those slices later (a 3-D model's feature maps, its CAM on the three planes) can follow the same choice with
the same figure builder (:func:`featviz_core.figures.plane_figure`).
"""

from __future__ import annotations

import streamlit as st

from featviz_core import export, figures
from featviz_core.images import PLANES, WINDOW_PRESETS, Volume

from . import cache
from .volume_model_view import clip_model_view, model_view

SLICE_KEYS = {plane: f"volume_{plane}" for plane in PLANES}
"""Session-state key of each plane's slice slider."""
FRAME_KEY = "volume_frame"
WINDOW_KEY = "volume_window"
LEVEL_KEY = "volume_level"
WIDTH_KEY = "volume_width"
CROSSHAIR_KEY = "volume_crosshair"
KEYS = (*SLICE_KEYS.values(), FRAME_KEY, WINDOW_KEY, LEVEL_KEY, WIDTH_KEY, CROSSHAIR_KEY)
"""Every widget key of the viewer (kept across page switches: ui/state.py PAGE_KEYS)."""
_SHOWN = "_volume_shown"  # which volume the keys above belong to

TITLES = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}
TOWARDS = {
    "axial": "Higher numbers go up, towards the head.",
    "coronal": "Higher numbers go towards the front of the body.",
    "sagittal": "Higher numbers go towards the patient's right (the left of the axial picture).",
}
WINDOW_LABELS = {
    "file": "Suggested for this scan",
    "auto": "Auto (the 1st to 99th percentile)",
    "lung": "Lung",
    "mediastinum": "Mediastinum (soft tissue)",
    "bone": "Bone",
    "brain": "Brain",
    "custom": "Custom level and width",
}
FILMSTRIP_FRAMES = 8
HEIGHT = 380


def maybe_hu(volume: Volume) -> bool:
    """Whether the CT windows (in HU) may fit: values in HU, or a volume that does not say (NIfTI)."""
    return volume.units == "HU" or (volume.kind == "volume" and volume.modality is None)


def window_choices(volume: Volume) -> list[str]:
    """The windows offered: CT presets only where values may be HU; "file" when the loader suggests a window
    (the file's own, or a first guess) that is not one of the presets."""
    hu = maybe_hu(volume)
    stored = volume.window is not None and not (hu and volume.window in WINDOW_PRESETS.values())
    return [*(["file"] if stored else []), "auto", *(WINDOW_PRESETS if hu else ()), "custom"]


def default_window(volume: Volume) -> str:
    for name, preset in WINDOW_PRESETS.items():
        if maybe_hu(volume) and volume.window == preset:
            return name
    return "file" if volume.window is not None else "auto"


def window_of(choice: str, volume_key: str, volume: Volume) -> tuple[float, float]:
    """(level, width) of a window choice; "custom" reads the level and width inputs."""
    if choice == "file" and volume.window is not None:
        level, width = volume.window
    elif choice in WINDOW_PRESETS:
        level, width = WINDOW_PRESETS[choice]
    elif choice == "custom":
        level, width = st.session_state[LEVEL_KEY], st.session_state[WIDTH_KEY]
    else:
        level, width = cache.volume_auto_window(volume_key, volume)
    return float(level), max(float(width), 1e-6)


def _start(volume_key: str, volume: Volume) -> None:
    """A newly shown volume: every slider in the middle, its own window (widget values of the last one would
    be out of range)."""
    state = st.session_state
    if state.get(_SHOWN) == volume_key and all(key in state for key in (WINDOW_KEY, LEVEL_KEY, WIDTH_KEY)):
        return
    for plane, key in SLICE_KEYS.items():
        state[key] = volume.shape3d[PLANES.index(plane)] // 2
    state[FRAME_KEY] = volume.shape3d[0] // 2
    state[WINDOW_KEY] = default_window(volume)
    state[LEVEL_KEY], state[WIDTH_KEY] = window_of(state[WINDOW_KEY], volume_key, volume)
    state.setdefault(CROSSHAIR_KEY, True)
    state[_SHOWN] = volume_key


def _window_changed(volume_key: str, volume: Volume) -> None:
    """A preset chosen: the custom inputs start from it."""
    state = st.session_state
    if state[WINDOW_KEY] != "custom":
        state[LEVEL_KEY], state[WIDTH_KEY] = window_of(state[WINDOW_KEY], volume_key, volume)


def slice_indices(volume: Volume) -> dict[str, int]:
    """Each plane's chosen slice (the middle until a slider moves)."""
    state = st.session_state
    return {plane: int(state.get(key, volume.shape3d[PLANES.index(plane)] // 2)) for plane, key in SLICE_KEYS.items()}


def _window_controls(volume_key: str, volume: Volume) -> tuple[float, float]:
    units = f" ({volume.units})" if volume.units else ""
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1.4], vertical_alignment="bottom")
    choice = c1.selectbox(
        "Window", window_choices(volume), key=WINDOW_KEY, format_func=WINDOW_LABELS.get,
        on_change=_window_changed, args=(volume_key, volume),
        help="Which values run from black to white. Lung, mediastinum, bone and brain are the usual CT windows "
             "(they assume values in Hounsfield units).",
    )
    custom = choice == "custom"
    c2.number_input(f"Level{units}", key=LEVEL_KEY, step=10.0, disabled=not custom, format="%g",
                    help="The value shown mid-grey: the centre of the window.")
    c3.number_input(f"Width{units}", key=WIDTH_KEY, min_value=1e-6, step=10.0, disabled=not custom, format="%g",
                    help="How many values the grey scale spans: narrower shows more contrast.")
    if volume.kind == "volume":
        c4.toggle("Show where the planes cut", key=CROSSHAIR_KEY,
                  help="Lines in each picture where the two other planes cut it, in those planes' colours.")
    return window_of(choice, volume_key, volume)


def _planes(volume_key: str, volume: Volume, window: tuple[float, float]) -> None:
    indices = slice_indices(volume)
    crosshair = bool(st.session_state.get(CROSSHAIR_KEY, True))
    for column, plane in zip(st.columns(3), PLANES, strict=True):
        count = volume.shape3d[PLANES.index(plane)]
        index = indices[plane]
        fig = figures.plane_figure(
            volume.slice(plane, index), volume.slice_spacing(plane), plane=plane, index=index, window=window,
            units=volume.units, crosshair=figures.cut_lines(volume, plane, indices) if crosshair else None,
            sides=figures.ORIENTATION[plane], title=f"{TITLES[plane]} · slice {index} (0–{count - 1})",
            height=HEIGHT,
        )
        with column:
            st.plotly_chart(fig, width="stretch", key=f"volume_chart_{plane}", config=export.PLOTLY_CONFIG)
            if count > 1:
                st.slider(f"{TITLES[plane]} slice", 0, count - 1, key=SLICE_KEYS[plane], help=TOWARDS[plane])
            else:
                st.caption(f"One {plane} slice only")


def _clip(volume_key: str, volume: Volume, window: tuple[float, float] | None) -> int:
    count = volume.shape3d[0]
    index = 0
    if count > 1:
        index = st.slider("Frame", 0, count - 1, key=FRAME_KEY, help="Which frame of the clip is shown large.")
    seconds = f" · {index / volume.fps:.2f} s" if volume.fps else ""
    title = f"Frame {index} (0–{count - 1}){seconds}"
    picture = volume.slice("axial", index)
    if volume.channels == 3:
        fig = figures.frame_figure(picture, index=index, title=title)
    else:
        fig = figures.plane_figure(picture, plane="frame", index=index, window=window, units=volume.units,
                                   title=title, height=480)
    st.plotly_chart(fig, width="stretch", key="volume_chart_frame", config=export.PLOTLY_CONFIG)
    numbers = figures.filmstrip_indices(count, FILMSTRIP_FRAMES)
    st.caption(f"{len(numbers)} evenly spaced frames of {count} (the frame shown above in bold)")
    strip = figures.filmstrip_figure([volume.slice("axial", i) for i in numbers], numbers, window=window,
                                     current=index)
    st.plotly_chart(strip, width="stretch", key="volume_filmstrip", config=export.PLOTLY_CONFIG)
    return index


@st.fragment
def viewer(volume_key: str, volume: Volume) -> None:
    """The window controls and the planes (a volume) or the frame and the filmstrip (a clip)."""
    _start(volume_key, volume)
    if volume.kind == "clip" and volume.channels == 3:
        clip_model_view(volume_key, volume, _clip(volume_key, volume, None), None)
        return
    window = _window_controls(volume_key, volume)
    if volume.kind == "clip":
        clip_model_view(volume_key, volume, _clip(volume_key, volume, window), window)
    else:
        _planes(volume_key, volume, window)
        if volume.channels == 1:
            model_view(volume_key, volume, slice_indices(volume), window)
