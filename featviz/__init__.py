"""The ``featviz`` command line: ``featviz run`` starts the dashboard, ``featviz exemplars`` finds the images
that excite a channel most, ``featviz --version``. The library itself is :mod:`featviz_core`.

From Python or a notebook, ``featviz.show(model)`` serves the dashboard on a model in memory
(:mod:`featviz.notebook`).

Installed from a wheel, the Streamlit app (``app.py``, ``pages/``, ``ui/``, ``.streamlit/config.toml``) lives
in ``featviz/_app/``; in a source checkout it is the project folder itself (see :func:`featviz.server.app_dir`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Handle", "show"]


def __getattr__(name: str) -> Any:
    # ``featviz.show`` is imported on first use: ``import featviz`` (the command line) stays cheap.
    if name in ("show", "Handle"):
        from . import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'featviz' has no attribute {name!r}")
