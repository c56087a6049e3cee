"""A 3-D model on the Volumes and clips page in Debian's headless Chromium: ``featviz run --model`` with MONAI's
3-D DenseNet121 (tests/custom_models.py ``build_densenet3d``), a NIfTI file uploaded, the axial slice moved; the
hover on the layer's maps at that slice gives the exact value ``featviz_core.extract`` gives for the same volume,
and Grad-CAM is laid over all three planes at their slices; the page's report leaves the scan out until "Include my
scan" is ticked and draws offline. Leaves ``artifacts/screenshots/test_volume_model.png`` and ``report-volume.png``.

Run: ``.venv/bin/python -m pytest tests/test_browser_volume_model.py`` (skipped when no Chromium is found).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featviz_core import cam, default_cam_layer, default_layer, extract
from featviz_core.cam import upsample
from featviz_core.images import PLANES, Volume, load_volume
from featviz_core.models.sources import load_from_code
from tests.appserver import FEATVIZ_RUN, ROOT, AppServer, browser_marks, chromium, start_app
from tests.test_browser import go_to, main, new_context, no_traceback, screenshot, settle
from tests.test_browser_report import open_offline
from tests.volume_builders import nifti

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = [*browser_marks(), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FACTORY = "tests.custom_models:build_densenet3d"
MAPS = "[data-testid=stMain] .st-key-volume_model_maps .js-plotly-plot"
HOVER = re.compile(r"channel (\d+)\s*z (\d+) · x (\d+) · y (\d+)\s*value (\S+)")
SLICE = 33  # the axial slice the test moves to (from the middle, 20)


def cam_chart(plane: str) -> str:
    return f"[data-testid=stMain] .st-key-volume_cam_{plane} .js-plotly-plot"


def scan_bytes() -> bytes:
    """A 48×44×40 CT-like NIfTI (HU): air around a water body with a dense sphere and a rod, 1×1×2 mm voxels."""
    x, y, z = np.meshgrid(np.arange(48), np.arange(44), np.arange(40), indexing="ij")
    body = ((x - 24) / 20) ** 2 + ((y - 22) / 17) ** 2 < 1
    data = np.where(body, 30, -1000).astype(np.int16)
    data[(x - 30) ** 2 + (y - 20) ** 2 + (z - 28) ** 2 < 36] = 600
    data[((x - 15) ** 2 + (y - 25) ** 2 < 6) & (z > 5)] = 250
    return nifti(data, np.diag([1.0, 1.0, 2.0, 1.0]), gz=True)


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    with start_app(command=FEATVIZ_RUN, extra_args=("--model", FACTORY),
                   log_path=ROOT / "artifacts" / "browser-volume-model-server.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def hover_value(page: Any, channel: int, row: int, column: int) -> str:
    """Hover cell (row, column) of ``channel``'s tile in the maps' mosaic; return the hover's text."""
    page.mouse.move(2, 2)
    page.wait_for_selector(MAPS + " .hoverlayer .hovertext", state="detached")
    page.locator(MAPS).scroll_into_view_if_needed()
    x, y = page.locator(MAPS).evaluate(
        """(el, [ch, r, c]) => { const t = el._fullData[0]; const fl = el._fullLayout;
            let top = -1, left = -1;
            for (let i = 0; i < t.customdata.length && top < 0; i++) {
              const j = Array.from(t.customdata[i], Number).indexOf(ch); if (j >= 0) { top = i; left = j; } }
            const box = el.querySelector('.nsewdrag').getBoundingClientRect();
            return [box.left + fl.xaxis.d2p(t.x[left + c]), box.top + fl.yaxis.d2p(t.y[top + r])]; }""",
        [channel, row, column],
    )
    page.mouse.move(x, y)
    label = page.locator(MAPS + " .hoverlayer .hovertext").filter(has_text="value")
    expect(label).to_have_count(1)
    return re.sub("[\u200b-\u200d]", "", label.text_content() or "")  # Plotly's invisible spacers


def download_report(page: Any) -> tuple[str, bytes]:
    button = main(page).get_by_test_id("stDownloadButton").filter(has_text="Download report")
    with page.expect_download(timeout=120_000) as info:
        button.get_by_role("button").first.click()
    return info.value.suggested_filename, Path(info.value.path()).read_bytes()


def traces(page: Any, selector: str) -> list[dict[str, Any]]:
    """Each heatmap trace of a chart: its name and z as Plotly holds them in the page."""
    return page.locator(selector).evaluate(
        "(el) => el._fullData.map((t) => ({name: t.name, z: Array.from(t.z, (r) => Array.from(r))}))"
    )


def test_a_3d_model_on_an_uploaded_nifti(app: AppServer, browser: Any, tmp_path: Path) -> None:
    blob = scan_bytes()
    upload = tmp_path / "chest.nii.gz"
    upload.write_bytes(blob)
    volume = load_volume(blob, upload.name)
    model = load_from_code(FACTORY)
    layer = default_layer(model)
    maps = extract(model, volume, [layer]).activations[layer]
    depth = maps.shape[1]
    z = min(depth - 1, SLICE * depth // volume.shape3d[0])
    assert z != min(depth - 1, (volume.shape3d[0] // 2) * depth // volume.shape3d[0]), "the slice must change depth"

    context = new_context(browser, viewport={"width": 1400, "height": 2400}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        assert app.wait_for_log(r"featviz warm-up done in .*first view"), "the 3-D model was warmed up on the phantom"
        page.goto(app.url)
        expect(main(page).locator("h1").first).to_be_visible()
        settle(page)
        go_to(page, "Volumes and clips", "Volumes and clips")
        main(page).get_by_role("radio", name="Upload").or_(main(page).get_by_text("Upload", exact=True)).first.click()
        settle(page)
        main(page).locator("input[type=file]").set_input_files(str(upload))
        expect(main(page).get_by_text(volume.description)).to_be_visible()
        expect(main(page).get_by_text(f"The model chosen in the sidebar, {model.name}.")).to_be_visible()
        expect(page.locator(MAPS)).to_have_count(1, timeout=120_000)
        settle(page)

        thumb = page.locator(".st-key-volume_axial input[type=range]")
        thumb.focus()
        for _ in range(SLICE - volume.shape3d[0] // 2):
            thumb.press("ArrowRight")
        expect(thumb).to_have_value(str(SLICE))
        settle(page)
        expect(main(page).get_by_text(f"at depth {z} of {depth}")).to_be_visible()
        settle(page)

        channel, row, column = int(np.argmax(maps[:, z].max(axis=(1, 2)))), 2, 3  # away from the tile's number
        text = hover_value(page, channel, row, column)
        match = HOVER.search(text)
        assert match, text
        assert tuple(int(v) for v in match.group(1, 2, 3, 4)) == (channel, z, column, row)
        assert np.float32(float(match[5])) == pytest.approx(maps[channel, z, row, column], rel=1e-6, abs=1e-7)
        assert maps[channel, z, row, column] != 0

        result = cam(model, volume, default_cam_layer(model))
        heat = Volume(array=upsample(result.normalized, volume.shape3d), spacing=volume.spacing, kind="volume",
                      modality=None, window=None, description="")
        at = {"axial": SLICE, "coronal": volume.shape3d[1] // 2, "sagittal": volume.shape3d[2] // 2}
        for plane in PLANES:
            expect(page.locator(cam_chart(plane) + " g.hm image")).to_have_count(2)  # the scan, the map over it
            shown = {t["name"]: np.array(t["z"], dtype=np.float32) for t in traces(page, cam_chart(plane))}
            assert np.array_equal(shown[f"{plane} scan"], volume.slice(plane, at[plane])), plane
            np.testing.assert_allclose(shown[f"{plane} Grad-CAM"], heat.slice(plane, at[plane]), atol=1e-4)
            assert shown[f"{plane} Grad-CAM"].max() > 0.1, f"no Grad-CAM to see on the {plane} plane"
        page.locator(cam_chart("axial")).scroll_into_view_if_needed()
        screenshot(page, "test_volume_model")

        # the report: without the scan until "Include my scan" is ticked, drawn offline with no request
        checkbox = page.get_by_role("checkbox", name="Include my scan")
        expect(checkbox).not_to_be_checked()
        name, without = download_report(page)
        assert name.endswith("_scan_report.html") and b"Your scan is not in this file" in without
        assert upload.name.encode() not in without and volume.description.encode() not in without
        checkbox.check(force=True)
        settle(page)
        _, with_scan = download_report(page)
        assert volume.description.encode() in with_scan
        path = tmp_path / name
        path.write_bytes(with_scan)
        offline, shown, blocked, page_errors = open_offline(browser, path, "volume")
        try:
            assert shown.locator(".chart").count() == 7 and blocked == [] and page_errors == []
            assert f"at depth {z} of {depth}" in shown.inner_text("body")
        finally:
            offline.close()
        no_traceback(page)
        assert main(page).get_by_test_id("stAlertContentError").count() == 0
        assert errors == []
    finally:
        context.close()
