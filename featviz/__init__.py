"""The ``featviz`` command line: ``featviz run`` starts the dashboard, ``featviz exemplars`` finds the images
that excite a channel most, ``featviz --version``. The library itself is :mod:`featviz_core`.

Installed from a wheel, the Streamlit app (``app.py``, ``pages/``, ``ui/``, ``.streamlit/config.toml``) lives
in ``featviz/_app/``; in a source checkout it is the project folder itself (see :func:`featviz.server.app_dir`).
"""

__version__ = "0.1.0"
