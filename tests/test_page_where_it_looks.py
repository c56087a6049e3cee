"""Where it looks page: prediction, the chosen method's map, the mean activation, the sanity check; Score-CAM
as a background job; models that are not classifiers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms as T

from featviz_core import CAM_METHODS, CamTarget, cam, sanity_check
from featviz_core.cam import gradcam
from featviz_core.models import LoadedModel, view_transform
from tests.conftest import decode_array, no_exception, plotly_figures
from tests.test_cam_targets import Labels, TwoHeads
from ui import cache, jobs

PAGE = "pages/where_it_looks.py"


def heat_z(fig: dict) -> np.ndarray:
    heat = next(t for t in fig["data"] if t["type"] == "heatmap")
    return decode_array(heat["z"])


def test_gradcam_for_the_top_class_and_its_sanity_check(make_app) -> None:
    at = make_app(page=PAGE)
    no_exception(at)
    assert at.title[0].value == "Where it looks"
    figs = plotly_figures(at)
    # probabilities, the map, the mean activation, the sanity check's two maps
    assert len(figs) == 5
    sel = at.session_state["_selection"]
    layer = at.session_state["cam_layer"]
    top = sel.extraction().top_k_indices(1)[0]
    assert at.session_state["cam_class"] == top and at.session_state["cam_method"] == "gradcam"
    expected = gradcam(sel.model, sel.image, layer, top)
    np.testing.assert_array_equal(heat_z(figs[1]).reshape(expected.normalized.shape), expected.normalized)
    assert "What drives" in figs[1]["layout"]["title"]["text"]
    check = sanity_check(sel.model, sel.image, layer, top)
    np.testing.assert_array_equal(heat_z(figs[4]).reshape(expected.shape), check.randomized.normalized)
    assert any(check.verdict == a.value for a in [*at.success, *at.warning, *at.info])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rank correlation"] == f"{check.spearman:.2f}" and metrics["SSIM"] == f"{check.ssim:.2f}"
    assert "Does this depend on the model?" in [h.value for h in at.subheader]


def test_another_class_layer_and_method(make_app) -> None:
    at = make_app(page=PAGE)
    sel = at.session_state["_selection"]
    second = sel.extraction().top_k_indices(2)[1]
    at.radio(key="cam_class").set_value(second).run()
    at.selectbox(key="cam_layer").set_value("block3.conv2").run()
    method = at.selectbox(key="cam_method")
    assert method.options == [CAM_METHODS[m].replace(": ", " — ", 1) for m in CAM_METHODS]
    method.set_value("gradcam++").run()
    no_exception(at)
    assert "Grad-CAM++: uses gradients; one forward and one backward pass." in [c.value for c in at.caption]
    expected = cam(sel.model, sel.image, "block3.conv2", second, "gradcam++")
    figs = plotly_figures(at)
    assert len(figs) == 5
    np.testing.assert_array_equal(heat_z(figs[1]).reshape(expected.shape), expected.normalized)


def test_score_cam_runs_in_the_background_once(make_app) -> None:
    at = make_app(page=PAGE)
    at.selectbox(key="cam_method").set_value("scorecam").run()
    no_exception(at)
    sel = at.session_state["_selection"]
    layer, top = at.session_state["cam_layer"], at.session_state["cam_class"]
    key = cache.cam_key(sel.image_digest, sel.model.key, layer, top, "scorecam", None)
    job = jobs.get(key)
    assert job is not None and job.total == 64 and job.page == "where_it_looks"
    assert job.wait(300) and job.state == "done", job.error
    at.run()
    no_exception(at)
    assert jobs.get(key) is job, "a rerun finds the finished job instead of starting another"
    figs = plotly_figures(at)
    assert len(figs) == 3  # the check of a slow method waits for a click
    np.testing.assert_array_equal(heat_z(figs[1]).reshape(job.result.shape), job.result.normalized)
    np.testing.assert_allclose(job.result.cam, cam(sel.model, sel.image, layer, top, "scorecam").cam, rtol=1e-6)
    button = next(b for b in at.button if b.label.startswith("Run the check"))
    button.click().run()
    check_job = jobs.get("sanity|" + key)
    assert check_job is not None and check_job.wait(300) and check_job.state == "done", check_job.error
    assert check_job.result.original is job.result  # the map is not computed again
    at.run()
    assert len(plotly_figures(at)) == 5


def _model(net: nn.Module, name: str) -> LoadedModel:
    torch.manual_seed(0)
    transform = T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor()])
    return LoadedModel(module=net.eval(), name=name, key=f"test:{name}", categories=None, input_channels=3,
                       input_size=(32, 32), transform=transform, view=view_transform(32, 32), source="test",
                       provenance="a test network that is not a classifier")


@pytest.fixture
def not_a_classifier(monkeypatch):  # type: ignore[no-untyped-def]
    def use(net: nn.Module, name: str) -> LoadedModel:
        model = _model(net, name)
        monkeypatch.setattr(cache, "demo_model", lambda: model)
        return model

    return use


def test_a_model_with_two_heads_explains_a_chosen_output_and_channel(make_app, not_a_classifier) -> None:
    model = not_a_classifier(TwoHeads(), "twoheads")
    at = make_app(page=PAGE)
    no_exception(at)
    assert at.selectbox(key="cam_output").options == ["output 0 · 3×32×32", "output 1 · 5×4"]
    at.selectbox(key="cam_output").set_value(1).run()
    at.number_input(key="cam_channel").set_value(3).run()
    assert any("do not depend on layer 'heat'" in e.value for e in at.error)  # the default layer: the heatmap head's
    at.selectbox(key="cam_layer").set_value("backbone").run()
    no_exception(at)
    assert at.session_state["_cam_target"] == CamTarget(output=1, channel=3)
    sel = at.session_state["_selection"]
    expected = cam(model, sel.image, at.session_state["cam_layer"], target=CamTarget(output=1, channel=3))
    figs = plotly_figures(at)
    assert len(figs) == 4  # the map, the mean activation, the sanity check's two maps (no probabilities)
    np.testing.assert_array_equal(heat_z(figs[0]).reshape(expected.shape), expected.normalized)
    assert "output 1, channel 3 (its mean)" in figs[0]["layout"]["title"]["text"]


def test_a_model_without_any_score_says_why_in_one_sentence(make_app, not_a_classifier) -> None:
    not_a_classifier(Labels(), "labels")
    at = make_app(page=PAGE)
    no_exception(at)
    assert len(plotly_figures(at)) == 0
    (info,) = [i.value for i in at.info if "no score" in i.value]
    assert "whole numbers" in info and "Feature maps page" in info


def test_a_model_without_gradients_is_offered_the_methods_that_need_none(make_app, monkeypatch) -> None:
    real = cache.demo_model

    def frozen() -> LoadedModel:
        return dataclasses.replace(real(), supports_gradients=False, key="demo:no-gradients")

    monkeypatch.setattr(cache, "demo_model", frozen)
    at = make_app(page=PAGE)
    no_exception(at)
    assert any("Grad-CAM needs the model's gradients" in i.value and "Score-CAM and Eigen-CAM" in i.value
               for i in at.info)
    box = at.selectbox(key="cam_method")
    assert box.value == "eigencam" and box.options == [CAM_METHODS[m].replace(": ", " — ", 1)
                                                      for m in ("scorecam", "eigencam")]
    assert any("cannot be checked this way" in i.value for i in at.info)  # the check changes PyTorch weights
    assert len(plotly_figures(at)) == 3  # probabilities, the map, the mean activation
    sel = at.session_state["_selection"]
    expected = cam(sel.model, sel.image, at.session_state["cam_layer"], at.session_state["cam_class"], "eigencam")
    np.testing.assert_array_equal(heat_z(plotly_figures(at)[1]).reshape(expected.shape), expected.normalized)
