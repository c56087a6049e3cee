"""Server memory over many distinct uploads: does the app's RSS plateau within its cache bounds?

The app (resnet18, see :mod:`bench.browser`) is driven in Chromium: the "Upload" source, then ``uploads``
distinct photo-like JPEGs one after another, each waited for until its maps are drawn and the run is
over. The server's resident set size (psutil when installed, else ``VmRSS`` of ``/proc/<pid>/status``) is
read before the first upload and after every one (and its anonymous part, ``RssAnon``: what the app
allocated, without the shared library pages of torch); the curve is reported every ``every`` uploads.

Bounds (``ui/cache.py``): ``MODEL_ENTRIES`` models, ``EXTRACTION_ENTRIES`` extractions (one per upload
here), ``IMAGE_ENTRIES`` decoded images. Once more distinct images than the largest bound have been
uploaded, every cache is full, so RSS should stop growing: "plateau" means the least-squares slope of
RSS over the uploads after that is at most ``LEAK_SLOPE_MB`` per upload. With ``EXTRACTION_ENTRIES`` = 32,
50 or even 100 uploads leave too few points after the caches fill to tell the allocator's slow swings
(±40 MB over tens of uploads) from growth, so the default is 200 uploads (the curve still has every 5).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .browser import app_with_resnet18, browser_page, choose_upload, chromium_available, photo_bytes, upload

__all__ = ["rss_bytes", "cache_bounds", "plateau", "run"]


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes."""
    try:
        import psutil  # type: ignore[import-not-found]

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def rss_anon_bytes(pid: int) -> int | None:
    """Anonymous (private, non-file) resident memory of ``pid``: what the app itself allocated."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cache_bounds() -> dict[str, int | str]:
    """The cache bounds the app runs with (read from ui/cache.py)."""
    from ui import cache

    names = ("MODEL_ENTRIES", "EXTRACTION_ENTRIES", "IMAGE_ENTRIES", "EXTRACTION_BYTES", "IMAGE_BYTES")
    return {name: getattr(cache, name) for name in names if isinstance(getattr(cache, name, None), int | str)}


LEAK_SLOPE_MB = 0.25
"""Plateau: after the caches are full, RSS grows by at most this many MB per upload (least-squares slope).
A leaked decoded 640x480 image plus its extraction would cost about 1.3 MB per upload; allocator jitter
(tens of MB up and down) averages out in the slope."""


def plateau(curve_mb: list[float], full_after: int, settle: int = 3) -> dict[str, Any]:
    """Fit a line to the RSS after upload ``full_after + settle`` (index = upload number): its slope."""
    first = full_after + settle
    after = curve_mb[first:]
    early = (curve_mb[min(first, len(curve_mb) - 1)] - curve_mb[0]) if curve_mb else 0.0
    out: dict[str, Any] = {
        "caches_full_after_upload": full_after,
        "growth_until_full_mb": round(early, 1),
        "slope_limit_mb_per_upload": LEAK_SLOPE_MB,
    }
    if len(after) < 10:
        out.update({"plateau": None, "note": f"fewer than 10 uploads after upload {first}: no verdict"})
        return out
    x = np.arange(first, first + len(after), dtype=np.float64)
    slope = float(np.polyfit(x, np.asarray(after, dtype=np.float64), 1)[0])
    out.update(
        {
            "plateau": slope <= LEAK_SLOPE_MB,
            "slope_mb_per_upload": round(slope, 3),
            "uploads_fitted": len(after),
            "range_after_full_mb": [round(min(after), 1), round(max(after), 1)],
            "note": None,
        }
    )
    return out


def run(
    uploads: int = 200,
    every: int = 5,
    seed: int = 5000,
    server_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``uploads`` distinct uploads into a fresh server (``server_env``: extra environment for it)."""
    if not chromium_available():
        return {"skipped": "Chromium not found (/usr/bin/chromium or $FEATVIZ_CHROMIUM)"}
    bounds = cache_bounds()
    full_after = max(int(bounds["EXTRACTION_ENTRIES"]), int(bounds["IMAGE_ENTRIES"]))
    with app_with_resnet18(server_env) as app, browser_page(app) as page:
        pid = app.process.pid
        choose_upload(page)
        curve = [rss_bytes(pid)]
        anon = [rss_anon_bytes(pid)]
        times = []
        for i in range(uploads):
            timing = upload(page, photo_bytes(seed + i), f"memory{i}.jpg")
            times.append(timing["idle_s"])
            curve.append(rss_bytes(pid))
            anon.append(rss_anon_bytes(pid))
        passes = app.forward_count()
    mb = [b / 2**20 for b in curve]
    anon_mb = [b / 2**20 if b is not None else None for b in anon]

    def point(i: int) -> dict[str, Any]:
        a = anon_mb[i]
        return {"uploads": i, "rss_mb": round(mb[i], 1), "anon_mb": round(a, 1) if a is not None else None}

    indices = list(range(0, len(mb), every))
    if indices[-1] != len(mb) - 1:
        indices.append(len(mb) - 1)
    points = [point(i) for i in indices]
    return {
        "uploads": uploads,
        "server_env": server_env or {},
        "image": "640x480 JPEG, distinct per upload",
        "cache_bounds": bounds,
        "rss_source": "psutil" if _has_psutil() else "/proc/<pid>/status VmRSS",
        "curve": points,
        "start_mb": round(mb[0], 1),
        "end_mb": round(mb[-1], 1),
        "peak_mb": round(max(mb), 1),
        "analysis": plateau(mb, full_after),
        "analysis_anon": plateau(anon_mb, full_after) if None not in anon_mb else None,
        "forward_passes_logged": passes,
        "median_upload_to_idle_s": sorted(times)[len(times) // 2] if times else None,
    }


def _has_psutil() -> bool:
    try:
        import psutil  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True
