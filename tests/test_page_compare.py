"""Compare page: two images, one scale, the difference."""

from __future__ import annotations

import numpy as np

from featviz_core import extract, load_image
from featviz_core.images import sample_bytes
from tests.conftest import decode_array, no_exception, plotly_figures
from tests.test_page_feature_maps import png


def test_compare_two_samples(make_app) -> None:
    at = make_app(page="pages/compare.py")
    no_exception(at)
    figs = plotly_figures(at)
    assert len(figs) == 3
    a, b, diff = (f["data"][0] for f in figs)
    assert a["zmin"] == b["zmin"] and a["zmax"] == b["zmax"], "A and B share one colour scale"
    assert diff.get("zmid") == 0 or abs(diff["zmin"]) == abs(diff["zmax"]), "differences centred at zero"
    sel = at.session_state["_selection"]
    layer = sel.layer.name
    other = at.session_state["compare_sample"]
    maps_a = sel.maps()
    maps_b = extract(sel.model, load_image(sample_bytes(other)), [layer]).activations[layer]
    z = decode_array(diff["z"])
    np.testing.assert_array_equal(np.sort(z[np.isfinite(z)]), np.sort((maps_b - maps_a).ravel()))
    table = at.dataframe[0].value
    changes = table[[c for c in table.columns if c.startswith("change")][0]].abs().to_numpy()
    assert list(changes) == sorted(changes, reverse=True)


def test_compare_with_an_upload(make_app) -> None:
    at = make_app(page="pages/compare.py")
    at.segmented_control(key="compare_source").set_value("Upload").run()
    assert any("Upload image B" in i.value for i in at.info)
    at.file_uploader(key="compare_upload").upload("after.png", png((10, 200, 10)), "image/png").run()
    no_exception(at)
    assert len(plotly_figures(at)) == 3
    at.file_uploader(key="compare_upload").clear().upload("bad.png", b"nope", "image/png").run()
    no_exception(at)
    assert at.error and "bad.png" in at.error[0].value
