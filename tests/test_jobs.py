"""ui.jobs: one background job per key, progress, stop on request / on leaving / when abandoned."""

from __future__ import annotations

import threading

import pytest

from featviz_core import FeatvizError
from ui import jobs


def _gated(total: int, gate: threading.Event, log: list[int]) -> jobs.Progress:
    def fn(progress: jobs.Progress) -> str:
        for step in range(total):
            gate.wait()
            log.append(step)
            progress(step + 1, total, f"preview {step}")
        return "result"

    return fn  # type: ignore[return-value]


def test_same_key_finds_the_running_then_the_finished_job() -> None:
    gate, log = threading.Event(), []
    first = jobs.start("t:same", _gated(3, gate, log), label="same", owner="s1", page="p")
    again = jobs.start("t:same", _gated(3, gate, []), label="same", owner="s1", page="p")
    assert again is first and first.running
    gate.set()
    assert first.wait(30)
    assert first.state == "done" and first.result == "result" and first.preview == "preview 2"
    assert (first.done, first.total, first.fraction) == (3, 3, 1.0)
    assert jobs.start("t:same", _gated(3, gate, []), label="same", owner="s1", page="p") is first
    assert log == [0, 1, 2], "a finished job is never computed again"


@pytest.mark.parametrize("how", ["stop", "leave", "abandon"])
def test_a_job_stops_when_asked_when_left_or_when_abandoned(how, monkeypatch) -> None:
    gate, log = threading.Event(), []
    job = jobs.start(f"t:{how}", _gated(1000, gate, log), label=how, owner="s2", page="explore")
    if how == "stop":
        jobs.stop(job.key)
    elif how == "leave":
        jobs.leave_page("someone-else", "other")  # another session's navigation changes nothing
        assert not job._stop.is_set()
        jobs.leave_page("s2", "explore")  # staying on the same page changes nothing
        assert not job._stop.is_set()
        jobs.leave_page("s2", "other")
    else:
        monkeypatch.setattr(jobs, "ABANDON_AFTER", -1.0)
    gate.set()
    assert job.wait(30)
    assert job.state == "stopped" and len(log) <= 1
    monkeypatch.setattr(jobs, "ABANDON_AFTER", 30.0)
    fresh = jobs.start(job.key, _gated(1, gate, []), label=how, owner="s2", page="explore")
    assert fresh is not job, "a stopped job starts afresh when asked again"
    assert fresh.wait(30) and fresh.state == "done"


def test_failures_become_one_sentence() -> None:
    def plain(_progress: jobs.Progress) -> None:
        raise FeatvizError("This layer has no channel 9; choose one from 0 to 3.")

    def broken(_progress: jobs.Progress) -> None:
        raise RuntimeError("internal detail")

    a = jobs.start("t:fail1", plain, label="a", owner="s", page="p")
    b = jobs.start("t:fail2", broken, label="b", owner="s", page="p")
    assert a.wait(30) and b.wait(30)
    assert a.state == b.state == "failed"
    assert a.error == "This layer has no channel 9; choose one from 0 to 3."
    assert "internal detail" not in (b.error or "") and "server log" in (b.error or "")


def test_finished_jobs_are_bounded(monkeypatch) -> None:
    monkeypatch.setattr(jobs, "KEEP_FINISHED", 2)
    made = [jobs.start(f"t:bound{i}", lambda _p, i=i: i, label="b", owner="s", page="p") for i in range(5)]
    for job in made:
        assert job.wait(30)
    jobs._forget_old()
    kept = [job for job in made if jobs.get(job.key) is job]
    assert kept == made[-2:]
