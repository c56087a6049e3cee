"""3-D models in the app: torchvision's video classifiers in the sidebar (and in links), a 3-D model on a page for
pictures (one sentence), the Volumes page's choice of model, its report button, and a clip through a 3-D model."""

from __future__ import annotations

import numpy as np

from featviz_core.models.sources import video_models
from tests.conftest import decode_array, no_exception, plotly_figures
from tests.volume_builders import nifti, video

PAGE = "pages/volume.py"


def test_a_link_to_a_video_model_restores_it_in_the_sidebar(make_app) -> None:
    at = make_app(query={"model": "tv:r3d_18:random"})
    no_exception(at)
    state = at.session_state
    assert (state["model_kind"], state["library"], state["video_arch"]) == ("ImageNet model", "video", "r3d_18")
    assert list(at.selectbox(key="video_arch").options) == [at.selectbox(key="video_arch").format_func(n)
                                                            for n in video_models()]
    assert {"r3d_18", "mc3_18", "r2plus1d_18", "s3d"} <= set(video_models())
    assert at.toggle(key="pretrained").label == "Pretrained Kinetics-400 weights"
    model = state["_selection"].model
    assert model.is_volumetric and model.name == "r3d_18" and model.has_random_weights
    assert any("Random weights" in c.value for c in at.sidebar.caption)
    assert any("A 3-D model: its guess" in c.value for c in at.sidebar.caption)
    assert at.query_params["model"] == "tv:r3d_18:random"
    # Feature maps, a page for pictures: one sentence with a link to the Volumes page, no error, no map
    assert len(at.info) == 1 and "r3d_18 is a 3-D model" in at.info[0].value and "Volumes and clips" in at.info[0].value
    assert not at.error and not any(t.get("name") == "channels" for f in plotly_figures(at) for t in f["data"])
    for page in ("pages/where_it_looks.py", "pages/compare.py", "pages/filters.py"):
        at.switch_page(page).run()
        no_exception(at)
        assert not at.error and "r3d_18 is a 3-D model" in at.info[0].value, page
    at.switch_page("pages/model.py").run()  # the list of layers needs no picture
    no_exception(at)
    assert not at.error and not any("3-D model:" in i.value for i in at.info)
    assert not [b for b in at.get("download_button") if b.label == "Download report"]  # that one needs a picture
    assert any("report: on the Volumes and clips page" in c.value for c in at.caption)


def test_the_video_menu_offline_without_weights_warns_and_shows_the_demo(make_app) -> None:
    at = make_app(state={"model_kind": "ImageNet model", "library": "video", "video_arch": "s3d"})
    no_exception(at)
    assert at.warning and "s3d" in at.warning[0].value and "downloads are switched off" in at.warning[0].value
    assert at.session_state["_selection"].model.source == "demo"
    at.toggle(key="pretrained").set_value(False).run()
    no_exception(at)
    assert at.session_state["_selection"].model.name == "s3d"
    assert at.session_state["model_spec"] == "tv:s3d:random"


def test_the_volumes_page_uses_the_sidebars_video_model(make_app) -> None:
    at = make_app(query={"model": "tv:mc3_18:random"}, page=PAGE)
    no_exception(at)
    assert any(c.value == "The model chosen in the sidebar, mc3_18." for c in at.caption)
    assert [f for f in plotly_figures(at) if any(t.get("name") == "axial Grad-CAM" for t in f["data"])]


def test_a_2d_model_on_the_volumes_page_says_the_3d_demo_is_used(make_app) -> None:
    at = make_app(page=PAGE)
    no_exception(at)
    (caption,) = [c.value for c in at.caption if "looks at single pictures" in c.value]
    assert "the bundled 3-D demo network" in caption and "torchvision video" in caption


def _report_button(at):  # type: ignore[no-untyped-def]
    (button,) = [b for b in at.get("download_button") if b.label == "Download report"]
    return button


def test_the_report_button_asks_before_including_an_uploaded_scan(make_app) -> None:
    at = make_app(page=PAGE)
    _report_button(at)
    assert at.checkbox(key="volume_report_include_scan").value is True  # the generated phantom
    at.segmented_control(key="volume_source").set_value("upload").run()
    data = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    at.file_uploader(key="volume_upload").upload("mine.nii", nifti(data, np.eye(4)), "application/octet-stream").run()
    no_exception(at)
    _report_button(at)
    assert at.checkbox(key="volume_report_include_scan").value is False  # an upload: off until ticked
    at.checkbox(key="volume_report_include_scan").check().run()
    at.slider(key="volume_axial").set_value(1).run()
    assert at.checkbox(key="volume_report_include_scan").value is True  # kept for the same scan


def test_a_clip_goes_through_the_3d_model_frame_by_frame(make_app) -> None:
    from featviz_core import cam, default_cam_layer
    from featviz_core.cam import upsample
    from featviz_core.demo import load_demo_volume
    from featviz_core.images import load_volume

    frames = [np.full((16, 16, 3), 12 * k, dtype=np.uint8) for k in range(10)]
    for k, frame in enumerate(frames):
        frame[4:9, k:k + 5] = 250  # a bright square moving right
    blob = video(frames)
    at = make_app(page=PAGE)
    at.segmented_control(key="volume_source").set_value("upload").run()
    at.file_uploader(key="volume_upload").upload("clip.avi", blob, "video/x-msvideo").run()
    no_exception(at)
    at.slider(key="volume_frame").set_value(7).run()
    no_exception(at)
    assert any("What a 3-D model sees in this clip" in h.value for h in at.subheader)
    assert any("covers the clip's frame 7" in m.value for m in at.markdown)
    (overlay,) = [t for f in plotly_figures(at) for t in f["data"] if t.get("name") == "frame Grad-CAM"]
    clip, model = load_volume(blob, "clip.avi"), load_demo_volume()
    expected = upsample(cam(model, clip, default_cam_layer(model)).normalized, clip.shape3d)[7]
    np.testing.assert_allclose(decode_array(overlay["z"]), expected, atol=1e-5)
    assert "frame 7" in overlay["hovertemplate"]


def test_an_uploaded_r3d18_checkpoint_is_the_volumes_pages_3d_model(make_app) -> None:
    import io

    import torch
    import torchvision

    torch.manual_seed(2)
    module = torchvision.models.video.r3d_18(weights=None, num_classes=5).eval()
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    at = make_app(state={"model_kind": "Your checkpoint"}, page=PAGE)
    assert {"r3d_18", "mc3_18", "r2plus1d_18", "s3d"} <= set(at.selectbox(key="ckpt_arch").options)
    at.file_uploader(key="ckpt_file").upload("fine-tuned.pt", buffer.getvalue(), "application/octet-stream").run()
    no_exception(at)
    model = at.session_state["_selection"].model
    assert model.source == "checkpoint" and model.name == "r3d_18" and model.is_volumetric
    assert "detected architecture r3d_18 (5 classes" in model.provenance
    assert not at.error
    assert any(c.value == "The model chosen in the sidebar, r3d_18." for c in at.caption)
    assert [f for f in plotly_figures(at) if any(t.get("name") == "axial Grad-CAM" for t in f["data"])]


def test_an_uploaded_3d_onnx_file_is_the_volumes_pages_3d_model(make_app) -> None:
    from tests.test_sources_onnx_volume import export_3d, small_3d_cnn

    at = make_app(state={"model_kind": "ONNX file"}, page=PAGE)
    at.file_uploader(key="onnx_file").upload("cnn3d.onnx", export_3d(small_3d_cnn()), "application/octet-stream").run()
    no_exception(at)
    model = at.session_state["_selection"].model
    assert model.source == "onnx" and model.is_volumetric and model.input_shape == (1, 8, 16, 20)
    assert not at.error
    assert any(c.value == "The model chosen in the sidebar, cnn3d." for c in at.caption)
    assert any("A 3-D model (5-D input)" in c.value for c in at.sidebar.caption)
    assert [f for f in plotly_figures(at) if any(t.get("name") == "axial Grad-CAM" for t in f["data"])]


def test_a_3d_model_given_on_the_command_line_opens_on_the_volumes_page(make_app, monkeypatch) -> None:
    monkeypatch.setenv("FEATVIZ_MODEL", "tests.custom_models:build_densenet3d")
    at = make_app()
    no_exception(at)
    assert at.session_state["_selection"].model.is_volumetric
    assert at.title[0].value == "Volumes and clips"  # the model looks at scans: not a page for pictures first
    assert any("The model chosen in the sidebar" in c.value for c in at.caption)
    assert any(c.value == "Its guess for the scan or clip is on this page, beside the maps." for c in at.sidebar.caption)
    at.switch_page("pages/feature_maps.py").run()  # asked for afterwards: that page, with its one sentence
    no_exception(at)
    assert at.title[0].value == "Feature maps" and "is a 3-D model" in at.info[0].value


def test_a_2d_model_given_on_the_command_line_opens_on_the_feature_maps(make_app, monkeypatch) -> None:
    monkeypatch.setenv("FEATVIZ_MODEL", "tests.custom_models:build_detector")
    at = make_app()
    no_exception(at)
    assert at.title[0].value == "Feature maps"


def test_on_the_volumes_page_the_sidebar_folds_the_picture_away(make_app) -> None:
    at = make_app(page=PAGE)
    no_exception(at)
    sidebar_text = [m.value for m in at.sidebar.markdown] + [c.value for c in at.sidebar.caption]
    assert "### 1 · Scan or clip" in sidebar_text and "### 1 · Image" not in sidebar_text
    assert [e.label for e in at.sidebar.expander] == ["Picture for the other pages", "Layer for the other pages"]
    assert any("in the 3-D network" in c for c in sidebar_text)  # the page has its own layer
    assert at.sidebar.expander[1].selectbox(key="layer").value == at.session_state["_selection"].layer.name
    assert not at.sidebar.get("progress")  # no guess for a picture this page does not show
    assert any("3-D network's guess" in c for c in sidebar_text)
    assert at.session_state["_selection"].image_name  # the picture is still chosen, for the other pages
    at.switch_page("pages/feature_maps.py").run()
    no_exception(at)
    sidebar_text = [m.value for m in at.sidebar.markdown]
    assert "### 1 · Image" in sidebar_text and not at.sidebar.expander
    assert at.sidebar.get("progress")  # the top-5 is back
