"""``featviz.show(model)``: the dashboard on a model in memory, from a notebook or a script.

    import featviz
    handle = featviz.show(model, classes=names)     # returns at once; in Jupyter it shows a link
    handle.iframe(height=800)                       # the app inside the notebook
    handle.stop()                                   # the port is free again

The model object must reach the app unchanged: a notebook defines its class in ``__main__``, which another
process cannot import. So Streamlit's server runs in a background thread of *this* process, on its own asyncio
event loop (``streamlit.web.server.Server``, the class ``streamlit run`` itself starts; its bootstrap's signal
handlers are left out: they work on the main thread only, and Ctrl-C belongs to the notebook). The loaded model
goes to :mod:`featviz.registry`, where the sidebar's "Your code" source reads it.

One server per process (Streamlit's runtime is a process-wide singleton): a second ``show()`` while it runs
replaces the model and returns a handle to the same address (visitors see the new model on their next
interaction or reload); after ``stop()`` a ``show()`` starts a fresh server. It listens on 127.0.0.1 only
unless ``host`` says otherwise, on port 8501 or the next free one unless ``port`` is given.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import html
import logging
import threading
import webbrowser
from collections.abc import Sequence
from typing import Any

from . import registry

__all__ = ["Handle", "show"]

log = logging.getLogger("featviz")

START_TIMEOUT = 120.0
"""Seconds to wait for the server to listen (the first start imports Streamlit's server)."""

_lock = threading.RLock()
_server: _Server | None = None


class _Server:
    """Streamlit's server on its own event loop in a daemon thread of this process."""

    def __init__(self, host: str, port: int | None) -> None:
        self.host = host
        self.port = port or 0
        self._wanted_port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._runtime: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        # "localhost", as `streamlit run` prints it: the same site as a notebook opened at localhost:8888, so the
        # app's cookies (its upload check) also work inside the notebook's inline frame.
        shown = "localhost" if self.host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::", "") else self.host
        return f"http://{f'[{shown}]' if ':' in shown else shown}:{self.port}/"

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        from streamlit import config
        from streamlit.runtime import Runtime
        from streamlit.web import bootstrap

        from . import server

        if Runtime.exists():
            raise RuntimeError("featviz.show() cannot start its server inside a running Streamlit app.")
        script = server.add_app_to_path() / "app.py"
        flags: dict[str, Any] = {
            "server.address": self.host,
            "server.headless": True,  # featviz opens the browser itself when asked
            "server.fileWatcherType": "none",
            "server.runOnSave": False,
            "browser.gatherUsageStats": False,
            "logger.level": "warning",  # no "server started" line in the notebook's output; errors still show
        }
        if self._wanted_port is not None:
            flags["server.port"] = self._wanted_port
        config._main_script_path = str(script)  # what `streamlit run` sets: the app's .streamlit/ counts
        quiet = logging.getLogger("streamlit.config")  # after a stop(), Streamlit would say "restart streamlit"
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            bootstrap.load_config_options(flag_options=flags)
        finally:
            quiet.setLevel(level)
        self._thread = threading.Thread(target=self._main, args=(str(script),), name="featviz-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"featviz's server did not start within {timeout:.0f} s.")
        if self._error is not None:
            self._thread.join(5)
            error = self._error
            if isinstance(error, SystemExit):  # Streamlit exits when a port given explicitly is taken
                raise OSError(f"Port {self._wanted_port} on {self.host} is taken; choose another port, or "
                              "leave port out to use the next free one.") from None
            raise RuntimeError(f"featviz's server could not start: {error}") from error
        bootstrap.prepare_streamlit_environment(str(script))  # MIME types, secrets: as `streamlit run`

    def _main(self, script: str) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(script))
        except BaseException as exc:  # noqa: BLE001 - reported to the thread that called start()
            self._error = exc
            if self._ready.is_set():
                log.exception("featviz's server stopped with an error")
        finally:
            self._ready.set()
            self._forget_runtime()
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self, script: str) -> None:
        from streamlit import config
        from streamlit.runtime import Runtime
        from streamlit.web.server import Server

        self._server = Server(script, is_hello=False)
        self._runtime = Runtime.instance()
        await self._server.start()
        self._loop = asyncio.get_running_loop()
        self.port = int(config.get_option("server.port"))  # the one bound: 8501 or the next free one
        self._ready.set()
        await self._server.stopped

    def _forget_runtime(self) -> None:
        # Streamlit keeps its Runtime in a class attribute and never clears it; a later show() in this process
        # needs a new one. Streamlit's own AppTest resets it the same way when it finishes.
        from streamlit.runtime import Runtime

        if self._runtime is not None and Runtime._instance is self._runtime:
            Runtime._instance = None

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down, wait until its thread has ended (the port is then free)."""
        loop, server, thread = self._loop, self._server, self._thread
        if loop is not None and server is not None and thread is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(server.stop)
            except RuntimeError:  # the loop closed meanwhile
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("featviz's server thread did not end within %.0f s", timeout)


class _Frame:
    """The app in an ``<iframe>`` (what Jupyter draws for ``handle.iframe()``)."""

    def __init__(self, url: str, height: int, width: str) -> None:
        self.url, self.height, self.width = url, height, width

    def _repr_html_(self) -> str:
        return (f'<iframe src="{html.escape(self.url)}" width="{html.escape(self.width)}" height="{self.height}" '
                'style="border: 1px solid #d0d7de; border-radius: 4px;" title="featviz"></iframe>')

    def __repr__(self) -> str:
        return f"<featviz frame of {self.url}>"


class Handle:
    """The dashboard started by :func:`show`: ``url``, ``model`` (the :class:`featviz_core.LoadedModel`
    shown), :meth:`stop`, :meth:`iframe`. In Jupyter it displays as a link (and the app below it when
    ``show(..., inline=True)``)."""

    def __init__(self, server: _Server, model: Any, *, inline: bool = False, height: int = 800) -> None:
        self._server = server
        self.model = model
        self.url = server.url
        self.port = server.port
        self.inline = inline
        self.height = height

    @property
    def running(self) -> bool:
        """Whether the server still runs."""
        return self._server.alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (every handle of this process shares it) and free the port. Safe to call twice."""
        global _server
        with _lock:
            if _server is self._server:
                _server = None
                registry.clear()
        self._server.stop(timeout)

    def iframe(self, height: int = 800, width: str = "100%") -> _Frame:
        """The app in an inline frame, for a notebook cell's output (``display(handle.iframe())``)."""
        return _Frame(self.url, height, width)

    def _repr_html_(self) -> str:
        url = html.escape(self.url)
        if not self.running:
            return f"<p>featviz at {url} has stopped.</p>"
        link = (f'<p>featviz is showing <code>{html.escape(self.model.name)}</code> at '
                f'<a href="{url}" target="_blank" rel="noopener">{url}</a> · <code>.stop()</code> ends it</p>')
        return link + (self.iframe(self.height)._repr_html_() if self.inline else "")

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<featviz {state} at {self.url}, showing {self.model.name}>"


def _loaded_model(model: Any, classes: Sequence[str] | None, preprocessing: Any) -> tuple[Any, int]:
    from torch import nn

    from featviz_core import LoadedModel
    from featviz_core.models.keys import model_key
    from featviz_core.models.sources import load_module

    number = registry.next_number()
    if isinstance(model, LoadedModel):
        if preprocessing is not None:
            raise TypeError("preprocessing applies to an nn.Module; a LoadedModel carries its own.")
        if classes is not None:
            model = dataclasses.replace(model, categories=[str(c) for c in classes],
                                        key=model_key(model.key, f"classes{number}"))
        return model, number
    if isinstance(model, nn.Module):
        name = type(model).__name__
        return load_module(model, preprocessing, classes, name=name, key=model_key("python", number, name)), number
    raise TypeError(f"featviz.show() takes a torch nn.Module or a featviz_core.LoadedModel, not "
                    f"{type(model).__name__}.")


def show(
    model: Any,
    *,
    classes: Sequence[str] | None = None,
    preprocessing: Any = None,
    port: int | None = None,
    open_browser: bool = False,
    host: str = "127.0.0.1",
    inline: bool = False,
    height: int = 800,
) -> Handle:
    """Start the dashboard on ``model`` in the background of this process and return at once.

    ``model``: an ``nn.Module`` (put in eval mode, left on its device) or a ``featviz_core.LoadedModel``.
    ``classes``: the names of its outputs, in order. ``preprocessing``: a ``featviz_core.Preprocessing``
    (default: 224×224, ImageNet mean/std; a model that refuses 224×224, such as LeNet-5, gets the size it
    accepts). ``port``: default 8501 or the next free one. ``host``: the address to listen on (127.0.0.1: this
    machine only). ``open_browser``: open the app in the default browser. ``inline``: in Jupyter, show the app
    in the cell's output too (``height`` pixels high).

    A server already running in this process keeps running and shows the new model (same address); maps are
    cached per call, so after more training call ``show(model)`` again to see the new weights. Raises
    ``featviz_core.ModelLoadError`` with one sentence when the model cannot run, and OSError when ``port`` is
    taken.
    """
    global _server
    loaded, number = _loaded_model(model, classes, preprocessing)
    with _lock:
        running = _server if _server is not None and _server.alive() else None
        if running is not None and (host != running.host or (port is not None and port != running.port)):
            raise ValueError(f"featviz already serves {running.url} in this process; call stop() on its handle "
                             f"before serving on {host}:{port or 'another port'}.")
        registry.remember_main_module()
        registry.publish(loaded, number)
        if running is None:
            running = _Server(host, port)
            try:
                running.start()
            except BaseException:
                registry.clear()
                raise
            _server = running
            log.info("featviz serves %s at %s", loaded.name, running.url)
    handle = Handle(running, loaded, inline=inline, height=height)
    if open_browser:
        webbrowser.open(handle.url)
    return handle


def _stop_at_exit() -> None:
    with _lock:
        server = _server
    if server is not None:
        server.stop(timeout=5)


atexit.register(_stop_at_exit)
