"""The door for files that hold more than one picture: :func:`load_volume` (NIfTI, a zip of DICOM slices, a
multi-frame DICOM file, a video) and :func:`list_series` (the series of a DICOM zip, for a page to offer)."""

from __future__ import annotations

import logging

from ..errors import ImageLoadError
from .dicom_frames import load_dicom_file
from .dicom_series import list_zip_series, load_dicom_zip
from .nifti import load_nifti, nifti_version
from .video import is_video, load_video
from .volume import ACCEPTED, SeriesInfo, Volume, display_name

__all__ = ["list_series", "load_volume"]

_log = logging.getLogger(__name__)


def load_volume(data: bytes, filename: str | None = None, *, series: str | None = None) -> Volume:
    """Read a volume or a clip from ``data`` (kept in memory); ``filename`` helps to recognise it.

    ``series`` picks one series of a DICOM zip by its SeriesInstanceUID or exact description; a zip that
    holds several series without it raises :class:`SeriesChoiceError` listing them.
    """
    name = display_name(filename)
    data = bytes(data)
    try:
        return _dispatch(data, filename or "", name, series)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(
            f"Could not open {name} because this computer ran out of memory while reading it: "
            "close other work, or send a smaller scan."
        ) from None
    except Exception:
        _log.warning("unexpected failure while reading a volume", exc_info=True)
        raise ImageLoadError(
            f"Could not read {name}: the file is damaged or of a kind featviz does not support. "
            f"featviz opens {ACCEPTED}."
        ) from None


def list_series(data: bytes) -> list[SeriesInfo]:
    """The DICOM series in a zip, largest first: what a page offers before calling :func:`load_volume`."""
    return list_zip_series(bytes(data), "the zip file")


def _dispatch(data: bytes, filename: str, name: str, series: str | None) -> Volume:
    lower = filename.lower()
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return load_dicom_zip(data, name, series)
    if data[:2] == b"\x1f\x8b" or nifti_version(data):
        return load_nifti(data, name)
    if data[128:132] == b"DICM" or lower.endswith(".dcm"):
        return load_dicom_file(data, name)
    if is_video(data, filename):
        return load_video(data, name)
    hint = " (a .hdr/.img pair: save it as a single .nii file)" if lower.endswith((".hdr", ".img")) else ""
    raise ImageLoadError(f"Could not open {name}{hint}: featviz opens {ACCEPTED}.")
