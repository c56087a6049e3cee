"""``featviz run``: Streamlit's own ``streamlit run app.py``, in this process, after a warm-up.

A plain ``streamlit run`` listens at once and lets its first visitor wait while torch, torchvision and the
model load (seconds on a small machine). Here the first view is prepared first (:func:`ui.warm.warm_up`: the
imports, the first model, its dry run, one extraction, one figure) and only then does Streamlit start
listening; the visitor's run finds everything loaded and cached in the same process.

The app's files: ``featviz/_app/`` in an installed wheel, else the source checkout this package sits in.
Streamlit reads ``.streamlit/config.toml`` next to the main script as well as in the current folder
(the script's wins), so the shipped settings hold wherever ``featviz run`` is started;
:func:`effective_settings` reads them back for the log.
"""

from __future__ import annotations

import json
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["add_app_to_path", "app_dir", "effective_settings", "serve", "shipped_settings"]

log = logging.getLogger("featviz")
_PACKAGE = Path(__file__).resolve().parent


def app_dir() -> Path:
    """The folder holding ``app.py``, ``pages/``, ``ui/`` and ``.streamlit/config.toml``."""
    for candidate in (_PACKAGE / "_app", _PACKAGE.parent):
        if (candidate / "app.py").is_file() and (candidate / "ui" / "__init__.py").is_file():
            return candidate
    raise FileNotFoundError(f"the featviz app (app.py, ui/) is missing beside {_PACKAGE}; reinstall featviz")


def add_app_to_path() -> Path:
    """Make ``import ui`` find the app's own package, as Streamlit does for the main script's folder."""
    folder = app_dir()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


def shipped_settings(folder: Path | None = None) -> dict[str, Any]:
    """``.streamlit/config.toml`` of the app as ``{"server.maxUploadSize": 200, ...}``."""
    path = (folder or app_dir()) / ".streamlit" / "config.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    flat: dict[str, Any] = {}
    for section, options in data.items():
        for key, value in options.items():
            flat[f"{section}.{key}"] = value
    return flat


def effective_settings(names: list[str]) -> dict[str, Any]:
    """What Streamlit's configuration holds now for each option name."""
    from streamlit import config

    return {name: config.get_option(name) for name in names}


def serve(streamlit_args: list[str], *, warm: bool = True) -> int:
    """Parse Streamlit's flags, warm the first view, then run Streamlit's server until it stops."""
    folder = add_app_to_path()
    from ui.runtime import tune_process

    tune_process()  # before torch is imported
    script = folder / "app.py"

    import click
    from streamlit import config
    from streamlit.web import bootstrap
    from streamlit.web import cli as streamlit_cli

    try:  # the same flags, environment variables and checks as `streamlit run`
        context = streamlit_cli.main_run.make_context("featviz run", [str(script), *streamlit_args])
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2
    flag_options = {k: v for k, v in context.params.items() if k not in ("target", "args")}
    config._main_script_path = str(script)  # what `streamlit run` sets: the script's .streamlit/ counts
    bootstrap.load_config_options(flag_options=flag_options)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shipped = shipped_settings(folder)
    settings = effective_settings(list(shipped))
    log.info("featviz app %s, settings %s", folder, json.dumps(settings))
    if warm:
        from ui.warm import warm_up

        warm_up()
    with context:
        streamlit_cli.main_run.invoke(context)
    return 0
