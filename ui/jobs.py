"""Long jobs (feature visualization, exemplars, Score-CAM) run in a background thread, one per key.

A page asks for a job by key (the job's inputs, e.g. model key + layer + channel + settings) with
:func:`start`; a rerun of the page (any widget) finds the same job, running or finished, instead of starting
it again. The job's function gets a ``progress(done, total, preview)`` callback, the one featviz_core's long
functions take: it records how far the job is, and raises :class:`JobStopped` once the job should stop, so
the core function unwinds through its ``finally`` blocks (hooks removed, lock released, flags restored).

A job stops when
- the user presses Stop (:func:`stop`),
- the session that started it moves to another page (:func:`leave_page`, called by the router every run),
- nobody has looked at it for ``ABANDON_AFTER`` seconds (the browser tab was closed): pages showing a job
  call :func:`Job.touch` whenever they draw it.

Finished jobs stay in a small process-wide table (``KEEP_FINISHED``), so a result reappears without being
computed again; a job that failed or was stopped is started afresh by the next :func:`start`.
Nothing here calls Streamlit from the worker thread: pages poll the job from an ``st.fragment`` (:func:`watch`;
ui/job_view.py starts a page's job, draws its Stop button and hands over its result once done).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from featviz_core import FeatvizError

log = logging.getLogger("featviz")

ABANDON_AFTER = 30.0
"""Seconds without a page drawing a running job before it is stopped (its tab is gone)."""
KEEP_FINISHED = 24
"""Finished jobs kept (results are small: images of a few hundred KB, top-k tables)."""

State = Literal["running", "done", "failed", "stopped"]
Progress = Callable[[int, int, Any], None]


class JobStopped(Exception):
    """Raised inside a job's progress callback: the user stopped it or left."""


@dataclass(eq=False)
class Job:
    """One long computation and what it has shown so far. Read by pages, written by its thread."""

    key: str
    label: str
    owner: str
    page: str
    state: State = "running"
    done: int = 0
    total: int = 0
    preview: Any = None
    result: Any = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    stop_reason: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def rate(self) -> float | None:
        """Units done per second so far (None before the first one)."""
        elapsed = self.elapsed
        return self.done / elapsed if self.done and elapsed > 0 else None

    def eta(self) -> float | None:
        """Seconds left at the rate so far (None when unknown)."""
        rate = self.rate()
        return (self.total - self.done) / rate if rate and self.total else None

    def touch(self) -> None:
        """A page is showing this job: keep it alive."""
        self.last_seen = time.monotonic()

    def request_stop(self, reason: str) -> None:
        if self.running and not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job's thread ends (for tests and command-line use); True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _progress(self, done: int, total: int, preview: Any = None) -> None:
        self.done, self.total = int(done), int(total)
        if preview is not None:
            self.preview = preview
        if time.monotonic() - self.last_seen > ABANDON_AFTER:
            self.request_stop("nobody is looking at it any more")
        if self._stop.is_set():
            raise JobStopped(self.stop_reason or "stopped")


_jobs: OrderedDict[str, Job] = OrderedDict()
_lock = threading.Lock()


def _run(job: Job, fn: Callable[[Progress], Any]) -> None:
    try:
        result = fn(job._progress)
    except JobStopped:
        job.state = "stopped"
        log.info("featviz job stopped (%s): %s", job.stop_reason, job.label)
    except FeatvizError as exc:
        job.error, job.state = str(exc), "failed"
    except Exception:  # noqa: BLE001 - logged; the page shows a short sentence
        log.exception("Unexpected error in the job %s", job.label)
        job.error = "Something went wrong while computing this; the details were written to the server log."
        job.state = "failed"
    else:
        job.result, job.state = result, "done"
    finally:
        job.finished = time.monotonic()
        _forget_old()


def _forget_old() -> None:
    with _lock:
        finished = [key for key, job in _jobs.items() if not job.running]
        for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del _jobs[key]


def get(key: str) -> Job | None:
    """The job for ``key`` (running or finished), or None."""
    with _lock:
        job = _jobs.get(key)
        if job is not None:
            _jobs.move_to_end(key)
        return job


def start(
    key: str, fn: Callable[[Progress], Any], *, label: str, owner: str, page: str, total: int = 0
) -> Job:
    """The job for ``key``: the running or finished one if there is one, else a new one running ``fn``.

    ``fn(progress)`` does the work and returns the result; ``progress(done, total, preview)`` raises
    :class:`JobStopped` when it should stop. A FeatvizError from ``fn`` becomes the job's ``error``.
    """
    with _lock:
        job = _jobs.get(key)
        if job is not None and job.state in ("running", "done"):
            _jobs.move_to_end(key)
            if job.running:
                job.owner, job.page = owner, page  # whoever asks last keeps it alive
                job.touch()
            return job
        job = Job(key=key, label=label, owner=owner, page=page, total=total)
        _jobs[key] = job
        job._thread = threading.Thread(target=_run, args=(job, fn), name=f"featviz-job {label}", daemon=True)
        job._thread.start()
        return job


PRESSED_STOP = "the user pressed Stop"
"""The stop reason of a job stopped by its Stop button."""


def stop(key: str, reason: str = PRESSED_STOP) -> None:
    job = get(key)
    if job is not None:
        job.request_stop(reason)


def leave_page(owner: str, page: str) -> None:
    """Stop the running jobs that ``owner`` started on pages other than ``page`` (they navigated away)."""
    with _lock:
        running = [job for job in _jobs.values() if job.running and job.owner == owner and job.page != page]
    for job in running:
        job.request_stop("the user left the page")


def running_jobs() -> list[Job]:
    with _lock:
        return [job for job in _jobs.values() if job.running]


# ---------------------------------------------------------------------------------------------------
# Drawing a job on a page (Streamlit from here on; the functions above never touch it)


def session_id() -> str:
    """This browser session's id (the owner of the jobs it starts)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def watch(key: str, draw: Callable[[Job], None], *, every: float = 0.5) -> None:
    """Draw the job ``key`` with ``draw(job)``, redrawn every ``every`` seconds while it runs (a fragment,
    so the rest of the page is not rerun); when it ends, the whole page reruns once to show the result."""
    import streamlit as st

    job = get(key)
    if job is None:
        return
    was_running = job.running

    def body() -> None:
        current = get(key)
        if current is None:
            return
        current.touch()
        draw(current)
        if was_running and not current.running:
            st.rerun()

    st.fragment(body, run_every=every if was_running else None)()
