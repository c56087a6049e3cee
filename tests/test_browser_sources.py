"""Model sources in the real app, in Chromium: a timm checkpoint uploaded as a user would, read back to
the last digit through the mosaic's hover. (ONNX files: tests/test_browser_onnx.py.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from featviz_core import default_layer, extract, load_checkpoint, load_image
from featviz_core.images import default_sample, sample_bytes
from tests import test_browser as kit
from tests.appserver import AppServer
from tests.test_browser import (
    HOVER,
    MOSAIC,
    expect,
    header_caption,
    hover_text,
    main,
    mosaic,
    no_traceback,
    open_app,
    screenshot,
    settle,
    sidebar,
)

# The browser tests' fixtures: one app server for this module, a fresh browser context per test.
app, browser, context, page = kit.app, kit.browser, kit.context, kit.page

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.browser


def _choose_model_kind(page: Any, kind: str) -> None:
    sidebar(page).get_by_test_id("stRadio").get_by_text(kind, exact=True).click()
    settle(page)


def _upload_weights(page: Any, name: str, data: bytes) -> None:
    uploader = sidebar(page).get_by_test_id("stFileUploader").filter(has_text="Weights file")
    uploader.locator("input[type=file]").set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": data}
    )
    settle(page)


def test_a_timm_checkpoint_shows_its_exact_values(page: Any, app: AppServer) -> None:
    torch.manual_seed(8)
    module = timm.create_model("resnet10t", num_classes=3).eval()
    data = safetensors_torch.save(module.state_dict())
    expected_model = load_checkpoint(data, filename="xray-classifier.safetensors")
    layer = default_layer(expected_model)
    image = load_image(sample_bytes(default_sample(for_demo=True)))
    maps = extract(expected_model, image, [layer]).activations[layer]

    open_app(page, app.url)
    _choose_model_kind(page, "Your checkpoint")
    _upload_weights(page, "xray-classifier.safetensors", data)
    expect(header_caption(page)).to_contain_text(f"resnet10t · layer {layer}", timeout=60_000)
    expect(sidebar(page).get_by_text("detected architecture resnet10t (timm)", exact=False)).to_be_visible()
    page.wait_for_selector(MOSAIC + " g.hm image", state="attached")
    settle(page)
    cells = mosaic(page)
    page.locator(MOSAIC).scroll_into_view_if_needed()
    probes = []
    for channel in np.argsort(-maps[:64].max(axis=(1, 2)))[:2]:  # the strongest shown: non-zero values
        below_label = maps[channel].copy()
        below_label[:3] = -np.inf  # the channel number sits in the tile's top rows
        dy, dx = np.unravel_index(np.argmax(below_label), below_label.shape)
        probes.append((int(channel), (int(dy), int(dx))))
    for channel, (dy, dx) in probes:
        rows, cols = np.nonzero(cells["channel"] == channel)
        text = hover_text(page, cols.min() + dx, rows.min() + dy)
        match = HOVER.search(text)
        assert match, f"hover label: {text!r}"
        assert (int(match[1]), int(match[2]), int(match[3])) == (channel, dx, dy)
        assert np.float32(float(match[4])) == maps[channel, dy, dx] != 0
    screenshot(page, "sources-timm-checkpoint")
    no_traceback(page)


def test_the_timm_library_is_offered_and_explains_offline(page: Any, app: AppServer) -> None:
    open_app(page, app.url)
    _choose_model_kind(page, "ImageNet model")
    sidebar(page).get_by_test_id("stButtonGroup").filter(has_text="timm").get_by_role(
        "radio", name="timm", exact=True).click()
    settle(page)
    expect(sidebar(page).get_by_text("resnet50.a1_in1k", exact=False).first).to_be_visible()
    expect(sidebar(page).get_by_text("downloads are switched off here", exact=False)).to_be_visible()
    expect(main(page).get_by_test_id("stAlertContentInfo")).to_contain_text("demo model")
    screenshot(page, "sources-timm-offline")
    no_traceback(page)
