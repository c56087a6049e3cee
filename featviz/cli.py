"""``featviz run | exemplars | --version | --help``.

    featviz run                                   # the dashboard on http://localhost:8501
    featviz run --port 8600 --images ~/xrays
    featviz run --model mynets.faces:build --weights faces.safetensors --classes names.txt
    featviz run --server.address 0.0.0.0          # any of Streamlit's own --section.option flags
    featviz exemplars --help                      # the images that excite a channel most

``featviz run`` is ``streamlit run app.py`` with the first view prepared before the server listens (see
:mod:`featviz.server`); the model options reach the app as ``FEATVIZ_*`` environment variables (read by
``ui/cli.py``), so they work the same from ``make run``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__, server

__all__ = ["main", "parser"]

_MODEL_ENV = {
    "model": "FEATVIZ_MODEL",
    "weights": "FEATVIZ_WEIGHTS",
    "classes": "FEATVIZ_CLASSES",
    "input_size": "FEATVIZ_INPUT_SIZE",
    "normalization": "FEATVIZ_NORMALIZATION",
    "images": "FEATVIZ_IMAGES",
}

# Where the exemplars job keeps its command line (``python -m featviz_core.exemplars``), first match wins.
_EXEMPLARS = ("featviz_core.exemplars.cli",)


def parser() -> argparse.ArgumentParser:
    """The whole command line (``featviz run`` takes the app's own options from ``ui/cli.py``)."""
    server.add_app_to_path()
    from ui.cli import parser as app_options

    top = argparse.ArgumentParser(
        prog="featviz",
        description="See inside a convolutional network: every channel's feature map, Grad-CAM, filters.",
    )
    top.add_argument("--version", action="version", version=f"featviz {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        parents=[app_options()],
        allow_abbrev=False,
        help="start the dashboard in your browser",
        description="Start the dashboard. Any of Streamlit's own options (--server.address 0.0.0.0, "
        "--server.headless true, ...) may follow.",
        epilog="The model loads and a first view is prepared before the address is printed, so the first "
        "page opens at once.",
    )
    run.add_argument("--port", type=int, help="the port to serve on (default 8501)")
    run.add_argument("--no-warm", action="store_true",
                     help="start listening at once and load everything on the first visit instead")
    commands.add_parser(
        "exemplars",
        add_help=False,
        help="find the images of a folder that excite a channel most (featviz exemplars --help)",
    )
    return top


def _exemplars(argv: Sequence[str]) -> int:
    for name in _EXEMPLARS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            entry: Callable[[list[str]], int | None] = importlib.import_module(name).main
            return int(entry(list(argv)) or 0)
    print("featviz exemplars is not part of this version of featviz yet.", file=sys.stderr)
    return 2


def _model_environment(args: argparse.Namespace) -> dict[str, str]:
    env = {}
    for attr, name in _MODEL_ENV.items():
        value = getattr(args, attr, None)
        if value is None or value == "":
            continue
        if attr == "input_size":
            value = f"{value[0]}x{value[1]}"
        env[name] = str(value)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["exemplars"]:  # its own parser reads the rest, --help included
        return _exemplars(args_in[1:])
    top = parser()
    args, rest = top.parse_known_args(args_in)
    if args.command != "run":
        if rest:
            top.error(f"unrecognized arguments: {' '.join(rest)}")
        top.print_help()
        return 0 if args.command is None else 2
    os.environ.update(_model_environment(args))
    streamlit_args = list(rest)
    if args.port is not None:
        streamlit_args += ["--server.port", str(args.port)]
    return server.serve(streamlit_args, warm=not args.no_warm)
