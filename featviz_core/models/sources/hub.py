"""The Hugging Face hub, shared by the sources that fetch from it (timm weights, transformers models).

huggingface_hub's own cache (``$HF_HOME/hub``, read from the environment at each call), download progress
reported as ``progress(done, total)``, blobs checked against the SHA-256 the hub names them by, and
failures told in plain words. ``FEATVIZ_OFFLINE=1`` switches huggingface_hub off too.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from ...errors import ModelLoadError
from .download import ProgressCallback, offline

__all__ = ["hf_cache_dir", "hub_failure_reason", "hub_progress_bar", "verify_blob"]

if offline():  # huggingface_hub reads HF_HUB_OFFLINE once, when first imported
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def hf_cache_dir() -> str:
    """huggingface_hub's cache folder, read from the environment now (tests and admins may change it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return os.path.join(home, "hub")


def hub_progress_bar(
    progress: ProgressCallback | None, offset: int = 0, total: int | None = None
) -> type[Any] | None:
    """A tqdm class that reports one file's download to ``progress(done, total)``.

    For a download of several files, ``offset`` is the bytes of the files before this one and ``total``
    the bytes of them all; by default the file's own count and size are reported.
    """
    if progress is None:
        return None
    from tqdm.auto import tqdm

    class _Bar(tqdm):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # nothing on the terminal; the app draws its own bar
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)
            self._report()

        def _report(self) -> None:
            own = int(self.total) if self.total else None
            progress(offset + self._done, total if total is not None else own)

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            self._report()
            return None

    return _Bar


def verify_blob(path: str) -> None:
    """The hub names a large file's blob by its SHA-256: check the content against it (a damaged file is
    deleted and refused)."""
    blob = os.path.realpath(path)
    expected = os.path.basename(blob)
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        return  # a small (git) file: the hub names it by its git hash, which huggingface_hub checked
    sha = hashlib.sha256()
    with open(blob, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    if sha.hexdigest() != expected:
        os.remove(blob)
        raise ModelLoadError(
            "The downloaded weights are damaged (checksum mismatch) and were deleted. Try the download again."
        )


_UNREACHABLE = ("offline", "localentrynotfound", "connect", "resolv", "resolution", "unreachable", "network",
                "outgoing traffic")


def hub_failure_reason(exc: BaseException) -> str:
    """Why a hub download failed, in plain words (the technical detail goes to the log)."""
    text = f"{type(exc).__name__} {exc}".lower()
    if any(marker in text for marker in _UNREACHABLE):
        return "this computer could not reach the internet"
    if "timeout" in text or "timed out" in text:
        return "the download took too long"
    if isinstance(exc, OSError):
        return "the file could not be saved in the Hugging Face cache"
    return "the hub did not answer as expected"
