"""featviz: see what a convolutional network sees. Run with `make run` (or `streamlit run app.py`)."""

from ui.router import run_app

run_app()
