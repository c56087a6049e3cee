"""Process settings for serving the app on small shared machines (2 cores, Community Cloud).

Must run before torch is imported for the first time (app.py does it first thing).
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_ARENA_MAX = -8  # glibc mallopt parameter
_PYTHON_DEFAULT_SWITCH_S = 0.005
_SWITCH_S = 0.001
_tuned = False


def tune_process() -> None:
    """Make the model fast under CPU contention and keep memory flat; harmless where unsupported.

    - ``OMP_WAIT_POLICY=PASSIVE``: torch's OpenMP threads sleep instead of spinning while they wait. With two
      cores shared by the browser, other sessions or neighbours, spinning made a resnet18 forward pass
      4–10× slower (bench: 24 ms idle -> 197 ms with one core busy, 43 ms with PASSIVE).
    - Python's thread switch interval 5 ms -> 1 ms: the server's event loop (websocket messages, the browser's
      requests for Streamlit's JavaScript) shares the interpreter with the script that builds a page; while
      that script computes, each message and file waited up to 5 ms per hand-over, several per message, and a
      first visit's forty messages and sixty files queued behind the page being built (bench/floor.py: the
      first picture 2.5 -> 2.1 s, the interactive map 3.9 -> 3.4 s on 2 cores; torch's kernels release the
      interpreter, so the model's own speed is unchanged).
    - glibc ``M_ARENA_MAX=2``: Streamlit runs each script run in a new thread; capping malloc arenas keeps
      freed activation memory reusable instead of spread over many per-thread arenas.
    A value the person running the app already set is kept. Runs once per process (app.py calls it on every
    rerun) and never starts a subprocess: ``ctypes.util.find_library`` runs ``ldconfig``, and forking the
    server while a job's forward pass ran stalled the page's rerun for the whole job.
    """
    global _tuned
    if _tuned:
        return
    _tuned = True
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if sys.getswitchinterval() == _PYTHON_DEFAULT_SWITCH_S:
        sys.setswitchinterval(_SWITCH_S)
    if sys.platform.startswith("linux") and "MALLOC_ARENA_MAX" not in os.environ:
        try:
            ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)  # the symbols already loaded: glibc's, where it is glibc
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
            pass
