"""ui/frame.py and the model spinners of ui/cache.py: shown at once, and only when something loads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import streamlit as st
from streamlit.elements import spinner as spinner_module

from ui import cache, frame


@pytest.fixture
def spinners(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Every st.spinner started: (its text, the delay Streamlit would wait before showing it)."""
    seen: list[tuple[str, float]] = []

    @contextmanager
    def fake(text: str, *args: object, **kwargs: object) -> Iterator[None]:
        seen.append((text, spinner_module.DELAY_SECS))
        yield

    monkeypatch.setattr(st, "spinner", fake)
    return seen


def test_busy_shows_the_spinner_without_streamlits_delay(spinners: list[tuple[str, float]]) -> None:
    default = spinner_module.DELAY_SECS
    assert default > 0
    with frame.busy("Building resnet50…"):
        assert spinner_module.DELAY_SECS == default  # only the spinner's own start is affected
    assert spinners == [("Building resnet50…", 0.0)]
    with pytest.raises(RuntimeError), frame.busy("Building vgg16…"):
        raise RuntimeError("build failed")
    assert spinner_module.DELAY_SECS == default


def test_a_model_spinner_shows_at_once_until_the_model_is_prepared(spinners: list[tuple[str, float]]) -> None:
    key = ("test", "frame", object())
    with pytest.raises(ValueError), cache.model_spinner("Building a…", *key):
        raise ValueError("not built")
    with cache.model_spinner("Building a…", *key):
        pass
    with cache.model_spinner("Building a…", *key):  # prepared now: Streamlit's own (delayed) spinner
        pass
    default = spinner_module.DELAY_SECS
    assert spinners == [("Building a…", 0.0), ("Building a…", 0.0), ("Building a…", default)]
    other = ("test", "frame", "warm")
    cache.mark_prepared(*other)
    with cache.model_spinner("Building b…", *other):
        pass
    assert spinners[-1] == ("Building b…", default)


def test_prepared_does_the_dry_run_and_leaves_failures_to_the_layer_section(tiny, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from featviz_core.layers import discovery

    assert cache.prepared(tiny) is tiny
    assert tiny.module in discovery._LAYER_CACHE  # the sidebar's list_layers finds it done

    def broken(model):  # type: ignore[no-untyped-def]
        raise RuntimeError("forward fails")

    monkeypatch.setattr(cache, "list_layers", broken)
    assert cache.prepared(tiny) is tiny


def test_loading_app_shows_the_line_only_before_the_app_is_imported(spinners, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    monkeypatch.delitem(sys.modules, frame._APP_MODULE, raising=False)
    with frame.loading_app():
        pass
    assert spinners == [(frame.LOADING, 0.0)]
    monkeypatch.setitem(sys.modules, frame._APP_MODULE, object())
    with frame.loading_app():
        pass
    assert spinners == [(frame.LOADING, 0.0)]


def test_the_router_imports_only_streamlit() -> None:
    import subprocess
    import sys

    code = ("import sys, ui.router; heavy = [m for m in ('torch', 'torchvision', 'featviz_core', 'ui.sidebar')"
            " if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=frame.Path(frame.__file__).parent.parent)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_page_config(monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[dict[str, object]] = []
    monkeypatch.setattr(st, "set_page_config", lambda **kw: configs.append(kw))
    frame.set_page_config()
    assert configs[0]["layout"] == "wide" and str(configs[0]["page_icon"]).endswith("icon.png")
    assert frame.Path(str(configs[0]["page_icon"])).is_file()


def test_a_cold_server_has_the_browser_start_the_chart_code_once_per_session(make_app) -> None:  # type: ignore[no-untyped-def]
    import ui.sidebar  # noqa: F401 - the app is imported: a warm server sends no early element
    from ui.light_chart import COMPONENT, PREFETCH_KEY

    at = make_app()
    assert frame._PREFETCHED not in at.session_state
    assert not [n for n in at._tree if n.type == "bidi_component" and PREFETCH_KEY in n.proto.id]
    from streamlit.testing.v1 import AppTest

    script = AppTest.from_string(
        "import streamlit as st\nfrom ui import frame\nwarm = frame.prefetch_charts(cold=False)\n"
        "first = frame.prefetch_charts(cold=True)\nsecond = frame.prefetch_charts(cold=True)\n"
        "st.session_state['result'] = (warm is None, first is not None, second is None)\n"
    )
    script.run()
    assert script.session_state["result"] == (True, True, True)
    sent = [n for n in script._tree if n.type == "bidi_component"]
    assert len(sent) == 1 and sent[0].proto.component_name == COMPONENT
    head, figure = sent[0].proto.bytes.decode().split("\n")
    assert json.loads(head)["start"] is True and figure == ""  # fetched and started, nothing drawn
    assert json.loads(head)["src"].startswith("component/") and json.loads(head)["src"].endswith("/plotly-light.min.js")
