"""End-to-end: an ONNX file uploaded in the real app (Chromium), its feature maps and an exact hover value.

Uses the server, browser and helpers of tests/test_browser.py. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featviz_core import extract, load_image, load_onnx
from tests import test_browser as browser_tests
from tests.appserver import AppServer, browser_marks
from tests.data_builders import png_bytes
from tests.test_browser import (
    HOVER,
    MOSAIC,
    assert_mosaic_shows,
    expect,
    hover_text,
    main,
    mosaic,
    no_traceback,
    open_app,
    screenshot,
    settle,
    sidebar,
    upload,
)

# The server, browser, context and page fixtures of the main browser tests.
app, browser, context, page = (
    browser_tests.app,
    browser_tests.browser,
    browser_tests.context,
    browser_tests.page,
)

pytestmark = browser_marks()

KERAS = (Path(__file__).parent / "data" / "onnx" / "keras_tiny.onnx").read_bytes()


def upload_onnx(page: Any, name: str, data: bytes) -> None:
    sidebar(page).get_by_text("ONNX file", exact=True).click()
    settle(page)
    box = sidebar(page).get_by_test_id("stFileUploader").filter(has_text="ONNX model")
    box.locator("input[type=file]").set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": data}
    )
    expect(sidebar(page).get_by_text(f"your ONNX file {name}", exact=False)).to_be_visible()
    settle(page)


def test_an_uploaded_onnx_file_shows_exact_values_on_hover(page: Any, app: AppServer) -> None:
    image_data = png_bytes(seed=41)
    open_app(page, app.url)
    upload(page, "photo.png", image_data, "image/png")
    upload_onnx(page, "keras_tiny.onnx", KERAS)
    sidebar(page).get_by_text("0 to 255 (raw pixels)", exact=True).click()
    settle(page)
    expect(sidebar(page).get_by_text("pixels scaled 0 to 255", exact=False)).to_be_visible()
    expect(main(page).get_by_text("keras_tiny/relu1/Relu", exact=False).first).to_be_visible()
    model = load_onnx(KERAS, "keras_tiny.onnx", normalization="0-255")
    layer = "keras_tiny/relu1/Relu"
    maps = extract(model, load_image(image_data), [layer]).activations[layer]
    page.wait_for_selector(MOSAIC + " g.hm image", state="attached")
    assert_mosaic_shows(page, maps)
    cells = mosaic(page)
    page.locator(MOSAIC).scroll_into_view_if_needed()
    channel = 4
    inner = maps[channel, 4:, 4:]  # away from the tile's corner, where the "click to open" marker sits
    dy, dx = (int(v) + 4 for v in np.unravel_index(np.argmax(inner), inner.shape))
    assert maps[channel, dy, dx] > 0
    rows, cols = np.nonzero(cells["channel"] == channel)
    text = hover_text(page, cols.min() + dx, rows.min() + dy)
    match = HOVER.search(text)
    assert match, f"hover label: {text!r}"
    assert (int(match[1]), int(match[2]), int(match[3])) == (channel, dx, dy)
    assert np.float32(float(match[4])) == maps[channel, dy, dx]
    no_traceback(page)
    assert page.outside == [], page.outside
    screenshot(page, "onnx-feature-maps-hover")
    sidebar(page).screenshot(path=str(Path(screenshot(page, "onnx-page")).with_name("onnx-sidebar.png")))


def test_a_file_run_by_onnxruntime_explains_the_missing_grad_cam(page: Any, app: AppServer) -> None:
    from tests.onnx_builders import small_cnn

    open_app(page, app.url)
    upload_onnx(page, "thresholded.onnx", small_cnn("ThresholdedRelu", alpha=0.1).SerializeToString())
    expect(sidebar(page).get_by_text("Grad-CAM is not available for this file", exact=False)).to_be_visible()
    page.get_by_test_id("stSidebarNavLink").filter(has_text="Where it looks").click()
    settle(page)
    expect(main(page).get_by_text("Grad-CAM needs the model's gradients", exact=False)).to_be_visible()
    expect(main(page).get_by_text("Score-CAM and Eigen-CAM need none", exact=False)).to_be_visible()
    assert main(page).get_by_test_id("stAlertContentError").count() == 0
    no_traceback(page)
    screenshot(page, "onnx-where-it-looks-onnxruntime")
