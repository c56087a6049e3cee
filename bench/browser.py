"""In Chromium against the running app (resnet18): upload -> first map, layer change, colormap change.

The app runs through ``tests/appserver.py`` with a seeded random resnet18 state dict placed where
torchvision's pretrained weights would be (``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``), so the
sidebar's "ImageNet model" path shows resnet18 without a network.

"Rendered" is detected in two steps, both polled every 10 ms in the page:

1. *visible*: the mosaic's heatmap image (``.st-key-grid_chart g.hm image``, the bitmap Plotly draws) has
   a different ``href`` than before the action: the new maps (or colours) are on screen;
2. *idle*: Streamlit's running indicator (``[data-testid="stStatusWidget"]``) is gone: the whole run
   (sidebar, statistics table...) finished.

Seconds are counted with ``time.perf_counter`` from just before the action (setting the file, choosing
the option) to each step. Targets (2 cores, resnet18): first map <= 3 s after upload, each interaction
<= 1 s (the *visible* time is the headline).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .common import clock, summary

__all__ = [
    "TARGETS",
    "LAYERS",
    "COLOURS",
    "app_with_resnet18",
    "chromium_available",
    "photo_bytes",
    "run",
]

TARGETS = {"upload_first_map_s": 3.0, "layer_change_s": 1.0, "colormap_change_s": 1.0}
RESNET18_FILE = "resnet18-f37072fd.pth"
# Distinct layers of resnet18 (each one a new forward pass: an extraction cache miss).
LAYERS = (
    "layer1.0.relu", "layer3.0.relu#2", "layer2.0.conv1", "layer4.1.relu#2", "layer1.1.bn2",
    "layer3.1.conv2", "layer2.1.relu", "layer4.0.relu", "layer1.0.conv2", "layer3.0.bn1",
)
COLOURS = (
    "Inferno (black to yellow)", "Cividis (colour-blind friendly)", "Magma (black to pale pink)",
    "Plasma (blue to yellow)", "Turbo (rainbow)", "Greys (black to white)", "Viridis (blue to yellow)",
)

_JS_HREF = """() => {
  const img = document.querySelector('.st-key-grid_chart g.hm image');
  return img ? (img.getAttribute('href') || img.getAttribute('xlink:href') || '') : null;
}"""
_JS_MARK = """() => {
  const img = document.querySelector('.st-key-grid_chart g.hm image');
  window.__benchOld = img ? (img.getAttribute('href') || img.getAttribute('xlink:href') || '') : '';
}"""
_JS_CHANGED = """() => {
  const img = document.querySelector('.st-key-grid_chart g.hm image');
  if (!img) return false;
  const href = img.getAttribute('href') || img.getAttribute('xlink:href') || '';
  return href.length > 0 && href !== window.__benchOld;
}"""
_JS_IDLE = """() => !document.querySelector('[data-testid="stStatusWidget"]')"""


def chromium_available() -> bool:
    try:
        from tests.appserver import chromium_path
    except ImportError:
        return False
    return chromium_path() is not None


def photo_bytes(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A distinct photo-like JPEG: smooth random colour fields plus grain (about 50-100 kB)."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8), "RGB")
    smooth = np.asarray(low.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-12, 13, size=smooth.shape, dtype=np.int16)
    pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def place_resnet18_weights(torch_home: Path, seed: int = 0) -> Path:
    """Save a seeded random resnet18 state dict where torchvision looks for the pretrained file."""
    import torch
    import torchvision

    path = torch_home / "hub" / "checkpoints" / RESNET18_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        torch.manual_seed(seed)
        torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@contextmanager
def app_with_resnet18(env: dict[str, str] | None = None) -> Iterator[Any]:
    """The running app (``tests.appserver.start_app``) whose first view is resnet18 "pretrained"."""
    from tests.appserver import start_app

    with tempfile.TemporaryDirectory(prefix="featviz-bench-") as tmp:
        torch_home = Path(tmp) / "torch"
        place_resnet18_weights(torch_home)
        merged = {"TORCH_HOME": str(torch_home)}
        merged.update(env or {})
        with start_app(env=merged) as app:
            yield app


@contextmanager
def browser_page(app: Any, timeout_s: float = 120.0) -> Iterator[Any]:
    """A Chromium page on the app's first view, with the mosaic drawn."""
    from playwright.sync_api import sync_playwright

    from tests.appserver import launch_browser

    with sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(app.url)
            page.wait_for_selector(".st-key-grid_chart g.hm image")
            page.wait_for_function(_JS_IDLE, polling=10)
            yield page
        finally:
            browser.close()


def _wait_rendered(page: Any, t0: float, timeout_s: float) -> dict[str, float]:
    page.wait_for_function(_JS_CHANGED, polling=10, timeout=timeout_s * 1000)
    visible = clock() - t0
    page.wait_for_function(_JS_IDLE, polling=10, timeout=timeout_s * 1000)
    idle = clock() - t0
    return {"visible_s": visible, "idle_s": idle}


def choose_upload(page: Any) -> None:
    """Sidebar: the "Upload" segment, then wait for the "Upload an image" uploader."""
    page.locator('.st-key-image_source button', has_text="Upload").click()
    page.locator('[data-testid="stSidebar"] [data-testid="stFileUploader"] input[type=file]').wait_for(
        state="attached"
    )
    page.wait_for_function(_JS_IDLE, polling=10)


def upload(page: Any, data: bytes, name: str, timeout_s: float = 120.0) -> dict[str, float]:
    """Upload ``data`` and wait until its maps are drawn; seconds to visible and to idle."""
    page.evaluate(_JS_MARK)
    field = page.locator('[data-testid="stSidebar"] [data-testid="stFileUploader"] input[type=file]')
    t0 = clock()
    field.set_input_files(files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])
    return _wait_rendered(page, t0, timeout_s)


def _select(page: Any, key: str, option_prefix: str, timeout_s: float, attempts: int = 3) -> dict[str, float]:
    """Open the selectbox ``.st-key-{key}``, type to filter, click the option starting with the prefix.

    Timing starts just before the click on the option. When the option list is re-rendered between
    finding the option and clicking it (a rerun redraws the sidebar), the click is retried from the start
    (Escape, open, type); an attempt whose click did not happen is not timed.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator(f".st-key-{key} input[role='combobox']")
    for attempt in range(attempts):
        try:
            page.wait_for_function(_JS_IDLE, polling=10, timeout=timeout_s * 1000)
            box.click(timeout=10_000)
            box.press("Control+a")
            box.type(option_prefix.split(" (")[0].strip(" ·"))
            option = page.locator('[role="option"]', has_text=option_prefix).first
            option.wait_for(state="visible", timeout=10_000)
            page.evaluate(_JS_MARK)
            t0 = clock()
            option.click(timeout=5_000)
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
            continue
        return _wait_rendered(page, t0, timeout_s)
    raise AssertionError("unreachable")  # pragma: no cover


def change_layer(page: Any, layer: str, timeout_s: float = 60.0) -> dict[str, float]:
    return _select(page, "layer", f"{layer} · ", timeout_s)


def change_colours(page: Any, label: str, timeout_s: float = 60.0) -> dict[str, float]:
    return _select(page, "cmap", label, timeout_s)


def _collect(samples: list[dict[str, float]], target: float) -> dict[str, Any]:
    visible = summary([s["visible_s"] for s in samples])
    idle = summary([s["idle_s"] for s in samples])
    return {
        "visible": visible,
        "idle": idle,
        "samples": [{k: round(v, 4) for k, v in s.items()} for s in samples],
        "target_s": target,
        "pass": visible["median"] is not None and visible["median"] <= target,
    }


def measure(page: Any, app: Any, repeats: int = 7, seed: int = 1000, offset: int = 0) -> dict[str, Any]:
    """Raw samples of uploads, layer changes and colormap changes, ``repeats`` each, after one untimed
    warm-up upload. ``offset`` shifts which images, layers and colours are used (blocks differ)."""
    choose_upload(page)
    upload(page, photo_bytes(seed + 997 + offset), "warmup.jpg")  # untimed: first file, first upload path
    passes_before = app.forward_count()
    uploads = [upload(page, photo_bytes(seed + offset + i), f"photo{i}.jpg") for i in range(repeats)]
    # a layer different from the current one on every step (the default layer is not in LAYERS)
    layers = [change_layer(page, LAYERS[(offset + i) % len(LAYERS)]) for i in range(repeats)]
    passes_mid = app.forward_count()
    colours = [change_colours(page, COLOURS[(offset + i) % len(COLOURS)]) for i in range(repeats)]
    passes_after = app.forward_count()
    return {
        "upload_first_map": uploads,
        "layer_change": layers,
        "colormap_change": colours,
        "forward_passes": {
            "uploads_and_layers": passes_mid - passes_before,
            "colormap_changes": passes_after - passes_mid,
        },
    }


def run(
    repeats: int = 7,
    variants: dict[str, dict[str, str]] | None = None,
    blocks: int = 2,
) -> dict[str, Any]:
    """Start the app per variant (extra server environment), open Chromium, measure.

    Variants alternate in ``blocks`` blocks (A B A B), each block a fresh server and ``repeats / blocks``
    repetitions (at least one); the samples of a variant's blocks are pooled. ``{"skipped": reason}``
    when Chromium is missing.
    """
    if not chromium_available():
        return {"skipped": "Chromium not found (/usr/bin/chromium or $FEATVIZ_CHROMIUM)"}
    variants = variants if variants is not None else {"as shipped": {}}
    blocks = max(1, min(blocks, repeats))
    sizes = [repeats // blocks + (1 if b < repeats % blocks else 0) for b in range(blocks)]
    pooled: dict[str, dict[str, Any]] = {
        name: {"upload_first_map": [], "layer_change": [], "colormap_change": [], "forward_passes": []}
        for name in variants
    }
    done = 0
    for size in sizes:
        for name, env in variants.items():
            with app_with_resnet18(env) as app, browser_page(app) as page:
                raw = measure(page, app, repeats=size, offset=done)
            for key in ("upload_first_map", "layer_change", "colormap_change"):
                pooled[name][key].extend(raw[key])
            pooled[name]["forward_passes"].append(raw["forward_passes"])
        done += size
    out: dict[str, Any] = {
        "repeats": repeats,
        "blocks": blocks,
        "model": "resnet18 (seeded random weights in the pretrained slot), 640x480 JPEG uploads",
        "cpu_count": os.cpu_count(),
        "variants": {},
    }
    for name, data in pooled.items():
        out["variants"][name] = {
            "server_env": variants[name],
            "upload_first_map": _collect(data["upload_first_map"], TARGETS["upload_first_map_s"]),
            "layer_change": _collect(data["layer_change"], TARGETS["layer_change_s"]),
            "colormap_change": _collect(data["colormap_change"], TARGETS["colormap_change_s"]),
            "forward_passes": data["forward_passes"],
        }
    return out
