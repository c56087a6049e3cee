"""Models that are not classifiers: a chosen output and channel as the explained score (CamTarget)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from featviz_core import CamTarget, cam, describe_outputs, is_classifier, load_demo, sanity_check
from featviz_core.cam import CamError, no_target_reason, target_scores
from featviz_core.layers import hook_count
from tests.test_cam import Snapshot, loaded


class TwoHeads(nn.Module):
    """A small detector-like network: a heatmap head (1, 3, h, w) and a box head (1, 5, 4)."""

    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.heat = nn.Conv2d(4, 3, 1)
        self.box = nn.Linear(4, 5 * 4)
        self.as_dict = as_dict

    def forward(self, x: torch.Tensor) -> object:
        features = self.backbone(x)
        heat = self.heat(features)
        boxes = self.box(features.mean((2, 3))).view(-1, 5, 4)
        return {"heatmap": heat, "boxes": boxes} if self.as_dict else (heat, boxes)


class Labels(nn.Module):
    """Outputs that give no score: predicted labels (whole numbers) and a squeezed vector without batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> object:
        y = self.conv(x)
        return y.mean((2, 3)).argmax(1), y.mean((0, 2, 3)).repeat(3)


def two_heads(as_dict: bool = False):  # type: ignore[no-untyped-def]
    return loaded(TwoHeads(as_dict), (8, 8), 3, 0, f"twoheads-{'dict' if as_dict else 'tuple'}")


def reference(model, image, which: int | str, channel: int | None) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Grad-CAM at ``backbone`` written out: the target's mean, differentiated with respect to the layer."""
    net = copy.deepcopy(model.module)
    x = model.preprocess(image)
    with torch.enable_grad():
        features = net.backbone(x).detach().requires_grad_(True)
        heat = net.heat(features)
        boxes = net.box(features.mean((2, 3))).view(-1, 5, 4)
        chosen = {0: heat, 1: boxes, "heatmap": heat, "boxes": boxes}[which]
        score = (chosen[0, channel] if channel is not None else chosen[0]).mean()
        (g,) = torch.autograd.grad(score, features)
    a, g = features[0].detach().double().numpy(), g[0].double().numpy()
    return {"cam": np.maximum(np.tensordot(g.mean((1, 2)), a, axes=1), 0), "score": float(score.detach()), "a": a}


def test_outputs_are_described(image) -> None:
    outputs = describe_outputs(two_heads())
    assert [(o.output, o.shape, o.channels, o.explainable) for o in outputs] == [
        (0, (1, 3, 8, 8), 3, True), (1, (1, 5, 4), 5, True)
    ]
    assert outputs[0].label == "output 0 · 3×8×8" and outputs[1].label == "output 1 · 5×4"
    named = describe_outputs(two_heads(as_dict=True))
    assert [o.output for o in named] == ["heatmap", "boxes"]
    assert not is_classifier(two_heads()) and is_classifier(load_demo())
    assert no_target_reason(two_heads()) is None


@pytest.mark.parametrize(("as_dict", "which", "channel"), [
    (False, 0, 2), (False, 1, 3), (False, 0, None), (True, "heatmap", 1), (True, "boxes", 0),
])
def test_gradcam_of_a_chosen_output_and_channel(image, as_dict: bool, which: int | str, channel: int | None) -> None:
    model = two_heads(as_dict)
    snapshot = Snapshot(model)
    target = CamTarget(output=which, channel=channel)
    result = cam(model, image, "backbone", target=target)
    expected = reference(model, image, which, channel)
    assert expected["cam"].max() > 0
    np.testing.assert_allclose(result.cam, expected["cam"], rtol=1e-5, atol=1e-7)
    assert result.score == pytest.approx(expected["score"], rel=1e-5)
    assert result.target == target and result.class_index == (-1 if channel is None else channel)
    assert np.isnan(result.probability) and result.probabilities.shape == (0,)
    assert result.class_name == target.label() and "(its mean)" in result.class_name
    snapshot.check()


def test_score_cam_of_a_target_uses_the_same_score(image) -> None:
    """Score-CAM on the box head: the target's mean for each masked input, computed here by hand."""
    model = two_heads()
    target = CamTarget(output=1, channel=3)
    result = cam(model, image, "backbone", method="scorecam", target=target)
    x = model.preprocess(image)
    a = reference(model, image, 1, 3)["a"]
    scores = []
    with torch.no_grad():
        for k in range(a.shape[0]):
            m = a[k]
            mask = (m - m.min()) / (m.max() - m.min())
            scores.append(float(model.module(x * torch.from_numpy(mask).float())[1][0, 3].mean()))
    w = np.exp(np.array(scores) - max(scores))
    expected = np.maximum(np.tensordot(w / w.sum(), a, axes=1), 0)
    np.testing.assert_allclose(result.cam, expected, rtol=1e-5, atol=1e-7)


def test_sanity_check_of_a_target(image) -> None:
    model = two_heads()
    result = sanity_check(model, image, "backbone", target=CamTarget(output=0, channel=1))
    assert result.original.target == result.randomized.target == CamTarget(output=0, channel=1)
    assert result.randomized_modules == ("box", "heat", "backbone.0")


def test_without_a_target_a_non_classifier_is_refused_in_a_sentence(image) -> None:
    with pytest.raises(CamError, match="needs a classifier.*describe_outputs"):
        cam(two_heads(), image, "backbone")
    assert hook_count(two_heads().module) == 0


@pytest.mark.parametrize(("target", "message"), [
    (CamTarget(output=2, channel=0), r"has no output 2; its outputs are: 0, 1"),
    (CamTarget(output=0, channel=3), r"Channel 3 does not exist: output 0 of twoheads-tuple has 3, numbered 0 to 2"),
    (CamTarget(output=None, channel=0), r"returns a tuple, not one tensor"),
    (CamTarget(output=0, channel=True), r"Channel True does not exist"),  # type: ignore[arg-type]
])
def test_wrong_targets_say_what_to_choose(image, target: CamTarget, message: str) -> None:
    model = two_heads()
    snapshot = Snapshot(model)
    with pytest.raises(CamError, match=message):
        cam(model, image, "backbone", target=target)
    snapshot.check()


def test_a_class_and_a_target_together_are_refused(image) -> None:
    demo = load_demo()
    with pytest.raises(CamError, match="either a class or a target"):
        cam(demo, image, "block3", 1, target=CamTarget(channel=1))
    np.testing.assert_array_equal(cam(demo, image, "block3", target=CamTarget(channel=1)).cam,
                                  cam(demo, image, "block3", 1).cam)


def test_outputs_without_a_score_get_one_sentence(image) -> None:
    model = loaded(Labels(), (8, 8), 3, 0, "labels")
    outputs = describe_outputs(model)
    assert [o.explainable for o in outputs] == [False, False]
    assert "whole numbers" in outputs[0].why_not and "batch dimension" in outputs[1].why_not
    reason = no_target_reason(model)
    assert reason is not None and reason.count(". ") == 0 and reason.endswith(".")
    assert "output 0: it holds whole numbers" in reason and "Feature maps page" in reason
    with pytest.raises(CamError, match="whole numbers"):
        cam(model, image, "conv", target=CamTarget(output=0))


def test_target_scores_are_means_per_image() -> None:
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    np.testing.assert_array_equal(target_scores(maps, CamTarget(channel=1), 2).numpy(), [5.5, 17.5])
    np.testing.assert_array_equal(target_scores((maps,), CamTarget(output=0), 2).numpy(), [5.5, 17.5])
    assert CamTarget(output="boxes", channel=3).key == "out=boxes,ch=3" and CamTarget().key == "all"
