"""Feature maps page, driven in-process with AppTest."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from featviz_core import extract, load_image
from featviz_core.demo import load_demo
from featviz_core.figures.preview import heatmap_png, still_layout
from tests.conftest import decode_array, no_exception, plotly_figures, upload_image
from ui.still import ALT


def mosaic(at) -> dict:
    for fig in plotly_figures(at):
        if fig["data"] and fig["data"][0].get("type") == "heatmap" and any(
            t.get("name") == "tiles" for t in fig["data"]
        ):
            return fig
    raise AssertionError("no mosaic heatmap on the page")


def png(color=(200, 40, 40), size=(90, 70)) -> bytes:
    rng = np.random.default_rng(1)
    pixels = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    pixels[..., 0] = color[0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_first_view_shows_the_demo_model_heatmap_and_says_why(make_app) -> None:
    at = make_app()
    no_exception(at)
    assert at.title[0].value == "Feature maps"
    fig = mosaic(at)
    heat = fig["data"][0]
    assert decode_array(heat["z"]).dtype == np.float32
    assert "channel" in heat["hovertemplate"]
    assert any("demo model" in info.value for info in at.info)
    assert at.session_state["model_kind"] == "Demo model"


def test_mosaic_holds_exactly_the_extracted_values(make_app) -> None:
    at = make_app()
    layer = at.session_state["layer"]
    heat = mosaic(at)["data"][0]
    z = decode_array(heat["z"])
    sample = at.session_state["sample"]
    from featviz_core.images import sample_bytes

    maps = extract(load_demo(), load_image(sample_bytes(sample)), [layer]).activations[layer]
    shown = np.sort(z[np.isfinite(z)])
    assert shown.size == maps.size
    np.testing.assert_array_equal(shown, np.sort(maps.ravel()))


def test_upload_png_replaces_the_image(make_app) -> None:
    at = upload_image(make_app, "red-square.png", png())
    no_exception(at)
    assert "red-square.png" in at.caption[0].value
    assert at.session_state["_selection"].image_name == "red-square.png"
    mosaic(at)


def test_broken_upload_shows_one_friendly_sentence(make_app) -> None:
    at = upload_image(make_app, "notes.png", b"these are my notes, not a picture")
    no_exception(at)
    errors = [e.value for e in at.error]
    assert errors and "notes.png" in errors[0] and "Traceback" not in errors[0]
    mosaic(at)  # the app goes on with a sample


def test_choosing_a_channel_opens_its_detail(make_app) -> None:
    at = make_app()
    before = len(plotly_figures(at))
    at.number_input(key="channel").set_value(3).run()
    no_exception(at)
    assert any(h.value == "Channel 3" for h in at.subheader)
    figs = plotly_figures(at)
    assert len(figs) == before + 3  # overlay, full-resolution map, histogram
    assert {m.label for m in at.metric} >= {"Lowest", "Highest", "Average", "Spread (std)", "Exactly zero"}


def test_a_vit_token_layer_shows_its_grid_and_the_class_tokens_exact_value(make_app, monkeypatch) -> None:
    monkeypatch.setenv("FEATVIZ_MODEL", "tests.custom_models:build_vit")
    at = make_app()
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.layer.name == "blocks.5" and sel.layer.label == "blocks.5 · Block · tokens 192×14×14"
    tiles = decode_array(mosaic(at)["data"][0]["z"])
    maps = extract(sel.model, sel.image, ["blocks.5"])
    np.testing.assert_array_equal(tiles[:14, :14], maps.activations["blocks.5"][0])  # channel 0 on the patch grid
    at.number_input(key="channel").set_value(7).run()
    no_exception(at)
    value = float(maps.prefix["blocks.5"][0, 7])
    assert any(f"class token **{value:.6g}**" in m.value for m in at.markdown), "the class token's value in words"


def test_scale_and_order_change_the_grid_and_say_so(make_app) -> None:
    at = make_app()
    shared = mosaic(at)["data"][0]
    assert "whole layer" in shared["colorbar"]["title"]["text"]
    at.radio(key="scale").set_value("channel").run()
    per_channel = mosaic(at)["data"][0]
    assert "per channel" in per_channel["colorbar"]["title"]["text"]
    at.selectbox(key="order").set_value("mean").run()
    no_exception(at)
    sel = at.session_state["_selection"]
    maps = sel.maps()
    first_label = mosaic(at)["data"][1]["text"][0]
    assert int(first_label) == int(np.argmax(maps.reshape(maps.shape[0], -1).mean(axis=1)))


def test_large_layer_is_paged(make_app, imagenet_home) -> None:
    at = make_app(imagenet=imagenet_home)
    no_exception(at)
    assert at.session_state["model_spec"] == "tv:resnet18"
    assert at.session_state["layer"] == "layer2.1.relu#2"
    pages = at.selectbox(key="grid_page")
    assert len(pages.options) == 2  # 128 channels, 64 a page
    tiles = mosaic(at)["data"][1]
    assert len(tiles["text"]) == 64
    pages.set_value(1).run()
    assert sorted(int(t) for t in mosaic(at)["data"][1]["text"]) == list(range(64, 128))


def test_statistics_table_and_exports_are_offered(make_app) -> None:
    at = make_app()
    assert not at.dataframe, "the table is built only when its expander is opened"
    at.session_state["stats_table_open"] = True  # what opening the expander does
    at.run()
    frames = at.dataframe
    assert frames, "the per-channel statistics table is shown"
    table = frames[0].value
    sel = at.session_state["_selection"]
    assert len(table) == sel.maps().shape[0]
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download maps (.npz)" in labels and "Download statistics (.csv)" in labels


def test_the_first_mosaic_comes_with_a_still_picture_once(make_app) -> None:
    at = make_app()
    styles = [h.proto.body for h in at.get("html")]
    assert any("st-key-grid_box:has(.js-plotly-plot) .st-key-grid_still" in body for body in styles)  # hidden once drawn
    assert any("image-rendering: pixelated" in body for body in styles)
    # a Markdown image (drawn by code the browser has from the start) of a data URL (in the page's own message)
    stills = [m for m in at.markdown if m.value.startswith(f"![{ALT}](data:image/png;base64,")]
    assert len(stills) == 1
    fig = go.Figure(mosaic(at))
    fig.data[0].z = decode_array(mosaic(at)["data"][0]["z"])
    layout = still_layout(fig)
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(stills[0].value.split(",", 1)[1].rstrip(")")))))
    assert layout is not None and picture.shape[:2] == (fig.layout.height, layout.total_width)  # the chart's height
    ys, xs = layout.cell_centres()
    cells = np.asarray(Image.open(io.BytesIO(heatmap_png(fig))))
    assert np.array_equal(picture[np.ix_(ys, xs)], cells)  # each cell one block of its colour
    assert not picture[: layout.top, :, 3].any() and not picture[:, layout.width:, 3].any()  # margins, colour bar
    at.run()  # any later run: Plotly is loaded by then, no picture is sent again
    no_exception(at)
    assert not [m for m in at.markdown if "data:image" in m.value]
    mosaic(at)
