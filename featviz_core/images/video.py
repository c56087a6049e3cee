"""Clips: video bytes (mp4, mov, webm, mkv, avi) -> a colour clip :class:`~featviz_core.images.volume.Volume`,
and the clip assembly (frame sampling, shrinking, description) that DICOM cine files share.

PyAV (the FFmpeg bindings, package ``av``) decodes the first video stream from memory. The container is
recognised by its first bytes and handed to FFmpeg by name (``mov``, ``matroska`` or ``avi``), so FFmpeg
never guesses a playlist or concat format that could open other files or URLs, and any attempt to open a
second resource is refused. Frames become RGB ``(3, D, H, W)`` float32 in 0..255.

Bounds: at most :data:`~featviz_core.images.volume.MAX_CLIP_FRAMES` frames are kept, evenly spaced (every
k-th frame; k doubles while decoding when the container did not say how many frames it holds), frames are
shrunk so the clip fits :data:`~featviz_core.images.volume.MAX_VOXELS`, and decoding stops after
:data:`MAX_DECODED_FRAMES` frames. ``description`` says what was kept.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ImageLoadError
from . import volume as vol
from .volume import Volume

__all__ = ["MAX_DECODED_FRAMES", "VIDEO_EXTENSIONS", "clip_shrink", "clip_volume", "is_video", "load_video"]

MAX_DECODED_FRAMES: int = 3_000
"""Most frames decoded from one video (100 s at 30 fps): later frames are not read."""

VIDEO_EXTENSIONS: tuple[str, ...] = ("mp4", "m4v", "mov", "webm", "mkv", "avi")
"""File name extensions of the video containers featviz reads."""

_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def is_video(data: bytes, filename: str | None = None) -> bool:
    """True when ``data`` starts like an mp4/mov, webm/mkv or avi file, or its name ends like one."""
    if _container_format(data):
        return True
    return bool(filename and filename.lower().rpartition(".")[2] in VIDEO_EXTENSIONS)


def load_video(data: bytes, name: str) -> Volume:
    """Decode a video's first video stream into a clip; ``name`` is the file's name for messages."""
    try:
        import av
    except ImportError:
        raise ImageLoadError(
            f"Could not open {name} because video support (the av package) is not installed."
        ) from None
    form = _container_format(data)
    if form is None:
        raise _unreadable(name)
    try:
        container = av.open(
            io.BytesIO(data), mode="r", format=form, io_open=_refuse_io, metadata_errors="ignore"
        )
    except Exception:
        raise _unreadable(name) from None
    with container:
        if not container.streams.video:
            raise ImageLoadError(
                f"Could not open {name} because it holds no video picture: choose a video clip."
            )
        stream = container.streams.video[0]
        codec = stream.codec_context
        width, height = (int(getattr(codec, "width", 0) or 0), int(getattr(codec, "height", 0) or 0))
        _check_frame(width, height, name)
        rate = _rate(stream)
        try:
            frames, stride, decoded, shrink, stopped = _decode(container, stream, rate, name)
        except (ImageLoadError, MemoryError):
            raise
        except Exception:
            raise _unreadable(name) from None
    if not frames:
        raise ImageLoadError(
            f"Could not open {name} because no frame of it could be decoded: export it again."
        )
    notes = [f"only the first {decoded} frames were read" if stopped else None]
    return clip_volume(
        frames, label="Video clip", rate=rate, stride=stride, total=decoded, shrink=shrink, notes=notes
    )


def clip_shrink(height: int, width: int, channels: int) -> int:
    """The factor by which frames of this size shrink so that the most frames a clip keeps fit the budget."""
    _, fy, fx = vol.reduction_factors(
        (vol.MAX_CLIP_FRAMES, height, width), (1e9, 1.0, 1.0), channels=channels
    )
    return max(fy, fx)


def clip_volume(
    frames: Sequence[np.ndarray],
    *,
    label: str,
    rate: float | None,
    stride: int,
    total: int,
    shrink: int,
    modality: str | None = None,
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    window: tuple[float, float] | None = None,
    notes: Sequence[str | None] = (),
) -> Volume:
    """Stack the kept frames ((H, W) grey or (H, W, C) colour) into a clip that says what was kept.

    ``stride`` is the step between kept frames of the ``total`` read, ``rate`` the source's frames per second
    (the clip's ``fps`` is ``rate / stride``) and ``shrink`` how much each frame was shrunk.
    """
    first = frames[0]
    shape = (
        (len(frames), *first.shape[:2])
        if first.ndim == 2
        else (first.shape[2], len(frames), *first.shape[:2])
    )
    array = np.empty(shape, dtype=np.float32)
    for index, frame in enumerate(frames):
        array[..., index, :, :] = frame if frame.ndim == 2 else np.moveaxis(frame, 2, 0)
    fps = rate / stride if rate else None
    height, width = shape[-2:]
    words = [label, f"{len(frames)} frame{'s' if len(frames) != 1 else ''} of {width}×{height}"]
    words[1] += f" at {fps:.3g} fps" if fps else ""
    if stride > 1:
        words.append(
            f"every {_ordinal(stride)} of {total} frames kept (featviz shows at most {vol.MAX_CLIP_FRAMES})"
        )
    if shrink > 1:
        words.append(f"frames shrunk {shrink}× to stay within featviz's memory limit")
    return Volume(
        array=array,
        spacing=(1.0 / fps if fps else 1.0, float(pixel_spacing[0]), float(pixel_spacing[1])),
        kind="clip",
        modality=modality,
        window=window or (127.5, 255.0),
        description=" · ".join([*words, *(note for note in notes if note)]),
        fps=fps,
    )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _decode(
    container: Any, stream: Any, rate: float | None, name: str
) -> tuple[list[np.ndarray], int, int, int, bool]:
    """Keep every ``stride``-th RGB frame, doubling ``stride`` whenever more than the cap were kept.

    Returns the kept frames, the final stride, how many frames were decoded, the shrink factor, and
    whether decoding stopped at :data:`MAX_DECODED_FRAMES`.
    """
    expected = _expected_frames(container, stream, rate)
    stride = max(1, math.ceil(expected / vol.MAX_CLIP_FRAMES))
    kept: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    shrink = 1
    decoded = 0
    for frame in container.decode(stream):
        if decoded >= MAX_DECODED_FRAMES:
            return kept, stride, decoded, shrink, True
        if decoded % stride == 0:
            if size is None:
                _check_frame(frame.width, frame.height, name)
                shrink = clip_shrink(frame.height, frame.width, 3)
                size = (max(1, frame.width // shrink), max(1, frame.height // shrink))
            picture = frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA")
            kept.append(picture)
            if len(kept) > vol.MAX_CLIP_FRAMES:
                kept, stride = kept[::2], stride * 2
        decoded += 1
    return kept, stride, decoded, shrink, False


def _check_frame(width: int, height: int, name: str) -> None:
    if width * height > vol.MAX_FRAME_PIXELS:
        raise ImageLoadError(
            f"Could not open {name} because its frames are {width}×{height} pixels (featviz reads up to "
            f"{vol.MAX_FRAME_PIXELS:,}): export the clip at a lower resolution."
        )


def _expected_frames(container: Any, stream: Any, rate: float | None) -> int:
    """The frame count the container states, or one estimated from its duration; 0 when unknown."""
    if stream.frames:
        return int(stream.frames)
    seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
    seconds = seconds or (container.duration or 0) / 1_000_000  # the container's duration is in microseconds
    return round(seconds * rate) if rate else 0


def _rate(stream: Any) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        try:
            value = float(rate)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(value) and 0 < value < 10_000:
            return value
    return None


def _container_format(data: bytes) -> str | None:
    """The FFmpeg demuxer for ``data``'s container, from its first bytes; None for anything else."""
    if data[4:8] in _MP4_BOXES:
        return "mov"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    return None


def _refuse_io(url: str, flags: int, options: dict) -> Any:
    """FFmpeg asks this to open any second file or URL a container points to: featviz never does."""
    raise OSError("featviz reads only the uploaded file")


def _unreadable(name: str) -> ImageLoadError:
    return ImageLoadError(
        f"Could not read {name} as a video: the file is damaged or in a format featviz does not read. "
        "Save it as .mp4 (H.264), .webm or .avi and try again."
    )
