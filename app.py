"""featviz: see what a convolutional network sees. Run with `featviz run` / `make run` (or `streamlit run app.py`)."""

from featviz.registry import restore_main_module
from ui.runtime import tune_process

restore_main_module()  # featviz.show() serves from a notebook's process: its __main__ stays its own
tune_process()  # before torch is first imported

from ui.router import run_app  # noqa: E402 - imports only Streamlit: the frame is drawn before torch loads

run_app()
