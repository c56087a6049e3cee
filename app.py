"""featviz: see what a convolutional network sees. Run with `make run` (or `streamlit run app.py`)."""

from ui.runtime import tune_process

tune_process()  # before torch is first imported

from ui.router import run_app  # noqa: E402

run_app()
