"""Vision transformers in the real app, in Chromium: a timm ViT state dict (3 classes) and a zipped Hugging Face
``save_pretrained`` folder uploaded as "Your checkpoint", read back to the last digit through the token map's
hover; the Attention page's map drawn for both, its values and hover equal to featviz_core.attention."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from featviz_core import LoadedModel, attention, default_layer, extract, load_checkpoint, load_image
from featviz_core.images import default_sample, sample_bytes
from featviz_core.models.sources import load_hf
from tests import test_browser as kit
from tests.appserver import AppServer
from tests.test_browser import (
    HOVER,
    MOSAIC,
    expect,
    go_to,
    header_caption,
    main,
    mosaic,
    no_traceback,
    open_app,
    settle,
    sidebar,
)

# The browser tests' fixtures: one app server for this module, a fresh browser context per test.
app, browser, context, page = kit.app, kit.browser, kit.context, kit.page

timm = pytest.importorskip("timm")
tr = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.browser

OVERLAY = "[data-testid=stMain] .st-key-attn_overlay .js-plotly-plot"
CELL = re.compile(r"map cell x (\d+) · y (\d+)\s*value (\S+)")
LABELS = ("no finding", "effusion", "nodule")


@pytest.fixture(scope="module")
def vit_checkpoint() -> bytes:
    """A timm vit_tiny_patch16_224 fine-tuned (seeded random) to 3 classes, as a safetensors state dict."""
    torch.manual_seed(8)
    return safetensors_torch.save(timm.create_model("vit_tiny_patch16_224", num_classes=3).eval().state_dict())


@pytest.fixture(scope="module")
def vit_model(vit_checkpoint: bytes) -> LoadedModel:
    return load_checkpoint(vit_checkpoint, filename="chest-vit.safetensors")


@pytest.fixture(scope="module")
def hf_zip(tmp_path_factory) -> bytes:
    """A tiny transformers ViT (8×8 patches, 3 named classes), saved with save_pretrained and zipped."""
    torch.manual_seed(9)
    folder: Path = tmp_path_factory.mktemp("tiny-hf-vit")
    config = tr.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=64, patch_size=8, num_labels=3, id2label=dict(enumerate(LABELS)),
                          label2id={name: i for i, name in enumerate(LABELS)})
    tr.ViTForImageClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    tr.ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"tiny-hf-vit/{path.name}")
    return buffer.getvalue()


def _sample() -> Any:
    return load_image(sample_bytes(default_sample(for_demo=True)))  # the first view's picture (demo model)


def _layer_shown(page: Any) -> Any:
    """The sidebar's layer menu (its value is the chosen layer's label: name · kind · what the map is)."""
    return sidebar(page).locator(".st-key-layer input[role='combobox']")


def _upload_model(page: Any, name: str, data: bytes) -> None:
    sidebar(page).get_by_test_id("stRadio").get_by_text("Your checkpoint", exact=True).click()
    settle(page)
    uploader = sidebar(page).get_by_test_id("stFileUploader").filter(has_text="Weights file")
    uploader.locator("input[type=file]").set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": data})
    settle(page)


def _hover(page: Any, selector: str, x: float, y: float) -> str:
    """The hover label of the plot at ``selector`` (linear axes) at data coordinates (x, y)."""
    plot = page.locator(selector)
    plot.scroll_into_view_if_needed()
    page.mouse.move(2, 2)
    page.wait_for_selector(selector + " .hoverlayer .hovertext", state="detached")
    px, py = plot.evaluate(
        """(el, [x, y]) => { const fl = el._fullLayout;
            const box = el.querySelector('.nsewdrag').getBoundingClientRect();
            return [box.left + fl.xaxis.l2p(x), box.top + fl.yaxis.l2p(y)]; }""",
        [float(x), float(y)],
    )
    page.mouse.move(px, py)
    page.wait_for_selector(selector + " .hoverlayer .hovertext")
    return kit.ZERO_WIDTH.sub("", page.locator(selector + " .hoverlayer .hovertext").first.text_content() or "")


def _assert_exact_hovers(page: Any, maps: np.ndarray, count: int = 2) -> None:
    """The strongest shown channels' largest values, read through the mosaic's hover, equal ``maps``."""
    page.wait_for_selector(MOSAIC + " g.hm image", state="attached")
    settle(page)
    cells = mosaic(page)
    page.locator(MOSAIC).scroll_into_view_if_needed()
    for channel in np.argsort(-maps[:64].max(axis=(1, 2)))[:count]:
        below_label = maps[channel].copy()
        below_label[: max(1, min(3, maps.shape[1] // 4))] = -np.inf  # the channel number sits in the top rows
        dy, dx = np.unravel_index(np.argmax(below_label), below_label.shape)
        rows, cols = np.nonzero(cells["channel"] == channel)
        text = kit.hover_text(page, cols.min() + dx, rows.min() + dy)
        match = HOVER.search(text)
        assert match, f"hover label: {text!r}"
        assert (int(match[1]), int(match[2]), int(match[3])) == (channel, dx, dy)
        assert np.float32(float(match[4])) == maps[channel, dy, dx] != 0


def _assert_attention_drawn(page: Any, model: LoadedModel, grid: tuple[int, int] = (14, 14)) -> None:
    """On the Attention page: the class token's attention (last block, mean of the heads) drawn over the image,
    equal to featviz_core.attention, its largest value read back through the hover."""
    expected = attention(model, _sample())
    assert expected.grid == grid
    go_to(page, "Attention", "Attention")
    page.wait_for_selector(OVERLAY + " g.hm image", state="attached")
    expect(main(page).get_by_text(f"{grid[0]}×{grid[1]} patches", exact=False)).to_be_visible()
    z = np.array(page.locator(OVERLAY).evaluate(
        "(el) => Array.from(el._fullData.find(t => t.type === 'heatmap').z, r => Array.from(r))"), dtype=np.float64)
    assert z.shape == grid and np.isfinite(z).all() and z.max() > 0
    np.testing.assert_allclose(z, expected.mean, rtol=1e-5, atol=1e-8)
    cy, cx = np.unravel_index(np.argmax(expected.mean), expected.mean.shape)
    x0, dx, y0, dy = page.locator(OVERLAY).evaluate(
        "(el) => { const h = el._fullData.find(t => t.type === 'heatmap'); return [h.x0, h.dx, h.y0, h.dy]; }")
    text = _hover(page, OVERLAY, x0 + cx * dx, y0 + cy * dy)  # the centre of map cell (cx, cy)
    match = CELL.search(text)
    assert match, f"hover label: {text!r}"
    assert (int(match[1]), int(match[2])) == (cx, cy)
    assert float(match[3]) == pytest.approx(float(expected.mean[cy, cx]), rel=1e-5)
    no_traceback(page)


def test_a_timm_vit_checkpoint_opens_on_its_token_map_with_exact_values_and_its_attention(
        page: Any, app: AppServer, vit_checkpoint: bytes, vit_model: LoadedModel) -> None:
    layer = default_layer(vit_model)
    assert layer == "blocks.5"
    maps = extract(vit_model, _sample(), [layer]).activations[layer]
    assert maps.shape == (192, 14, 14)

    open_app(page, app.url)
    _upload_model(page, "chest-vit.safetensors", vit_checkpoint)
    expect(_layer_shown(page)).to_have_value("blocks.5 · Block · tokens 192×14×14", timeout=90_000)
    expect(header_caption(page)).to_contain_text("vit_tiny_patch16_224 · layer blocks.5 (192×14×14)")
    expect(sidebar(page).get_by_text("detected architecture vit_tiny_patch16_224", exact=False)).to_be_visible()
    _assert_exact_hovers(page, maps)
    _assert_attention_drawn(page, vit_model)
    no_traceback(page)


def test_a_zipped_hugging_face_folder_shows_its_token_map_class_names_and_attention(
        page: Any, app: AppServer, hf_zip: bytes) -> None:
    model = load_hf(hf_zip, filename="tiny-hf-vit.zip")
    layer = default_layer(model)
    maps = extract(model, _sample(), [layer]).activations[layer]
    assert maps.shape == (32, 8, 8)

    open_app(page, app.url)
    _upload_model(page, "tiny-hf-vit.zip", hf_zip)
    expect(_layer_shown(page)).to_have_value(re.compile(r"· tokens 32×8×8$"), timeout=90_000)
    expect(sidebar(page).get_by_text("tiny-hf-vit.zip", exact=False).last).to_be_visible()
    shown = sidebar(page).get_by_test_id("stProgress").all_inner_texts()
    assert {name for name in LABELS if any(name in text for text in shown)} == set(LABELS), shown
    _assert_exact_hovers(page, maps)
    _assert_attention_drawn(page, model, grid=(8, 8))
    no_traceback(page)
