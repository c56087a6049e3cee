"""“What it responds to” page, driven in-process with AppTest.

The optimization runs in a background job (ui/jobs.py). To watch it advance without timing guesses, the tests
wrap featviz_core's ``visualize`` so that each step waits for a ticket the test hands out (:class:`Gate`), and
wait for the job to reach the step before rerunning the page.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from featviz_core.layers import hook_count
from tests.conftest import no_exception, plotly_figures
from ui import jobs

core = importlib.import_module("featviz_core.visualize.optimize")  # the module (the package's name is the function)
package = importlib.import_module("featviz_core.visualize")

PAGE = "pages/responds_to.py"
FAST = {"viz_size": 64, "viz_steps": 64}


class Gate:
    """Each optimization step waits for a ticket; counts the optimizations started."""

    def __init__(self) -> None:
        self.tickets = 0
        self.calls: list[tuple[str, int]] = []
        self._cond = threading.Condition()

    def allow(self, n: int) -> None:
        with self._cond:
            self.tickets += n
            self._cond.notify_all()

    def open(self) -> None:
        self.allow(10**9)

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def gated_visualize(model: Any, layer: str, channel: int, *, progress: Any = None, **kwargs: Any) -> Any:
            self.calls.append((layer, int(channel)))

            def step(done: int, total: int, preview: Any) -> None:
                with self._cond:
                    if not self._cond.wait_for(lambda: self.tickets > 0, timeout=120):
                        raise TimeoutError("the test never let this step run")
                    self.tickets -= 1
                if progress is not None:
                    progress(done, total, preview)

            return real(model, layer, channel, progress=step, **kwargs)

        return gated_visualize


@pytest.fixture
def gate(monkeypatch) -> Iterator[Gate]:
    gate = Gate()
    gated = gate.wrap(core.visualize)
    monkeypatch.setattr(core, "visualize", gated)  # what visualize_channels calls
    monkeypatch.setattr(package, "visualize", gated)  # what the page calls
    _forget_jobs()
    yield gate
    gate.open()
    _forget_jobs()


def _forget_jobs() -> None:
    for job in jobs.running_jobs():
        job.request_stop("test over")
        job.wait(120)
    with jobs._lock:
        jobs._jobs.clear()


def until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Wait for a condition on the background job (polling), failing with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def only_job() -> jobs.Job:
    (job,) = list(jobs._jobs.values())
    return job


def progress_texts(at) -> list[str]:
    return [p.proto.text for p in at.get("progress") if "Making" in p.proto.text]


def open_page(make_app, **state: Any):  # type: ignore[no-untyped-def]
    at = make_app(page=PAGE, state={**FAST, **state})
    no_exception(at)
    return at


# ---------------------------------------------------------------------------------------------------


def test_page_draws_with_the_strongest_channel_and_its_map(make_app, gate) -> None:
    at = open_page(make_app)
    assert at.title[0].value == "What it responds to"
    selection = at.session_state["_selection"]
    maps = selection.maps()
    strongest = int(np.argmax(maps.mean(axis=(1, 2))))
    assert at.session_state["viz_channel"] == strongest
    assert any("Press **Start**" in i.value for i in at.info), "says what to do before anything runs"
    overlay = plotly_figures(at)[0]
    assert f"channel {strongest}" in overlay["layout"]["title"]["text"]
    assert any(b.label.startswith("Start") for b in at.button)
    assert any("do not prove" in m.value for m in at.markdown)
    assert gate.calls == [], "nothing is computed before the user asks"
    gallery = [c.value for c in at.caption if c.value.startswith("Channels ")]
    top8 = np.argsort(-maps.mean(axis=(1, 2)), kind="stable")[:8]
    assert gallery and gallery[0].startswith("Channels " + ", ".join(map(str, top8)))


def test_defaults_and_the_channel_chosen_on_feature_maps(make_app, gate) -> None:
    at = make_app()
    at.number_input(key="channel").set_value(6).run()  # chosen on Feature maps, no button pressed
    at.switch_page(PAGE).run()
    no_exception(at)
    state = at.session_state
    assert (state["viz_channel"], state["viz_size"], state["viz_steps"], state["viz_objective"], state["viz_seed"]) == (
        6, 128, 256, "channel", 0)
    at.number_input(key="viz_channel").set_value(9).run()  # changed here: kept while the layer stays
    at.switch_page("pages/feature_maps.py").run()
    at.switch_page(PAGE).run()
    assert at.session_state["viz_channel"] == 9
    assert gate.calls == []


def test_progress_advances_then_the_picture_and_its_numbers_appear(make_app, gate) -> None:
    at = open_page(make_app)
    channel = at.session_state["viz_channel"]
    next(b for b in at.button if b.label.startswith("Start")).click().run()
    job = only_job()
    assert at.button(key="viz_start").disabled, "a running picture is not started twice"
    seen = []
    for tickets in (3, 5):
        gate.allow(tickets)
        target = sum(seen[-1:]) + tickets if seen else tickets
        until(lambda target=target: job.done >= target, f"step {target}")
        at.run()
        no_exception(at)
        (text,) = progress_texts(at)
        seen.append(int(text.split("step ")[1].split(" of")[0]))
        assert text.endswith(("left", "64")) and " of 64" in text
        assert len(at.main.get("image")) == 1, "the preview is shown while it runs"
    assert seen == [3, 8], "the progress bar advances with the job"
    gate.open()
    assert job.wait(120) and job.state == "done"
    at.run()
    no_exception(at)
    assert not progress_texts(at)
    (metric,) = at.metric
    assert metric.label == "Activation reached" and float(metric.value) == pytest.approx(job.result.reached[0], rel=1e-3)
    assert len(job.result.activation) == 64 and job.result.channel == channel
    curve = plotly_figures(at)[0]
    assert curve["data"][0]["type"] == "scatter"
    assert any(b.proto.label == "Download picture (PNG)" for b in at.get("download_button"))
    assert hook_count(at.session_state["_selection"].model.module) == 0


def test_a_finished_picture_reappears_without_being_made_again(make_app, gate) -> None:
    gate.open()
    at = open_page(make_app)
    next(b for b in at.button if b.label.startswith("Start")).click().run()
    job = only_job()
    assert job.wait(120) and job.state == "done"
    at.run()
    assert at.metric
    at.number_input(key="viz_seed").set_value(1).run()  # another picture: not made until asked
    assert not at.metric and any("Press **Start**" in i.value for i in at.info)
    at.number_input(key="viz_seed").set_value(0).run()  # back: the finished one, at once
    no_exception(at)
    assert at.metric and only_job() is job
    assert at.button(key="viz_start").disabled, "nothing to start: it is made"
    assert only_job() is job and len(gate.calls) == 1


def test_leaving_the_page_stops_the_job(make_app, gate) -> None:
    at = open_page(make_app)
    next(b for b in at.button if b.label.startswith("Start")).click().run()
    job = only_job()
    assert job.running
    at.switch_page("pages/feature_maps.py").run()
    no_exception(at)
    gate.open()
    assert job.wait(120) and job.state == "stopped"
    assert hook_count(at.session_state["_selection"].model.module) == 0


def test_feature_maps_button_opens_the_page_for_that_channel_and_starts(make_app, gate) -> None:
    gate.open()
    at = make_app(state=FAST)
    at.number_input(key="channel").set_value(5).run()
    (button,) = [b for b in at.button if b.label == "What does channel 5 respond to?"]
    button.click().run()
    no_exception(at)
    assert at.title[0].value == "What it responds to"
    assert at.session_state["viz_channel"] == 5
    assert gate.calls and gate.calls[0][1] == 5, "started on arrival: the user asked for it"


def test_the_link_keeps_the_settings_and_reproduces_the_picture(make_app, gate) -> None:
    gate.open()
    query = {"vchannel": "3", "vobjective": "negative", "vsize": "64", "vsteps": "64", "vseed": "7"}
    at = make_app(query=query, page=PAGE, state={})
    no_exception(at)
    state = at.session_state
    assert (state["viz_channel"], state["viz_objective"], state["viz_size"], state["viz_steps"], state["viz_seed"]) == (
        3, "negative", 64, 64, 7)
    job = only_job()
    assert job.key == core.settings_key(state["_selection"].model.key, state["layer"], 3, "negative", 64, 64, 7)
    assert at.query_params["vseed"] == "7" and at.query_params["vobjective"] == "negative", "the link stays"


def test_gallery_of_the_eight_strongest_channels(make_app, gate) -> None:
    at = open_page(make_app)
    selection = at.session_state["_selection"]
    top8 = [int(c) for c in np.argsort(-selection.maps().mean(axis=(1, 2)), kind="stable")[:8]]
    at.button(key="viz_gallery_start").click().run()
    job = only_job()
    gate.allow(64 + 10)  # the first picture and a bit of the second
    until(lambda: job.preview is not None and len(job.preview.finished) == 1 and job.done >= 74, "one picture")
    at.run()
    no_exception(at)
    captions = at.main.get("image")
    assert len(captions) == 2, "the finished picture and the one being made"
    (bar,) = [p.proto.text for p in at.get("progress") if "pictures" in p.proto.text]
    assert bar == "Making 8 pictures: 1 done"
    gate.open()
    assert job.wait(300) and job.state == "done"
    at.run()
    assert [call[1] for call in gate.calls] == top8, "one after another, strongest first"
    assert at.session_state["viz_channel"] == top8[0]
    assert len(at.main.get("image")) == 8 + 1 and at.metric, "the gallery, and its first picture shown above"
    assert any(b.proto.label == "Download all 8 (PNG)" for b in at.get("download_button"))
    # another gallery picture opened above is not made again either
    at.button(key=f"viz_open_{top8[1]}").click().run()
    no_exception(at)
    assert at.session_state["viz_channel"] == top8[1] and at.metric
    assert len(gate.calls) == 8
