"""The sanity check: a map that follows the model changes when the model's weights are re-initialised; a map
that only echoes the image does not. Numbers checked against SciPy; the shared model left untouched."""

from __future__ import annotations

import gc
import itertools
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from featviz_core import FeatvizError, cam, load_demo, load_image, sample_bytes, sanity_check
from featviz_core.cam import METHODS, CamMethod, CamResult, upsample
from featviz_core.cam import sanity as sanity_module
from featviz_core.layers import hook_count
from featviz_core.models import LoadedModel
from tests.test_cam import Snapshot

scipy_stats = pytest.importorskip("scipy.stats")
scipy_ndimage = pytest.importorskip("scipy.ndimage")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return load_demo()


class EdgeMap(CamMethod):
    """An "explanation" that only echoes the image: the Sobel edge strength of the input, pooled to the
    layer's grid. It never looks at the model's weights, so randomising them cannot change it."""

    name, title, summary = "edges", "Edge map", "Edges of the image (test only)."
    uses_gradients = False

    def cam_map(self, a: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        grey = self.input.mean(dim=1, keepdim=True).double().cpu()
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
        gx = F.conv2d(grey, sobel[None, None], padding=1)
        gy = F.conv2d(grey, sobel.T[None, None], padding=1)
        edges = F.adaptive_avg_pool2d(torch.hypot(gx, gy), a.shape[1:])[0, 0]
        return edges, torch.zeros(a.shape[0], dtype=torch.float64)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as Wang et al. 2004 (and skimage with gaussian_weights=True, use_sample_covariance=False):
    SciPy's Gaussian filter (sigma 1.5, 11 taps), the mean where the window fits."""
    def blur(x: np.ndarray) -> np.ndarray:
        inner = (slice(5, -5),) * x.ndim  # where the 11-tap window fits (2-D or 3-D maps)
        return scipy_ndimage.gaussian_filter(x, sigma=1.5, truncate=3.5, mode="reflect")[inner]

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(a), blur(b)
    vx, vy, cxy = blur(a * a) - mx**2, blur(b * b) - my**2, blur(a * b) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def compared(result: sanity_module.SanityResult) -> tuple[np.ndarray, np.ndarray]:
    a = upsample(result.original.normalized, result.size).astype(np.float64)
    b = upsample(result.randomized.normalized, result.size).astype(np.float64)
    return a, b


@pytest.mark.parametrize("sample", ["star", "circle", "camera"])
def test_gradcam_depends_on_the_model_an_edge_map_does_not(demo, sample: str, monkeypatch) -> None:
    monkeypatch.setitem(METHODS, "edges", EdgeMap)
    image = load_image(sample_bytes(sample))
    grad = sanity_check(demo, image, "block3", method="gradcam")
    edges = sanity_check(demo, image, "block3", method="edges")
    assert edges.spearman > 0.999 and edges.ssim > 0.999 and edges.level == "image"
    assert grad.spearman < edges.spearman - 0.5 and grad.ssim < edges.ssim - 0.5
    assert grad.level == "model" and "changes a lot" in grad.verdict and "barely changes" in edges.verdict
    for result in (grad, edges):  # the numbers, computed independently
        a, b = compared(result)
        assert result.size == (64, 64) and a.std() > 0 and b.std() > 0
        assert result.spearman == pytest.approx(scipy_stats.spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
        assert result.ssim == pytest.approx(reference_ssim(a, b), abs=1e-12)
    assert grad.original.class_name == grad.randomized.class_name  # the same score, explained twice
    np.testing.assert_array_equal(grad.original.cam, cam(demo, image, "block3").cam)


def test_the_shared_model_is_untouched_and_the_copy_is_freed(demo, monkeypatch) -> None:
    image = load_image(sample_bytes("star"))
    demo.module.train()
    snapshot = Snapshot(demo)
    rng = torch.get_rng_state()
    copies: list[weakref.ref] = []
    shared: list[bool] = []
    real = sanity_module._randomized_copy

    def spy(model: LoadedModel, names: tuple[str, ...], seed: int) -> LoadedModel:
        made = real(model, names, seed)
        copies.append(weakref.ref(made.module))
        for name, module in made.module.named_modules():
            original = dict(model.module.named_modules())[name]
            for mine, theirs in zip(
                itertools.chain(module.parameters(recurse=False), module.buffers(recurse=False)),
                itertools.chain(original.parameters(recurse=False), original.buffers(recurse=False)),
                strict=True,
            ):
                shared.append((mine is theirs) == (name not in names))
                if name in names and mine.is_floating_point():
                    assert not torch.equal(mine, theirs), name
        assert made.lock is not model.lock and made.module is not model.module
        return made

    monkeypatch.setattr(sanity_module, "_randomized_copy", spy)
    try:
        result = sanity_check(demo, image, "block3.conv2", method="gradcam", seed=5)
    finally:
        snapshot.check()
        demo.module.eval()
    assert result.randomized_modules == ("classifier", "block3.conv2")
    assert shared and all(shared), "untouched layers are shared, re-initialised ones are new"
    assert copies and copies[0]() is None, "the copy is freed when the check returns (no gc needed)"
    assert torch.equal(torch.get_rng_state(), rng), "the global random state is not used"
    assert hook_count(demo.module) == 0
    gc.collect()


def test_seeds_and_reuse_of_the_original(demo) -> None:
    image = load_image(sample_bytes("circle"))
    first = sanity_check(demo, image, "block3", 1, "layercam", seed=1)
    again = sanity_check(demo, image, "block3", 1, "layercam", seed=1, original=first.original)
    other = sanity_check(demo, image, "block3", 1, "layercam", seed=2)
    assert again.original is first.original and again.seed == 1
    np.testing.assert_array_equal(again.randomized.cam, first.randomized.cam)
    assert (again.spearman, again.ssim) == (first.spearman, first.ssim)
    assert not np.array_equal(other.randomized.cam, first.randomized.cam)
    assert first.randomized.class_index == first.original.class_index == 1
    with pytest.raises(FeatvizError, match="another layer or method"):
        sanity_check(demo, image, "block3", 1, "gradcam", original=first.original)


def test_progress_spans_both_maps_for_score_cam(demo) -> None:
    seen: list[tuple[int, int]] = []
    sanity_check(demo, load_image(sample_bytes("star")), "block3", method="scorecam",
                 progress=lambda d, t, _p: seen.append((d, t)))
    assert seen[0] == (0, 128) and seen[-1] == (128, 128)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and {t for _, t in seen} == {128}


def test_which_layers_are_reinitialised(resnet18) -> None:
    names = sanity_module.randomized_modules(resnet18, "layer4")
    assert names[0] == "fc" and names[-1] == "layer4.0.conv1"
    assert "layer4.0.downsample.0" in names and not any(n.startswith("layer3") for n in names)
    assert sanity_module.randomized_modules(resnet18, "layer4.1.bn2") == ("fc", "layer4.1.bn2")


def test_refuses_models_without_gradients(demo) -> None:
    import dataclasses

    with pytest.raises(FeatvizError, match="cannot be checked here"):
        sanity_check(dataclasses.replace(demo, supports_gradients=False), Image.new("RGB", (64, 64)), "block3")


def test_spearman_and_ssim_against_scipy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 6, size=(20, 23)).astype(np.float64)  # many ties
        b = a + rng.normal(0, 2, size=a.shape)
        assert sanity_module.spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
        assert sanity_module.ssim(a / 10, b / 10) == pytest.approx(reference_ssim(a / 10, b / 10), abs=1e-12)
    assert sanity_module.ssim(a / 10, a / 10) == pytest.approx(1.0)
    volume = rng.uniform(0, 1, size=(12, 14, 13))  # a 3-D map: the same window along depth
    noisy = np.clip(volume + rng.normal(0, 0.2, size=volume.shape), 0, 1)
    assert sanity_module.ssim(volume, noisy) == pytest.approx(reference_ssim(volume, noisy), abs=1e-12)
    assert np.isnan(sanity_module.spearman(np.zeros(10), np.arange(10)))


def _fake(peak: float) -> CamResult:
    zero = np.full((2, 2), peak, dtype=np.float32)
    return CamResult(zero, zero, 0, "a", 0.5, np.zeros(2), "l", zero, np.zeros(1), 1.0)


@pytest.mark.parametrize(("rho", "s", "level", "words"), [
    (0.1, 0.2, "model", "changes a lot"), (0.6, 0.1, "partly", "changes only partly"),
    (0.2, 0.79, "partly", "Read it with care"), (0.85, 0.3, "image", "Be careful"), (float("nan"), 0.9, "image", "undefined"),
])
def test_verdicts(rho: float, s: float, level: str, words: str) -> None:
    got_level, sentence = sanity_module._verdict(_fake(1.0), _fake(1.0), rho, s)
    assert got_level == level and words in sentence and sentence.endswith(".")
    assert sanity_module._verdict(_fake(0.0), _fake(1.0), rho, s)[0] == "empty"
    assert sanity_module._verdict(_fake(1.0), _fake(0.0), rho, s)[0] == "model"
