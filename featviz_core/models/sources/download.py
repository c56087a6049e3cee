"""Downloading weight files: atomically, with progress, checked, and failing with one plain sentence.

Shared by the model sources that fetch files from an address (torchvision's download.pytorch.org; timm
weights that are not on the Hugging Face hub). Nothing is fetched unless a user asks for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from ...errors import ModelLoadError

__all__ = ["ProgressCallback", "download", "fetch", "offline", "why"]

_log = logging.getLogger("featviz")

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total_or_None)`` while weights download."""


def offline() -> bool:
    """``FEATVIZ_OFFLINE=1``: never try a download (hospital networks, tests)."""
    return os.environ.get("FEATVIZ_OFFLINE", "") not in ("", "0", "false")


def _open_url(url: str, timeout: float) -> Any:
    """Open ``url`` for reading (a seam for tests that simulate a network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "featviz"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - https URLs from torchvision


def download(url: str, dest: str, progress: ProgressCallback | None, timeout: float = 30.0) -> None:
    """Download ``url`` to ``dest`` atomically, checking torchvision's hash prefix in the file name."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), suffix=".partial")
    sha = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, _open_url(url, timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            if progress is not None:
                progress(0, total)
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        stem = os.path.splitext(os.path.basename(dest))[0]
        expected = stem.rsplit("-", 1)[-1] if "-" in stem else ""
        if expected and all(c in "0123456789abcdef" for c in expected):
            if not sha.hexdigest().startswith(expected):
                raise ModelLoadError(
                    f"The downloaded weights for {os.path.basename(dest)} are damaged (checksum mismatch). "
                    "Try again, or use the offline demo model."
                )
        shutil.move(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def why(exc: BaseException, cache: str = "torch") -> str:
    """A download failure in plain words (the technical detail goes to the log)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return "this computer could not reach the internet"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "the download took too long"
    if isinstance(reason, ConnectionError):
        return "the connection was refused or interrupted"
    if isinstance(exc, OSError) and not isinstance(exc, urllib.error.URLError):
        return f"the file could not be saved in the {cache} cache"
    return "the network is not available"


def fetch(url: str, path: str, progress: ProgressCallback | None, what: str) -> str:
    """``path``, downloading ``url`` there first unless it is already there; failures in one sentence.

    ``what`` names the weights in the message (``"the pretrained weights of resnet18"``).
    """
    if os.path.isfile(path):
        return path
    if offline():
        raise ModelLoadError(
            f"{what[0].upper()}{what[1:]} are not on this machine and downloads are switched off here "
            f"(FEATVIZ_OFFLINE). Use the offline demo model, or an administrator can place the file at {path}."
        )
    try:
        download(url, path, progress)
    except ModelLoadError:
        raise
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        _log.warning("download of %s failed: %r", url, exc)
        raise ModelLoadError(
            f"Could not download {what}: {why(exc)}. Check the internet connection, or use the offline "
            f"demo model, or upload your own checkpoint; an administrator can also place the file at {path}."
        ) from None
    return path
