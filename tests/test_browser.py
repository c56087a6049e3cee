"""End-to-end tests: the real app (``streamlit run app.py``) driven in Debian's headless Chromium, as a new
user would use it. One server for the module (offline, empty TORCH_HOME: the first view is the demo model),
a fresh browser context per test. Each test leaves a screenshot in ``artifacts/screenshots/<test>.png`` and
the server's log is in ``artifacts/browser-server.log``.

Run: ``.venv/bin/python -m pytest tests/test_browser.py`` (skipped when no Chromium is found).
"""

from __future__ import annotations

import io
import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from featviz_core import LoadedModel, extract, load_image
from featviz_core.demo import load_demo
from featviz_core.images import default_sample, image_digest, sample_bytes
from tests.appserver import ROOT, AppServer, browser_marks, chromium, start_app
from tests.data_builders import broken_bytes, dicom_bytes, jpeg_bytes, png_bytes

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks()

ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
TIMEOUT_MS = 30_000  # a first forward pass plus drawing takes a few seconds on 2 slow cores
DEMO_LAYER = "block2.relu1"  # the demo model's default layer
ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060]")  # the mosaic's axis labels carry invisible suffixes
HOVER = re.compile(r"channel (\d+)\s*x (\d+) · y (\d+)\s*value (\S+?)(?:colour|$)")

MAIN_PLOT = "[data-testid=stMain] .js-plotly-plot"  # st.plotly_chart's and ui/light_chart.py's
MOSAIC = "[data-testid=stMain] .st-key-grid_chart .js-plotly-plot"  # the chart drawn with key="grid_chart"


# ---------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    with start_app(log_path=ARTIFACTS / "browser-server.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(camera=True) as browser:
        yield browser


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return load_demo()


# Installed in every page before its first script (new_context): after each user action (a trusted click, key,
# change, drop), whether a script run (or fragment run) has been seen since, so settle() can wait for the run
# an action caused. A run is seen when Streamlit's script state is or was "running", or an element goes stale.
RUN_TRACKER = """
window.__fvInput = 0; window.__fvRan = true; window.__fvLast = '';
for (const type of ['click', 'keydown', 'change', 'input', 'mouseup', 'drop']) {
  document.addEventListener(type, (e) => { if (!e.isTrusted) return;
    window.__fvInput = performance.now(); window.__fvRan = false; window.__fvLast = type; }, true);
}
const fvState = () => { const app = document.querySelector('[data-testid=stApp]');
  return app ? app.getAttribute('data-test-script-state') : null; };
// New elements of the page appear only from a script run's output. On a busy machine the browser can take
// a whole run's start and end in one render, so the script state never reads 'running'; its elements still show.
const fvNewElements = (r) => [...r.addedNodes].some((n) => n.nodeType === 1 && n.closest('[data-testid=stMain]')
  && (n.matches('[data-testid=stElementContainer]') || n.querySelector('[data-testid=stElementContainer]')));
new MutationObserver((records) => {
  for (const r of records) {
    if (r.type === 'attributes' && r.attributeName === 'data-test-script-state' && r.oldValue === 'running') window.__fvRan = true;
    if (r.type === 'attributes' && r.attributeName === 'data-stale' && r.target.getAttribute('data-stale') === 'true') window.__fvRan = true;
    if (r.type === 'childList' && window.__fvRan === false && fvNewElements(r)) window.__fvRan = true;
  }
  if (fvState() === 'running') window.__fvRan = true;
}).observe(document, {subtree: true, childList: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state', 'data-stale']});
"""


def new_context(browser: Any, **options: Any) -> Any:
    """A browser context whose pages track script runs for :func:`settle`."""
    ctx = browser.new_context(**{"viewport": VIEWPORT, **options})
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.add_init_script(RUN_TRACKER)
    return ctx


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = new_context(browser, accept_downloads=True, permissions=["camera"])
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any, app: AppServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    page = context.new_page()
    page.js_errors = []  # uncaught errors in the page's JavaScript
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    page.outside = []  # requests that leave this machine: (method, url, has a body)
    page.on(
        "request",
        lambda r: page.outside.append((r.method, r.url, r.post_data_buffer is not None))
        if urllib.parse.urlsplit(r.url).hostname not in ("127.0.0.1", "localhost", None)
        and not r.url.startswith(("data:", "blob:"))
        else None,
    )
    yield page
    try:
        screenshot(page, request.node.name)
    except Exception as exc:  # a crashed page must not hide the test's own failure
        print(f"no screenshot for {request.node.name}: {exc}")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / (re.sub(r"[^\w.-]+", "_", name).strip("_") + ".png")
    page.screenshot(path=str(path))
    return path


# ---------------------------------------------------------------------------------------------------
# Helpers: what a user does


def settle(page: Any) -> None:
    """Wait until the script run (or fragment run) that the last user action asked for has ended and nothing
    on the page is stale. On a page without :data:`RUN_TRACKER` (a context not made by :func:`new_context`)
    it can only wait a moment for that run to start."""
    if page.evaluate("() => window.__fvInput === undefined"):
        page.wait_for_timeout(200)  # untracked page: a rerun starts a moment after the widget changes
    try:
        page.wait_for_function(
            """() => { const app = document.querySelector('[data-testid=stApp]');
            if (!app || app.getAttribute('data-test-connection-state') !== 'CONNECTED'
                || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
            if (window.__fvRan === false) return false;
            return !document.querySelector('[data-stale=true]'); }"""
        )
    except Exception as exc:
        state = page.evaluate(
            """() => { const app = document.querySelector('[data-testid=stApp]');
            return {connection: app && app.getAttribute('data-test-connection-state'),
                    script: app && app.getAttribute('data-test-script-state'), ran: window.__fvRan,
                    last_action: window.__fvLast, stale: document.querySelectorAll('[data-stale=true]').length}; }"""
        )
        raise AssertionError(f"the app did not settle: {state}") from exc


def no_run_needed(page: Any) -> None:
    """Tell :func:`settle` that the last action (a download, a hover, opening an expander) starts no run."""
    page.evaluate("() => { window.__fvRan = true; }")


def open_app(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(MOSAIC + " g.hm image", state="attached")
    settle(page)


def sidebar(page: Any) -> Any:
    return page.get_by_test_id("stSidebar")


def main(page: Any) -> Any:
    return page.get_by_test_id("stMain")


FRESH = ":not([data-stale=true] *)"  # not an element left over from the previous run (while a run goes on)


def header_caption(page: Any) -> Any:
    """The line under each page's title: 'image · model · layer name (shape)'."""
    return main(page).locator("[data-testid=stCaptionContainer]" + FRESH).first


def image_caption(page: Any) -> Any:
    """The caption under the image in the sidebar: 'file name · size mode'."""
    return sidebar(page).locator("[data-testid=stImageCaption]" + FRESH).first


def choose(page: Any, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.press_sequentially(option.split(" · ")[0])  # long lists are virtual: filter so the option is drawn
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def choose_source(page: Any, source: str) -> None:
    sidebar(page).get_by_test_id("stButtonGroup").get_by_role("radio", name=source, exact=True).click()
    settle(page)


def upload(page: Any, name: str, data: bytes, mime: str, *, shown: bool = True) -> None:
    """Upload a file with the sidebar's 'Upload an image' (choosing 'Upload' first if needed).

    With ``shown``, wait until the sidebar shows it (its name under the picture) and the run has ended.
    """
    files = sidebar(page).locator("[data-testid=stFileUploader] input[type=file]")
    if files.count() == 0:
        choose_source(page, "Upload")
    files.set_input_files({"name": name, "mimeType": mime, "buffer": data})
    if shown:
        expect(image_caption(page)).to_contain_text(name)
    settle(page)


def go_to(page: Any, link: str, title: str) -> None:
    page.get_by_test_id("stSidebarNavLink").filter(has_text=link).click()
    expect(main(page).locator("h1").first).to_have_text(title)
    settle(page)


def no_traceback(page: Any) -> None:
    assert page.get_by_test_id("stException").count() == 0
    assert "Traceback" not in page.inner_text("body")


def wait_for_query(page: Any, **expected: str) -> dict[str, str]:
    """Wait until the address bar's query holds ``expected`` (the app mirrors choices there); return it."""
    page.wait_for_function(
        """(want) => { const q = new URLSearchParams(window.location.search);
            return Object.entries(want).every(([k, v]) => q.get(k) === v); }""",
        arg=expected,
    )
    return query(page)


def current_url(page: Any) -> str:
    return page.evaluate("() => window.location.href")


def query(page: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(current_url(page)).query))


def _visible(text: str) -> str:
    return ZERO_WIDTH.sub("", text)


# ---------------------------------------------------------------------------------------------------
# Helpers: what is in the mosaic


def mosaic(page: Any) -> dict[str, Any]:
    """The mosaic's data as Plotly holds it in the page: z, customdata (channel per cell), colours, tiles."""
    data = page.locator(MOSAIC).evaluate(
        """(el) => {
            const heat = el._fullData.find(t => t.type === 'heatmap');
            const tiles = el._fullData.find(t => t.name === 'tiles');
            const rows = (a) => Array.from(a, r => Array.from(r, v => (Array.isArray(v) || ArrayBuffer.isView(v)) ? v[0] : v));
            return {
                z: rows(heat.z), channel: rows(heat.customdata),
                colorscale: heat.colorscale, zmin: heat.zmin, zmax: heat.zmax,
                tiles: Array.from(tiles.customdata, Number),
            };
        }"""
    )
    data["z"] = np.array(data["z"], dtype=np.float64)
    data["channel"] = np.array(data["channel"], dtype=np.float64)
    return data


def tiles_of(data: dict[str, Any]) -> dict[int, np.ndarray]:
    """Each shown channel's tile (its z values), cut out of the mosaic by the channel index per cell."""
    out = {}
    for channel in data["tiles"]:
        rows, cols = np.nonzero(data["channel"] == channel)
        out[channel] = data["z"][rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return out


def assert_mosaic_shows(page: Any, maps: np.ndarray) -> None:
    """The heatmap on screen holds exactly these float32 maps, one tile per channel (shared scale)."""
    data = mosaic(page)
    tiles = tiles_of(data)
    assert sorted(tiles) == list(range(maps.shape[0]))
    for channel, tile in tiles.items():
        assert tile.shape == maps[channel].shape
        assert np.array_equal(tile.astype(np.float32), maps[channel]), f"channel {channel} differs"


def expected_maps(demo: LoadedModel, data: bytes, layer: str = DEMO_LAYER) -> np.ndarray:
    return extract(demo, load_image(data), [layer]).activations[layer]


def screen_point(page: Any, col: float, row: float) -> tuple[float, float]:
    """Viewport coordinates of mosaic cell (column, row) (category positions of the heatmap's axes)."""
    x, y = page.locator(MOSAIC).evaluate(
        """(el, [c, r]) => { const fl = el._fullLayout;
            const box = el.querySelector('.nsewdrag').getBoundingClientRect();
            return [box.left + fl.xaxis.l2p(c), box.top + fl.yaxis.l2p(r)]; }""",
        [float(col), float(row)],
    )
    return x, y


def hover_text(page: Any, col: float, row: float) -> str:
    page.mouse.move(2, 2)
    page.wait_for_selector(MOSAIC + " .hoverlayer .hovertext", state="detached")  # the previous label is gone
    page.mouse.move(*screen_point(page, col, row))
    page.wait_for_selector(MOSAIC + " .hoverlayer .hovertext")
    return _visible(page.locator(MOSAIC + " .hoverlayer .hovertext").first.text_content() or "")


def click_tile(page: Any, channel: int) -> None:
    """Click the channel number near a tile's top-left corner (the transparent 'tiles' marker)."""
    col, row = page.locator(MOSAIC).evaluate(
        """(el, ch) => { const t = el._fullData.find(t => t.name === 'tiles');
            const i = Array.from(t.customdata, Number).indexOf(ch);
            const fl = el._fullLayout;
            return [fl.xaxis.d2c(t.x[i]), fl.yaxis.d2c(t.y[i])]; }""",
        channel,
    )
    page.locator(MOSAIC).scroll_into_view_if_needed()
    page.mouse.move(*screen_point(page, col, row))
    page.wait_for_selector(MOSAIC + " .hoverlayer .hovertext")
    page.mouse.down()
    page.mouse.up()
    settle(page)


def forward_passes_for(app: AppServer, data: bytes) -> list[Any]:
    digest = image_digest(data)[:12]
    return [p for p in app.forward_passes() if p.image == digest]


# ---------------------------------------------------------------------------------------------------
# The tests


def test_first_load_shows_a_heatmap_and_the_notice(page: Any, app: AppServer, demo: LoadedModel) -> None:
    open_app(page, app.url)
    plot = page.locator(MOSAIC)
    expect(plot).to_be_visible()
    assert plot.evaluate("(el) => el._fullData.some(t => t.type === 'heatmap')")
    box = plot.locator("g.hm image").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 300  # drawn, not an empty frame
    notice = main(page).get_by_test_id("stAlertContentInfo")
    expect(notice).to_contain_text("offline demo model")
    expect(header_caption(page)).to_contain_text(f"TinyVGG (demo) · layer {DEMO_LAYER}")
    sample = default_sample(for_demo=True)
    wait_for_query(page, model="demo", sample=sample, layer=DEMO_LAYER)
    expect(image_caption(page)).to_contain_text(f"{sample}.png")
    # What is drawn is the demo model's activations for the demo sample, to the last bit.
    data = sample_bytes(sample)
    assert_mosaic_shows(page, expected_maps(demo, data))
    assert forward_passes_for(app, data), "the server logged no forward pass for the first view"
    no_traceback(page)


UPLOADS = {
    "png": ("picture.png", "image/png", lambda: png_bytes(seed=21)),
    "jpeg": ("holiday photo.jpg", "image/jpeg", lambda: jpeg_bytes(seed=22)),
    "dicom": ("scan.dcm", "application/dicom", lambda: dicom_bytes(seed=23)),
}


@pytest.mark.parametrize("kind", list(UPLOADS))
def test_upload_shows_its_heatmap(page: Any, app: AppServer, demo: LoadedModel, kind: str) -> None:
    name, mime, build = UPLOADS[kind]
    data = build()
    open_app(page, app.url)
    upload(page, name, data, mime)
    expect(image_caption(page)).to_contain_text(name)
    expect(header_caption(page)).to_contain_text(name)
    expect(page.locator(MOSAIC + " g.hm image")).to_have_count(1)
    assert_mosaic_shows(page, expected_maps(demo, data))
    assert forward_passes_for(app, data)
    no_traceback(page)
    # the image went nowhere but this server, and the page fetched nothing from anywhere else
    assert page.outside == [], page.outside


def test_hovering_the_mosaic_shows_the_exact_value(page: Any, app: AppServer, demo: LoadedModel) -> None:
    data = png_bytes(seed=31)
    open_app(page, app.url)
    upload(page, "hover.png", data, "image/png")
    expect(image_caption(page)).to_contain_text("hover.png")
    maps = expected_maps(demo, data)
    cells = mosaic(page)
    page.locator(MOSAIC).scroll_into_view_if_needed()
    for channel, (dy, dx) in [(1, (20, 17)), (6, (9, 25))]:
        rows, cols = np.nonzero(cells["channel"] == channel)
        text = hover_text(page, cols.min() + dx, rows.min() + dy)
        match = HOVER.search(text)
        assert match, f"hover label: {text!r}"
        assert (int(match[1]), int(match[2]), int(match[3])) == (channel, dx, dy)
        assert np.float32(float(match[4])) == maps[channel, dy, dx]  # the exact float32 number
    screenshot(page, "test_hovering_the_mosaic_shows_the_exact_value-hover")


def test_clicking_a_tile_opens_its_channel(page: Any, app: AppServer) -> None:
    open_app(page, app.url)
    expect(main(page).get_by_role("heading", name=re.compile(r"^Channel \d+"))).to_have_count(0)
    click_tile(page, 5)
    expect(main(page).get_by_role("heading", name="Channel 5", exact=True)).to_be_visible()
    expect(page.get_by_role("spinbutton", name="Channel")).to_have_value("5")
    flat = page.wait_for_function("""(selector) => { const traces = [...document.querySelectorAll(selector)]
        .flatMap(el => (el._fullData || []).map(t => t.type + ':' + t.name));
      return traces.includes('image:image') && traces.some(t => /^(bar|histogram):/.test(t)) && traces; }""",
                                  arg=MAIN_PLOT).json_value()
    assert "image:image" in flat and "heatmap:map" in flat  # the overlay over the image
    assert any(t.startswith("bar:") or t.startswith("histogram:") for t in flat)  # the histogram
    expect(main(page).get_by_text("How the values are spread")).to_be_visible()
    wait_for_query(page, channel="5")
    # another tile replaces it
    page.wait_for_timeout(600)  # two clicks within 500 ms would be a double click for Plotly
    click_tile(page, 12)
    expect(main(page).get_by_role("heading", name="Channel 12", exact=True)).to_be_visible()
    no_traceback(page)


def test_display_changes_do_not_rerun_the_model(page: Any, app: AppServer, demo: LoadedModel) -> None:
    data = png_bytes(seed=51)
    open_app(page, app.url)
    upload(page, "colours.png", data, "image/png")
    expect(image_caption(page)).to_contain_text("colours.png")
    assert len(forward_passes_for(app, data)) == 1  # the model ran once for this image...
    before = app.forward_count()
    first = mosaic(page)
    shot_before = page.locator(MOSAIC).screenshot()
    choose(page, "Colours", "Inferno (black to yellow)")
    page.wait_for_function(
        "(old) => { const el = document.querySelector(" + json.dumps(MOSAIC) + ");"
        " return el && JSON.stringify(el._fullData[0].colorscale) !== old; }",
        arg=json.dumps(first["colorscale"]),
    )
    settle(page)
    after = mosaic(page)
    assert after["colorscale"] != first["colorscale"]
    # Inferno starts black (Viridis dark purple): not the pink of Streamlit's theme placeholder #000004
    assert _rgb(after["colorscale"][0][1]) == (0, 0, 4)
    assert np.array_equal(after["z"], first["z"], equal_nan=True)  # the same numbers, other colours
    shot_after = page.locator(MOSAIC).screenshot()
    assert _mean_colour(shot_before) != _mean_colour(shot_after)
    wait_for_query(page, cmap="Inferno (black to yellow)")
    # ...and more display-only changes: order, scale
    choose(page, "Order", "Highest peak")
    main(page).get_by_text("Each channel its own scale", exact=True).click()
    settle(page)
    expect(page.locator(MOSAIC)).to_contain_text("per channel")
    page.wait_for_timeout(500)
    assert app.forward_count() == before, app.log_lines("forward pass")[-3:]
    assert len(forward_passes_for(app, data)) == 1
    no_traceback(page)


def _rgb(colour: str) -> tuple[int, ...]:
    if colour.startswith("#"):
        return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return tuple(int(float(v)) for v in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3])


def _mean_colour(png: bytes) -> tuple[float, ...]:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    return tuple(np.round(pixels.reshape(-1, 3).mean(axis=0), 1))


def test_switching_pages_keeps_the_image_and_the_layer(page: Any, app: AppServer) -> None:
    open_app(page, app.url)
    upload(page, "keep me.png", png_bytes(seed=61), "image/png")
    choose(page, "Layer", "block1.conv2 · Conv2d · 16×64×64")
    expect(header_caption(page)).to_contain_text("keep me.png · TinyVGG (demo) · layer block1.conv2")
    for link, title in [("Where it looks", "Where it looks"), ("Model", "Model"), ("Feature maps", "Feature maps")]:
        go_to(page, link, title)
        expect(header_caption(page)).to_contain_text("keep me.png · TinyVGG (demo) · layer block1.conv2 (16×64×64)")
        expect(image_caption(page)).to_contain_text("keep me.png")
        no_traceback(page)
    expect(page.locator(MOSAIC + " g.hm image")).to_have_count(1)
    assert len(mosaic(page)["tiles"]) == 16
    wait_for_query(page, layer="block1.conv2")


def test_a_broken_file_gives_a_friendly_error(page: Any, app: AppServer) -> None:
    open_app(page, app.url)
    upload(page, "broken.png", broken_bytes(), "image/png", shown=False)
    error = sidebar(page).get_by_test_id("stAlertContentError")
    expect(error).to_be_visible()
    expect(error).to_contain_text("broken.png")
    expect(error).to_contain_text("Could not read broken.png as a picture")
    no_traceback(page)
    expect(page.locator(MOSAIC + " g.hm image")).to_have_count(1)  # something is still shown
    screenshot(page, "test_a_broken_file_gives_a_friendly_error-error")
    # and the app goes on working
    upload(page, "fine.png", png_bytes(seed=71), "image/png")
    expect(image_caption(page)).to_contain_text("fine.png")
    expect(sidebar(page).get_by_test_id("stAlertContentError")).to_have_count(0)
    expect(page.locator(MOSAIC + " g.hm image")).to_have_count(1)
    no_traceback(page)


def test_downloaded_npz_holds_the_exact_maps(page: Any, app: AppServer, demo: LoadedModel) -> None:
    data = png_bytes(seed=81)
    open_app(page, app.url)
    upload(page, "exact.png", data, "image/png")
    choose(page, "Layer", "block1.relu2 · ReLU · 16×64×64")
    expect(header_caption(page)).to_contain_text("exact.png · TinyVGG (demo) · layer block1.relu2")
    settle(page)
    button = main(page).get_by_test_id("stDownloadButton").filter(has_text="Download maps (.npz)")
    with page.expect_download() as info:
        button.get_by_role("button").first.click()
    download = info.value
    assert download.suggested_filename == "featviz_TinyVGG-demo_block1.relu2_exact.npz"
    with np.load(io.BytesIO(Path(download.path()).read_bytes())) as npz:
        assert list(npz.files) == ["block1.relu2"]
        got = npz["block1.relu2"]
    expected = extract(demo, load_image(data), ["block1.relu2"]).activations["block1.relu2"]
    assert got.dtype == np.float32 and expected.dtype == np.float32
    assert got.shape == expected.shape == (16, 64, 64)
    assert np.array_equal(got, expected)


def test_a_shared_link_reopens_the_same_view(page: Any, app: AppServer, context: Any) -> None:
    open_app(page, app.url)
    choose(page, "Sample image", "Circle (generated)")
    choose(page, "Layer", "block1.pool · MaxPool2d · 16×32×32")
    choose(page, "Order", "Strongest on average")
    main(page).get_by_text("Each channel its own scale", exact=True).click()
    settle(page)
    page.get_by_role("spinbutton", name="Channel").fill("7")
    page.get_by_role("spinbutton", name="Channel").press("Enter")
    settle(page)
    expect(main(page).get_by_role("heading", name="Channel 7", exact=True)).to_be_visible()
    params = wait_for_query(
        page, sample="circle", model="demo", layer="block1.pool", channel="7", order="mean", scale="channel"
    )
    assert params["cmap"] == "Viridis (blue to yellow)"
    shared = mosaic(page)
    link = current_url(page)

    other = new_context(context.browser)
    try:
        reopened = other.new_page()
        open_app(reopened, link)
        expect(header_caption(reopened)).to_contain_text("circle.png · TinyVGG (demo) · layer block1.pool (16×32×32)")
        expect(image_caption(reopened)).to_contain_text("circle.png")
        expect(main(reopened).get_by_role("heading", name="Channel 7", exact=True)).to_be_visible()
        expect(reopened.get_by_role("combobox", name="Order")).to_have_value("Strongest on average")
        expect(reopened.get_by_role("radio", name="Each channel its own scale")).to_be_checked()
        again = mosaic(reopened)
        assert again["tiles"] == shared["tiles"] != sorted(shared["tiles"])  # the same (non-trivial) order
        assert again["zmax"] == 1.0  # per-channel scale
        assert query(reopened) == params
        screenshot(reopened, "test_a_shared_link_reopens_the_same_view-reopened")
        no_traceback(reopened)
    finally:
        other.close()


def test_the_camera_takes_a_photo_and_shows_its_heatmap(page: Any, app: AppServer) -> None:
    open_app(page, app.url)
    before = app.forward_count()
    choose_source(page, "Camera")
    camera = sidebar(page).get_by_test_id("stCameraInput")
    expect(camera).to_be_visible()
    # Chromium's fake camera (a green test pattern) must be streaming before a photo can be taken
    camera.locator("video").evaluate(
        "(video) => new Promise(resolve => { const ok = () => video.readyState >= 2 && video.videoWidth > 0;"
        " if (ok()) return resolve(true);"
        " const t = setInterval(() => { if (ok()) { clearInterval(t); resolve(true); } }, 50); })"
    )
    camera.get_by_test_id("stCameraInputButton").click()
    expect(image_caption(page)).to_contain_text("camera photo", timeout=TIMEOUT_MS)
    expect(header_caption(page)).to_contain_text("camera photo · TinyVGG (demo)")
    expect(page.locator(MOSAIC + " g.hm image")).to_have_count(1)
    settle(page)
    assert app.forward_count() > before  # the photo went through the model
    no_traceback(page)


PAGES = [  # nav link, page title, what the page shows
    ("Feature maps", "Feature maps", ".st-key-grid_chart .js-plotly-plot"),
    ("Where it looks", "Where it looks", "[data-testid=stPlotlyChart]"),
    ("Compare", "Compare two images", "[data-testid=stPlotlyChart]"),
    ("Filters", "Filters", "[data-testid=stPlotlyChart]"),
    ("Model", "Model", "[data-testid=stDataFrame]"),
]


@pytest.mark.parametrize(("link", "title", "content"), PAGES, ids=[p[0].lower().replace(" ", "_") for p in PAGES])
def test_every_page_loads_without_a_traceback(
    page: Any, app: AppServer, link: str, title: str, content: str
) -> None:
    open_app(page, app.url)
    go_to(page, link, title)
    expect(main(page).locator(content).first).to_be_visible()
    no_traceback(page)
    assert main(page).get_by_test_id("stAlertContentError").count() == 0
    assert page.js_errors == []
