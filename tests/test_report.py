"""The HTML report: self-contained, exact charts, nothing of an upload without consent, small for wide layers."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featviz_core
from featviz_core import (
    LayerInfo,
    cam,
    extract,
    layer_info,
    load_demo,
    load_image,
    sample_bytes,
    sanity_check,
)
from featviz_core.report import report_html
from featviz_core.report.html import SHOWN_CHANNELS, chart_specs, plotly_js
from tests.conftest import decode_array, no_exception, png_bytes, random_image, upload_image
from ui import report as ui_report

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    return load_demo()


def make(demo, image: Image.Image, include: bool, layer: str = "block2.relu1", **kwargs) -> bytes:  # type: ignore[no-untyped-def]
    ex = extract(demo, image, [layer])
    result = cam(demo, image, "block3")
    return report_html(
        demo, layer_info(demo, layer), ex.activations[layer], view=demo.model_view(image) if include else None,
        image_name="private-scan.png", top_k=ex.top_k(5), cam=result,
        sanity=sanity_check(demo, image, "block3", original=result), version=featviz_core.__version__, **kwargs,
    )


def test_one_self_contained_file_with_plotly_once(demo) -> None:
    data = make(demo, load_image(sample_bytes("star")), include=True)
    text = data.decode("utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count("<script>") == 2  # plotly.js, then the charts
    assert text.count("plotly.js v4") == 1 and plotly_js() in text
    assert "default-src 'none'" in text  # the browser itself refuses any request
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text.replace(plotly_js(), ""))
    for words in ("The image as the model saw it", "TinyVGG (demo)", "featviz demo model", "top 5 guesses",
                  "16 strongest", "Where it looks", "Does this depend on the model?",
                  "What these maps do not prove", f"featviz {featviz_core.__version__}", "private-scan.png"):
        assert words in text, words


def test_charts_hold_the_exact_values(demo) -> None:
    image = load_image(sample_bytes("circle"))
    data = make(demo, image, include=True, channel=5)
    maps = extract(demo, image, ["block2.relu1"]).activations["block2.relu1"]
    specs = chart_specs(data)
    assert len(specs) == 7  # mosaic, channel, its overlay, map, mean, the sanity check's two maps
    mosaic = specs[0]
    strongest = [int(c) for c in np.argsort(-maps.mean(axis=(1, 2)), kind="stable")[:SHOWN_CHANNELS]]
    tiles = next(t for t in mosaic["data"] if t.get("name") == "tiles")
    assert [int(c) for c in decode_array(tiles["customdata"])] == strongest
    z = decode_array(next(t for t in mosaic["data"] if t["type"] == "heatmap")["z"])
    z = z.reshape(-1)
    assert np.count_nonzero(~np.isnan(z)) == SHOWN_CHANNELS * 32 * 32
    assert set(np.unique(z[~np.isnan(z)])) <= set(np.unique(maps[strongest]))
    channel = decode_array(specs[1]["data"][0]["z"]).reshape(32, 32)
    np.testing.assert_array_equal(channel, maps[5])
    result = cam(demo, image, "block3")
    np.testing.assert_array_equal(decode_array(specs[3]["data"][1]["z"]).reshape(8, 8), result.normalized)


def _fragments(data: bytes) -> list[bytes]:
    """Pieces of ``data`` as they would look inside the file: raw, and base64 at each of the 3 alignments."""
    found = []
    for start in (0, len(data) // 3, len(data) // 2):
        piece = data[start:start + 96]
        found.append(piece)
        for offset in range(3):
            found.append(base64.b64encode(piece[offset:offset + 60]))
    return [f for f in found if len(f) >= 40]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_without_consent_no_byte_of_the_upload_goes_in(demo) -> None:
    upload = png_bytes(random_image(7, size=(120, 90)))
    image = load_image(upload, "private-scan.png")
    view = demo.model_view(image)
    secrets = [upload, view.tobytes(), view.convert("L").tobytes(), image.tobytes(),
               _png(view.convert("RGB")), _png(view.convert("L").convert("RGB"))]
    with_image = make(demo, image, include=True)
    without = make(demo, image, include=False)
    # with consent the picture is there (so the search below can find it) ...
    assert base64.b64encode(_png(view.convert("RGB"))) in with_image
    # ... without, no piece of the file, of its pixels or of any picture made from them, nor its name
    for secret in secrets:
        for fragment in _fragments(secret):
            assert fragment not in without
    assert b"private-scan" not in without
    assert b"data:image/png" not in without.replace(plotly_js().encode(), b"")  # no picture at all
    assert b"Your picture is not in this file" in without
    assert without.count(b'class="chart"') == 6  # every map drawn on its own (no overlay of the channel)


def test_a_2048_channel_layer_keeps_the_file_small() -> None:
    model = load_demo()
    rng = np.random.default_rng(0)
    sizes = {}
    for channels in (64, 2048):
        maps = rng.random((channels, 14, 14), dtype=np.float32)
        info = LayerInfo(name="layer4", module_name="layer4", type="Sequential", shape=(channels, 14, 14), call=1,
                         calls=1, params=0, depth=1, is_leaf=False, spatial=True, overwritten=False)
        data = report_html(model, info, maps, view=None, version="test")
        sizes[channels] = len(data) - len(plotly_js())
        assert len(chart_specs(data)) == 2  # the mosaic and the channel (no map was given)
    # the shown channels only: all 2048 would be ~2.7 MB of data (about 6.7 bytes per pixel of the mosaic)
    assert sizes[2048] < 300_000 and abs(sizes[2048] - sizes[64]) < 20_000, sizes
    assert len(plotly_js()) + sizes[2048] < 5_500_000


def test_a_model_without_class_scores_gets_a_sentence(demo) -> None:
    image = load_image(sample_bytes("star"))
    maps = extract(demo, image, ["block1.relu1"]).activations["block1.relu1"]
    data = report_html(demo, layer_info(demo, "block1.relu1"), maps, view=None, top_k=(),
                       cam_note="Not computed here.", sanity_note="Not run here.").decode()
    assert "does not output class scores" in data and "Not computed here." in data and "Not run here." in data


def test_the_version_is_the_project_version() -> None:
    """The report names featviz_core's version; the package's (pyproject reads featviz.__version__) is the same."""
    import featviz

    found = re.search(r'^version = \{ attr = "([\w.]+)" \}', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert found and found[1] == "featviz.__version__"
    assert featviz_core.__version__ == featviz.__version__


# ---------------------------------------------------------------------------------------------------
# In the app (AppTest): the button on every page, consent defaults, what the button's data gathers


PAGES = ["pages/feature_maps.py", "pages/where_it_looks.py", "pages/compare.py", "pages/filters.py",
         "pages/model.py"]


def _button(at):  # type: ignore[no-untyped-def]
    (button,) = [b for b in at.get("download_button") if b.label == "Download report"]
    return button


def test_every_page_has_the_button_and_consent_defaults(make_app) -> None:
    at = make_app()
    for page in PAGES:
        at.switch_page(page).run()
        no_exception(at)
        _button(at)
        assert at.checkbox(key="report_include_image").value is True  # a bundled sample
    at = upload_image(make_app, "mine.png", png_bytes(random_image(3)))
    assert at.checkbox(key="report_include_image").value is False  # an upload: off until ticked
    at.checkbox(key="report_include_image").check().run()
    at.switch_page("pages/where_it_looks.py").run()
    assert at.checkbox(key="report_include_image").value is True  # kept for the same image


def test_the_report_gathers_what_the_pages_chose(make_app) -> None:
    at = make_app(page="pages/where_it_looks.py")
    at.selectbox(key="cam_method").set_value("layercam").run()
    second = at.session_state["_selection"].extraction().top_k_indices(2)[1]
    at.radio(key="cam_class").set_value(second).run()
    state = at.session_state
    sel = state["_selection"]
    request = ui_report.ReportRequest(selection=sel, include_image=True, cam_layer=state["cam_layer"],
                                      cam_class=state["cam_class"], cam_method=state["cam_method"], target=None,
                                      channel=3)
    data = ui_report.build_report(request)
    specs = chart_specs(data)
    expected = cam(sel.model, sel.image, state["cam_layer"], state["cam_class"], "layercam")
    np.testing.assert_array_equal(decode_array(specs[3]["data"][1]["z"]).reshape(expected.shape), expected.normalized)
    assert "Layer-CAM at layer" in data.decode() and "Channel 3 in detail" in data.decode()
    slow = ui_report.build_report(request.__class__(**{**request.__dict__, "cam_method": "scorecam"}))
    assert "had not finished when this report was made" in slow.decode()


def test_the_report_reads_the_choice_the_page_made(make_app) -> None:
    from ui.state import CamChoice

    at = make_app(page="pages/where_it_looks.py")
    at.selectbox(key="cam_method").set_value("layercam").run()
    at.selectbox(key="cam_layer").set_value("block3.conv2").run()
    no_exception(at)
    state = at.session_state
    sel = state["_selection"]
    choice = state["_cam_choice"].choice  # what the report button holds and reads when clicked
    assert choice == CamChoice(sel.image_digest, sel.model.key, "block3.conv2", state["cam_class"], "layercam")
    request = ui_report.request_for(sel, True, 3, choice)
    assert (request.cam_layer, request.cam_class, request.cam_method, request.target) == (
        "block3.conv2", state["cam_class"], "layercam", None)
    other_image = ui_report.request_for(sel, True, 3, CamChoice("another", sel.model.key, "block3.conv2", 1, "layercam"))
    assert (other_image.cam_layer, other_image.cam_class) == ("block3.conv2", None), "the class is the image's"
    other_model = ui_report.request_for(sel, True, 3, CamChoice(sel.image_digest, "another", "x", 1, "scorecam"))
    assert (other_model.cam_layer, other_model.cam_class, other_model.cam_method) == (None, None, "scorecam")
    data = ui_report.build_report(request)
    assert "Layer-CAM at layer" in data.decode() and "block3.conv2" in data.decode()
