"""A long job on a page (ui/jobs.py runs it): started for this session and page, its Stop button, and the
watcher that shows its progress and hands over its result once it is done. Every page that runs a job uses these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from . import jobs

__all__ = ["result_when_done", "start", "stop_button"]

_RESTART = "_restart"  # session key: the job whose "Run it again" was pressed


def start(key: str, fn: Callable[[jobs.Progress], Any], *, label: str, page: str, total: int = 0) -> jobs.Job:
    """The job ``key`` for this session on ``page`` (url path: it stops when the user leaves the page): the
    running or finished one, else a new one running ``fn``."""
    return jobs.start(key, fn, label=label, owner=jobs.session_id(), page=page, total=total)


def stop_button(job: jobs.Job, key: str, *, help: str | None = None, where: Any = st) -> None:
    """The Stop button of a running job (in ``where``: a column, or the page)."""
    if where.button("Stop", key=key, icon=":material/stop:", help=help):
        jobs.stop(job.key)


def result_when_done(
    key: str,
    fn: Callable[[jobs.Progress], Any],
    *,
    label: str,
    page: str,
    total: int,
    start_now: bool,
    draw: Callable[[jobs.Job], None],
) -> Any:
    """The result of the background job ``key`` when it is done; else None, with its progress (``draw(job)``,
    redrawn while it runs) or why it stopped drawn. A rerun finds the same job; a job that does not exist yet
    starts when ``start_now``; a stopped or failed one starts again only when the user asks ("Run it again")."""
    state = st.session_state
    job = jobs.get(key)
    again = state.get(_RESTART) == key
    if (job is None and start_now) or (job is not None and again and job.state in ("stopped", "failed")):
        state.pop(_RESTART, None)
        job = start(key, fn, label=label, page=page, total=total)
    if job is None:
        return None
    if job.state == "done":
        return job.result
    if job.state in ("stopped", "failed"):
        if job.state == "stopped":
            st.info(f"Stopped: {job.stop_reason}.", icon=":material/stop_circle:")
        else:
            st.error(job.error or "This could not be computed.", icon=":material/error:")
        if st.button("Run it again", key=f"again_{key}", icon=":material/replay:"):
            state[_RESTART] = key
            st.rerun()
        return None
    jobs.watch(key, draw)
    return None
