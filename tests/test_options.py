"""featviz/options.py: the option types that the app's command line (ui/cli.py) and the exemplars command share,
importable without torch."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from featviz.options import NORMALIZATIONS, input_size

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("text", "size"), [("224", (224, 224)), ("256x320", (256, 320)), ("256×320", (256, 320)),
                                            (" 48 X 40 ", (48, 40)), ("8", (8, 8))])
def test_a_size_is_one_number_or_height_x_width(text: str, size: tuple[int, int]) -> None:
    assert input_size(text) == size


@pytest.mark.parametrize("text", ["", "x", "big", "7", "1x2x3", "224x4", "2.5"])
def test_anything_else_is_a_usage_error_with_an_example(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a size like 224 or 256x320"):
        input_size(text)


def test_both_command_lines_read_sizes_and_scalings_the_same_way(capsys: pytest.CaptureFixture[str]) -> None:
    import featviz_core
    from featviz_core.exemplars.cli import parser as exemplars_parser
    from ui.cli import options
    from ui.cli import parser as app_parser

    assert set(NORMALIZATIONS) == set(featviz_core.NORMALIZATIONS)
    argv = ["--input-size", "48x40", "--normalization", "0-1"]
    app = app_parser().parse_args(argv)
    exemplars = exemplars_parser().parse_args(["--model", "demo", *argv])
    assert (app.input_size, app.normalization) == (exemplars.input_size, exemplars.normalization) == ((48, 40), "0-1")
    assert options(["--input-size", "32"]).input_size == (32, 32)
    for parser in (app_parser(), exemplars_parser()):
        with pytest.raises(SystemExit):
            parser.parse_args(["--input-size", "tiny"])
        assert "'tiny' is not a size like 224 or 256x320" in capsys.readouterr().err


def test_the_apps_option_parsing_imports_no_torch() -> None:
    code = "import sys, ui.cli; ui.cli.options(['--input-size', '64']); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
