"""featviz_core.figures: mosaic geometry, colour scales, hovers, clicks, payload, and the other figures.

The ``browser`` tests render figures in headless Chromium (Debian's, never a downloaded one) and read the
hover text from the DOM: they check what only plotly.js can show (zero-width category labels, NaN gaps,
3-D typed arrays, the hover number format).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from featviz_core.errors import LayerError
from featviz_core.figures import (
    COLORSCALES,
    DIVERGING,
    TILES_TRACE_NAME,
    MosaicLayout,
    channel_figure,
    channel_from_selection,
    filter_mosaic_figure,
    histogram_figure,
    kernel_maps,
    layer_range,
    mosaic_figure,
    mosaic_layout,
    overlay_figure,
    probability_figure,
    rgb_filters_figure,
)

ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060]")


def visible(text: str) -> str:
    return ZERO_WIDTH.sub("", text)


def maps_of(shape: tuple[int, int, int], seed: int = 0, relu: bool = False) -> np.ndarray:
    maps = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    return np.maximum(maps, 0) if relu else maps


def heatmap(fig: go.Figure) -> Any:
    return fig.data[0]


def tiles(fig: go.Figure) -> Any:
    return next(t for t in fig.data if t.name == TILES_TRACE_NAME)


# ---------------------------------------------------------------------------------------------------
# Layout


def test_mosaic_layout_positions_and_size() -> None:
    layout = mosaic_layout(64, 56, 56)
    assert isinstance(layout, MosaicLayout)
    with pytest.raises(AttributeError):
        layout.rows = 2  # type: ignore[misc]  # frozen
    assert (layout.rows, layout.columns) == (8, 8)
    assert layout.shape == (8 * 56 + 7, 8 * 56 + 7)
    assert layout.origin(0) == (0, 0)
    assert layout.origin(1) == (0, 57)
    assert layout.origin(9) == (57, 57)
    assert layout.origin(63) == (7 * 57, 7 * 57)
    np.testing.assert_array_equal(layout.origins()[10], layout.origin(10))
    with pytest.raises(IndexError):
        layout.origin(64)


@pytest.mark.parametrize(
    ("n", "h", "w"), [(1, 7, 7), (2, 5, 5), (10, 3, 3), (64, 7, 7), (100, 1, 1), (16, 40, 10), (16, 10, 40)]
)
def test_mosaic_layout_is_near_square_and_holds_every_tile(n: int, h: int, w: int) -> None:
    layout = mosaic_layout(n, h, w)
    assert layout.rows * layout.columns >= n
    assert (layout.rows - 1) * layout.columns < n  # no empty row
    if n > 3:
        assert 0.5 <= layout.width / layout.height <= 2.0


def test_tile_at_finds_tiles_and_none_in_gaps_and_outside() -> None:
    layout = mosaic_layout(10, 3, 4, columns=4, gap=2)  # 3 rows, last row half empty
    assert (layout.rows, layout.columns, layout.shape) == (3, 4, (3 * 3 + 2 * 2, 4 * 4 + 3 * 2))
    for i in range(10):
        top, left = layout.origin(i)
        assert layout.tile_at(top, left) == i
        assert layout.tile_at(top + 2, left + 3) == i
        assert layout.tile_at(top + 2.9, left + 3.9) == i
    assert layout.tile_at(0, 4) is None and layout.tile_at(0, 5) is None  # column gap
    assert layout.tile_at(3, 0) is None and layout.tile_at(4, 0) is None  # row gap
    assert layout.tile_at(-1, 0) is None and layout.tile_at(0, layout.width) is None
    assert layout.tile_at(layout.height, 0) is None and layout.tile_at(float("nan"), 0) is None
    top, left = layout.origin(9)
    assert layout.tile_at(top, left + 6) is None  # tile 10 does not exist


# ---------------------------------------------------------------------------------------------------
# Mosaic contents


def test_mosaic_tiles_hold_the_maps_and_nan_exactly_in_the_gaps() -> None:
    maps = maps_of((12, 5, 4))
    page = [11, 0, 7, 3, 5]
    fig = mosaic_figure(maps, page, columns=3)
    layout = mosaic_layout(5, 5, 4, columns=3)
    z = np.asarray(heatmap(fig).z)
    assert z.dtype == np.float32 and z.shape == layout.shape
    inside = np.zeros(layout.shape, bool)
    for i, channel in enumerate(page):
        top, left = layout.origin(i)
        np.testing.assert_array_equal(z[top : top + 5, left : left + 4], maps[channel])
        inside[top : top + 5, left : left + 4] = True
    assert np.isnan(z[~inside]).all()  # gaps and the empty last tile
    assert not np.isnan(z[inside]).any()
    # channel index per pixel: uint8, gaps marked with 255
    customdata = np.asarray(heatmap(fig).customdata)
    assert customdata.dtype == np.uint8
    for i, channel in enumerate(page):
        top, left = layout.origin(i)
        assert (customdata[top : top + 5, left : left + 4] == channel).all()
    assert (customdata[~inside] == 255).all()
    assert heatmap(fig).hoverongaps is False


def test_mosaic_axis_labels_read_as_tile_coordinates_and_are_unique() -> None:
    fig = mosaic_figure(maps_of((6, 3, 4)), columns=3)
    layout = mosaic_layout(6, 3, 4, columns=3)
    xs, ys = list(heatmap(fig).x), list(heatmap(fig).y)
    assert len(xs) == layout.width and len(set(xs)) == layout.width
    assert len(ys) == layout.height and len(set(ys)) == layout.height
    for i in range(6):
        top, left = layout.origin(i)
        assert [visible(x) for x in xs[left : left + 4]] == ["0", "1", "2", "3"]
        assert [visible(y) for y in ys[top : top + 3]] == ["0", "1", "2"]
    assert visible(xs[4]) == "" and visible(ys[3]) == ""  # gap labels are invisible
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.type == "category"
    assert list(fig.layout.xaxis.range) == [-0.5, layout.width - 0.5]
    assert list(fig.layout.yaxis.range) == [layout.height - 0.5, -0.5]  # row 0 on top
    assert fig.layout.yaxis.scaleanchor == "x"
    assert fig.layout.uirevision


def test_mosaic_uses_uint16_channel_indices_for_large_layers() -> None:
    maps = maps_of((2048, 2, 2))
    fig = mosaic_figure(maps, range(1984, 2048))
    customdata = np.asarray(heatmap(fig).customdata)
    assert customdata.dtype == np.uint16
    assert set(np.unique(customdata)) == set(range(1984, 2048)) | {65535}
    assert '"dtype":"u2"' in fig.to_json().replace(" ", "")


def test_shared_scale_is_the_whole_layer_and_z_is_raw() -> None:
    maps = maps_of((100, 4, 4), relu=True)
    maps[99] *= 10  # the brightest channel is not on the page
    page = list(range(64))
    fig = mosaic_figure(maps, page)
    trace = heatmap(fig)
    assert (trace.zmin, trace.zmax) == (float(maps.min()), float(maps.max()))
    assert (trace.zmin, trace.zmax) == layer_range(maps)
    layout = mosaic_layout(64, 4, 4)
    top, left = layout.origin(5)
    np.testing.assert_array_equal(np.asarray(trace.z)[top : top + 4, left : left + 4], maps[5])
    assert "one scale for the whole layer" in trace.colorbar.title.text
    # another page keeps the same colours
    other = heatmap(mosaic_figure(maps, range(64, 100)))
    assert (other.zmin, other.zmax) == (trace.zmin, trace.zmax)
    # an explicit range wins
    assert (heatmap(mosaic_figure(maps, page, zrange=(0.0, 2.0))).zmin, 2.0) == (0.0, 2.0)


def test_per_channel_scale_spans_zero_to_one_and_hover_keeps_raw_values() -> None:
    maps = maps_of((9, 6, 5))
    fig = mosaic_figure(maps, scale="channel")
    trace = heatmap(fig)
    layout = mosaic_layout(9, 6, 5)
    z = np.asarray(trace.z)
    customdata = np.asarray(trace.customdata)
    assert customdata.dtype == np.float32 and customdata.shape == (*layout.shape, 2)
    for c in range(9):
        top, left = layout.origin(c)
        tile = z[top : top + 6, left : left + 5]
        assert tile.min() == 0.0 and tile.max() == 1.0
        np.testing.assert_array_equal(customdata[top : top + 6, left : left + 5, 1], maps[c])
        assert (customdata[top : top + 6, left : left + 5, 0] == c).all()
    assert (trace.zmin, trace.zmax) == (0.0, 1.0)
    assert trace.colorbar.title.text == "per channel: 0 = the channel's lowest, 1 = its highest"
    assert "%{customdata[1]" in trace.hovertemplate and "%{customdata[0]}" in trace.hovertemplate


def test_diverging_is_symmetric_around_zero() -> None:
    maps = maps_of((4, 3, 3)) + 0.5
    trace = heatmap(mosaic_figure(maps, diverging=True))
    assert trace.zmin == -trace.zmax == -float(np.abs(maps).max())
    assert trace.colorscale == go.Heatmap(colorscale=DIVERGING).colorscale
    per_channel = heatmap(mosaic_figure(maps, diverging=True, scale="channel"))
    assert (per_channel.zmin, per_channel.zmax) == (-1.0, 1.0)
    assert np.nanmax(np.abs(np.asarray(per_channel.z))) == 1.0


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 1, 1), (1, 8, 8), (3, 4, 4)])
@pytest.mark.parametrize("scale", ["shared", "channel"])
def test_constant_and_tiny_maps_give_a_usable_range_without_warnings(
    shape: tuple[int, int, int], scale: str
) -> None:
    for value in (0.0, 3.0, -2.0):
        maps = np.full(shape, value, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fig = mosaic_figure(maps, scale=scale)  # type: ignore[arg-type]
            fig.to_json()
        trace = heatmap(fig)
        assert trace.zmin < trace.zmax
        assert not np.isnan(np.asarray(trace.z)).all()
        if scale == "shared":
            assert trace.zmin <= value <= trace.zmax


def test_one_pixel_tiles_show_their_value_on_the_click_target() -> None:
    maps = maps_of((4, 1, 1))
    hovertext = tiles(mosaic_figure(maps)).hovertext
    value = hovertext[2].split("value ")[1].split("<br>")[0]
    assert value == str(maps[2, 0, 0]) and np.float32(value) == maps[2, 0, 0]  # shortest exact text


def test_unknown_channel_and_bad_shapes_raise_layer_errors() -> None:
    with pytest.raises(LayerError, match="numbered 0 to 3"):
        mosaic_figure(maps_of((4, 2, 2)), [1, 4])
    with pytest.raises(LayerError):
        mosaic_figure(np.zeros((4, 4), np.float32))


def test_empty_page_gives_a_message_not_an_error() -> None:
    fig = mosaic_figure(maps_of((4, 2, 2)), [])
    assert fig.layout.annotations[0].text == "No channels to show"


# ---------------------------------------------------------------------------------------------------
# Clicks


def test_click_targets_carry_the_channel_of_each_tile() -> None:
    page = [40, 3, 17]
    fig = mosaic_figure(maps_of((64, 6, 6)), page)
    target = tiles(fig)
    assert list(target.customdata) == page
    assert list(target.text) == ["40", "3", "17"]
    layout = mosaic_layout(3, 6, 6)
    xs, ys = list(heatmap(fig).x), list(heatmap(fig).y)
    for i in range(3):  # each target sits inside its own tile
        row, col = ys.index(target.y[i]), xs.index(target.x[i])
        assert layout.tile_at(row, col) == i
    assert target.marker.color == "rgba(0,0,0,0)"


def test_channel_from_selection_reads_streamlit_events() -> None:
    # As st.plotly_chart(on_select="rerun") returned it for a click on a tile label (Streamlit 1.67).
    event = {
        "selection": {
            "points": [
                {
                    "curve_number": 1,
                    "point_number": 5,
                    "point_index": 5,
                    "x": "1\u200b\u200c",
                    "y": "1",
                    "customdata": 241,
                    "text": "241",
                    "hovertext": "channel 241: click to open it",
                }
            ],
            "point_indices": [5],
            "box": [],
            "lasso": [],
        }
    }
    assert channel_from_selection(event) == 241
    assert channel_from_selection(event["selection"]) == 241
    assert channel_from_selection(event["selection"]["points"]) == 241
    assert channel_from_selection([{"curve_number": 1, "customdata": [7]}]) == 7
    assert (
        channel_from_selection([{"curve_number": 0, "customdata": [12.0, 0.25]}]) == 12
    )  # per-channel heatmap
    assert (
        channel_from_selection([{"curve_number": 0, "customdata": 3}, {"curve_number": 1, "customdata": 9}])
        == 9
    )
    empty = {"selection": {"points": [], "point_indices": [], "box": [], "lasso": []}}
    assert channel_from_selection(empty) is None
    assert channel_from_selection(None) is None
    assert channel_from_selection({"selection": {"points": [{"customdata": None}]}}) is None
    streamlit_elements = pytest.importorskip("streamlit.elements.plotly_chart")
    state = streamlit_elements.PlotlyChartSelectionSerde().deserialize(json.dumps(event))
    assert channel_from_selection(state) == 241  # the object st.plotly_chart really returns


# ---------------------------------------------------------------------------------------------------
# Payload


def test_payload_is_float32_binary_and_small() -> None:
    maps = maps_of((64, 56, 56), relu=True)
    fig = mosaic_figure(maps, range(64))
    text = fig.to_json()
    spec = json.loads(text)
    z = spec["data"][0]["z"]
    assert z["dtype"] == "f4" and isinstance(z["bdata"], str)
    assert spec["data"][0]["customdata"]["dtype"] == "u1"
    pixels = 64 * 56 * 56
    budget = 1.1 * (4 * pixels * 4 / 3) + pixels * 4 / 3 + 40_000
    # Plotly's to_json writes every "/" as "\u002f" (5 more bytes) to stay safe inside HTML; that part
    # depends on the data (5-15 %), so it is counted apart and bounded on its own.
    escapes = text.count("\\u002f")
    assert len(text) - 5 * escapes <= budget
    assert 5 * escapes <= 0.15 * len(text)
    decoded = np.frombuffer(__import__("base64").b64decode(z["bdata"]), np.float32)
    layout = mosaic_layout(64, 56, 56)
    np.testing.assert_array_equal(decoded.reshape(layout.shape)[:56, :56], maps[0])


def test_float16_input_is_sent_as_float32() -> None:
    fig = mosaic_figure(maps_of((4, 3, 3)).astype(np.float16))
    assert json.loads(fig.to_json())["data"][0]["z"]["dtype"] == "f4"


# ---------------------------------------------------------------------------------------------------
# Other figures


def test_channel_figure() -> None:
    map2d = maps_of((1, 6, 9))[0]
    fig = channel_figure(map2d, title="channel 3")
    trace = fig.data[0]
    assert np.asarray(trace.z).dtype == np.float32
    np.testing.assert_array_equal(np.asarray(trace.z), map2d)
    assert (trace.zmin, trace.zmax) == (float(map2d.min()), float(map2d.max()))
    assert "%{x}" in trace.hovertemplate and "%{z:" in trace.hovertemplate
    assert channel_figure(map2d, zrange=(-5.0, 5.0)).data[0].zmin == -5.0
    flat = channel_figure(np.zeros((3, 3), np.float32)).data[0]
    assert flat.zmin < flat.zmax


@pytest.mark.parametrize(
    ("image_size", "map_shape"), [((224, 224), (7, 7)), ((300, 200), (13, 17)), ((5, 5), (1, 1))]
)
def test_overlay_covers_exactly_the_image(image_size: tuple[int, int], map_shape: tuple[int, int]) -> None:
    width, height = image_size
    image = Image.new("L", image_size, 128)  # greyscale models work too
    map2d = maps_of((1, *map_shape))[0]
    fig = overlay_figure(image, map2d, opacity=0.4, smooth=True)
    picture, heat = fig.data
    assert picture.type == "image" and picture.source.startswith("data:image/png;base64,")
    mh, mw = map_shape
    assert heat.x0 - heat.dx / 2 == pytest.approx(-0.5)
    assert heat.x0 + (mw - 0.5) * heat.dx == pytest.approx(width - 0.5)
    assert heat.y0 - heat.dy / 2 == pytest.approx(-0.5)
    assert heat.y0 + (mh - 0.5) * heat.dy == pytest.approx(height - 0.5)
    assert heat.zsmooth == "best" and heat.opacity == 0.4
    assert list(fig.layout.xaxis.range) == [-0.5, width - 0.5]
    assert list(fig.layout.yaxis.range) == [height - 0.5, -0.5]
    cells = np.asarray(heat.customdata)
    assert tuple(cells[mh - 1, mw - 1]) == (mw - 1, mh - 1)  # (x, y) of the map cell
    assert overlay_figure(image, map2d, smooth=False).data[1].zsmooth is False


def test_histogram_counts_every_pixel() -> None:
    map2d = maps_of((1, 56, 56), relu=True)[0]
    fig = histogram_figure(map2d, title="distribution")
    bars = fig.data[0]
    assert int(np.sum(bars.y)) == 56 * 56
    edges = np.asarray(bars.customdata)
    widths = edges[:, 1] - edges[:, 0]
    np.testing.assert_allclose(widths, widths[0])
    assert edges[0, 0] <= map2d.min() and edges[-1, 1] > map2d.max()
    assert any(shape.x0 == 0 for shape in fig.layout.shapes)  # the zero marker
    constant = histogram_figure(np.full((4, 4), 2.0, np.float32)).data[0]
    assert int(np.sum(constant.y)) == 16


def test_probability_figure_most_probable_on_top_with_duplicate_names() -> None:
    top = [("tabby", 0.6), ("crane", 0.2), ("crane", 0.1)]
    fig = probability_figure(top)
    bars = fig.data[0]
    assert list(bars.x) == pytest.approx([60.0, 20.0, 10.0])
    assert list(fig.layout.yaxis.ticktext) == ["tabby", "crane", "crane"]
    assert fig.layout.yaxis.autorange == "reversed"  # first = top
    assert list(bars.text) == ["60.0%", "20.0%", "10.0%"]
    assert probability_figure([]).layout.annotations


def test_rgb_filters_are_normalised_honestly() -> None:
    weights = np.zeros((4, 3, 2, 2), np.float32)
    weights[1, 0, 0, 0] = 0.84  # the largest |w|
    weights[2, 2, 1, 1] = -0.84
    weights[3, 1, 0, 1] = 0.42
    fig = rgb_filters_figure(weights, columns=2)
    image = np.asarray(fig.data[0].z, dtype=np.uint8)
    assert image.shape == (4, 4, 3)
    assert image[0, 0, 1] in (127, 128)  # weight 0 -> mid-grey
    layout = mosaic_layout(4, 2, 2, columns=2, gap=0)
    top, left = layout.origin(1)
    assert image[top, left, 0] == 255
    top, left = layout.origin(2)
    assert image[top + 1, left + 1, 2] == 0
    top, left = layout.origin(3)
    assert image[top, left + 1, 1] in (191, 192)
    assert "±0.84" in fig.layout.title.subtitle.text
    customdata = np.asarray(fig.data[0].customdata)
    np.testing.assert_array_equal(customdata[top, left + 1, 3:], weights[3, :, 0, 1])
    assert tuple(customdata[top, left + 1, :3]) == (3, 1, 0)  # filter, x, y


def test_rgb_filters_partial_last_row_has_no_empty_pixels() -> None:
    weights = maps_of((13, 3, 5, 5)).reshape(13, 3, 5, 5)
    fig = rgb_filters_figure(weights, columns=4)
    assert len(fig.data) == 2
    for trace in fig.data:
        assert not np.isnan(np.asarray(trace.customdata, dtype=np.float32)).any()
    assert fig.data[1].y0 == 3 * 5
    with pytest.raises(LayerError, match="filter_mosaic_figure"):
        rgb_filters_figure(np.zeros((4, 8, 3, 3), np.float32))


def test_filter_mosaic_of_deeper_layers() -> None:
    weights = maps_of((16, 8, 3)).reshape(16, 8, 3, 1).repeat(3, axis=3)
    np.testing.assert_allclose(
        kernel_maps(weights), weights.astype(np.float64).mean(axis=1), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_array_equal(kernel_maps(weights, 2), weights[:, 2])
    fig = filter_mosaic_figure(weights, range(8), input_channel=2)
    trace = heatmap(fig)
    assert trace.zmin == -trace.zmax
    assert "weight" in trace.hovertemplate
    with pytest.raises(LayerError):
        kernel_maps(weights, 8)


def test_colour_scale_names() -> None:
    assert "Viridis" in COLORSCALES.values() and "Cividis" in COLORSCALES.values()
    for label in COLORSCALES:
        mosaic_figure(maps_of((2, 2, 2)), colorscale=label)  # plain labels are accepted


# ---------------------------------------------------------------------------------------------------
# In Chromium


def _chromium() -> str | None:
    path = os.environ.get("FEATVIZ_CHROMIUM") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        pytest.skip("Chromium not found (install chromium or set FEATVIZ_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    import plotly

    folder = tmp_path_factory.mktemp("plotly")
    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    shutil.copy(js, folder / "plotly.min.js")
    (folder / "index.html").write_text(
        '<html><body style="margin:0"><div id="fig" style="width:900px;height:800px"></div>'
        '<script src="plotly.min.js"></script></body></html>'
    )
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto((folder / "index.html").as_uri())
        page.wait_for_function("window.Plotly !== undefined")
        yield page
        browser.close()


def _show(page: Any, fig: go.Figure) -> None:
    spec = json.loads(fig.to_json())  # exactly what Streamlit sends (plotly.io.to_json)
    spec["layout"]["height"] = 800
    page.evaluate("(spec) => Plotly.newPlot('fig', spec.data, spec.layout)", spec)


def _hover(page: Any, x: float, y: float, *, label: bool = True) -> str:
    """Hover the data point (x, y) (category axes: the category's position) and return the label text.

    ``label=False``: where no label should appear (a gap); "" unless one shows up within a moment."""
    page.mouse.move(1, 1)
    page.wait_for_selector(".hovertext", state="detached")  # the previous label is gone
    point = page.evaluate(
        """([x, y]) => { const gd = document.getElementById('fig'); const fl = gd._fullLayout;
        const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return [box.left + fl.xaxis.l2p(x), box.top + fl.yaxis.l2p(y)]; }""",
        [x, y],
    )
    page.mouse.move(point[0], point[1])
    try:
        page.wait_for_selector(".hovertext", timeout=None if label else 600)
    except Exception:
        if label:
            raise
        return ""
    return page.evaluate(
        "Array.from(document.querySelectorAll('.hovertext')).map(e => e.textContent).join('|')"
    )


HOVER = re.compile(r"channel (\d+)x (\d+) · y (\d+)value (\S+?)(colour|$)")


@pytest.mark.browser
@pytest.mark.parametrize("scale", ["shared", "channel"])
def test_browser_mosaic_hover_shows_tile_coordinates_and_exact_value(browser_page: Any, scale: str) -> None:
    maps = maps_of((12, 9, 7), seed=3) * 3
    page_channels = [11, 2, 5, 0, 7, 9]
    _show(browser_page, mosaic_figure(maps, page_channels, scale=scale))  # type: ignore[arg-type]
    layout = mosaic_layout(6, 9, 7)
    for i, lx, ly in [(0, 6, 8), (1, 4, 5), (4, 3, 7), (5, 6, 4)]:
        top, left = layout.origin(i)
        text = visible(_hover(browser_page, left + lx, top + ly))
        match = HOVER.match(text)
        assert match, text
        channel, x, y, value = int(match[1]), int(match[2]), int(match[3]), match[4]
        assert (channel, x, y) == (page_channels[i], lx, ly)
        assert np.float32(float(value)) == maps[channel, y, x]  # the text gives back the exact float32
    top, left = layout.origin(1)
    assert _hover(browser_page, left + 7, top + 6, label=False) == ""  # a gap column: no hover


@pytest.mark.browser
def test_browser_click_on_a_tile_label_gives_its_channel(browser_page: Any) -> None:
    fig = mosaic_figure(maps_of((300, 6, 6)), range(250, 259))
    _show(browser_page, fig)
    browser_page.evaluate(
        "() => document.getElementById('fig').on('plotly_click', d => { window.clicked = d.points.map("
        "p => ({customdata: p.customdata, curve_number: p.curveNumber})); })"
    )
    xs, ys = list(heatmap(fig).x), list(heatmap(fig).y)
    target = tiles(fig)
    for i in (0, 4):
        browser_page.wait_for_timeout(600)  # plotly.js 4: two clicks within 500 ms are a double click
        browser_page.evaluate("() => { window.clicked = null; }")
        _hover(browser_page, xs.index(target.x[i]), ys.index(target.y[i]))
        browser_page.mouse.down()
        browser_page.mouse.up()
        browser_page.wait_for_function("window.clicked !== null")
        assert channel_from_selection(browser_page.evaluate("window.clicked")) == 250 + i


@pytest.mark.browser
def test_browser_overlay_and_filter_hovers(browser_page: Any) -> None:
    map2d = maps_of((1, 7, 7))[0]
    _show(browser_page, overlay_figure(Image.new("RGB", (224, 224), "white"), map2d))
    text = _hover(browser_page, 100, 150)  # image pixel -> map cell (3, 4)
    assert text.startswith("map cell x 3 · y 4"), text
    assert np.float32(float(text.split("value ")[1])) == map2d[4, 3]

    weights = maps_of((13, 3, 5, 5)).reshape(13, 3, 5, 5) * 0.1
    _show(browser_page, rgb_filters_figure(weights, columns=4))
    text = _hover(browser_page, 5 + 3, 5 * 2 + 4)  # filter 9, x 3, y 4
    assert text.startswith("filter 9 · x 3 · y 4"), text
    got = [float(v) for v in re.findall(r"[RGB] (-?[\d.e-]+)", text)]
    np.testing.assert_allclose(got, weights[9, :, 4, 3], rtol=1e-3)
    assert _hover(browser_page, 19, 19, label=False) == ""  # the empty corner of the last row
    assert not math.isnan(got[0])
