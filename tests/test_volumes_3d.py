"""3-D models: volumes and clips through the 3-D demo model, torchvision's video classifiers and a MONAI network
from code; 5-D feature maps, Grad-CAM in 3-D (against MONAI's), the sanity check, and the sentences for a
picture given to a 3-D model or a volume to a 2-D one."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featviz_core import (
    FeatvizError,
    InputKindError,
    extract,
    list_layers,
    load_demo,
    load_demo_volume,
    load_torchvision,
)
from featviz_core.cam import CamError, cam, default_cam_layer, sanity_check, upsample
from featviz_core.cam.methods import METHODS, GradCAM
from featviz_core.demo.volume_net import VOLUME_CLASSES, VOLUME_MEAN, VOLUME_STD
from featviz_core.demo.volume_shapes import volumes
from featviz_core.errors import ModelLoadError
from featviz_core.images import Volume, phantom_volume
from featviz_core.layers import default_layer, hook_count, layer_info
from featviz_core.models import LoadedModel, Preprocessing
from featviz_core.models.sources import load_from_code, load_module, video_models

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def shape_volume(array: np.ndarray) -> Volume:
    """A generated demo shape (values 0..1) as a Volume whose window maps 0..1 onto 0..1."""
    return Volume(array=np.ascontiguousarray(array, dtype=np.float32), spacing=(1.0, 1.0, 1.0), kind="volume",
                  modality=None, window=(0.5, 1.0), description="generated shape")  # fmt: skip


def clip(frames: int = 20, height: int = 60, width: int = 80) -> Volume:
    rng = np.random.default_rng(0)
    array = rng.uniform(0, 255, (3, frames, height, width)).round().astype(np.float32)
    return Volume(array=array, spacing=(1.0, 1.0, 1.0), kind="clip", modality=None, window=None,
                  description="random clip", fps=10.0)  # fmt: skip


def plain_clone_hooks(model: LoadedModel, tensor: torch.Tensor, names: list[str]) -> dict[str, np.ndarray]:
    """The reference: a bare forward hook on each module keeping ``output.detach().clone()`` (first call)."""
    modules = dict(model.module.named_modules())
    kept: dict[str, torch.Tensor] = {}

    def keeper(name: str):
        def hook(_module, _inputs, output) -> None:  # returns None: the output is left as it is
            if name not in kept:
                kept[name] = output.detach().clone()

        return hook

    handles = [modules[name].register_forward_hook(keeper(name)) for name in names]
    try:
        with torch.no_grad():
            model.module(tensor)
    finally:
        for handle in handles:
            handle.remove()
    return {name: kept[name][0].numpy() for name in names}


@pytest.fixture(scope="module")
def demo3d() -> LoadedModel:
    return load_demo_volume()


@pytest.fixture(scope="module")
def r3d() -> LoadedModel:
    return load_torchvision("r3d_18", weights=None)


# ---------------------------------------------------------------------------------------------------
# The 3-D demo model


def test_demo_volume_model_describes_itself(demo3d) -> None:
    assert demo3d.is_volumetric and demo3d.input_shape == (1, 32, 32, 32)
    assert demo3d.provenance == "featviz 3-D demo model (TinyVGG3D, trained on generated shapes; offline)"
    assert demo3d.categories == list(VOLUME_CLASSES)
    assert demo3d.key == load_demo_volume().key


def test_demo_preprocessing_windows_resamples_and_normalises(demo3d) -> None:
    array = np.zeros((16, 20, 24), np.float32)
    array[:, :, 12:] = 2.0  # above the window: clipped to 1
    tensor = demo3d.preprocess_volume(shape_volume(array))
    assert tensor.shape == (1, 1, 32, 32, 32) and tensor.dtype == torch.float32
    values = tensor * VOLUME_STD + VOLUME_MEAN
    assert float(values.min()) == pytest.approx(0.0, abs=1e-6) and float(values.max()) == pytest.approx(1.0)
    assert torch.allclose(values[0, 0, :, :, :8], torch.zeros(32, 32, 8), atol=1e-6)
    assert torch.allclose(values[0, 0, :, :, -8:], torch.ones(32, 32, 8), atol=1e-6)


def test_demo_classifies_generated_shapes(demo3d) -> None:
    data, labels = volumes(24, seed=7)
    predicted = [int(np.argmax(extract(demo3d, shape_volume(d[0]), ["block3.conv"]).probabilities)) for d in data]
    assert np.mean(np.array(predicted) == labels) >= 0.8


def test_phantom_goes_through_the_demo_model(demo3d) -> None:
    phantom = phantom_volume()
    tensor = demo3d.preprocess_volume(phantom)
    level, width = phantom.window  # type: ignore[misc]
    unit = np.clip((phantom.array - (level - width / 2)) / width, 0, 1)
    resized = torch.nn.functional.interpolate(torch.from_numpy(unit)[None, None], size=(32, 32, 32),
                                              mode="trilinear", align_corners=False)  # fmt: skip
    assert torch.allclose(tensor, (resized - VOLUME_MEAN) / VOLUME_STD, atol=1e-5)
    extraction = extract(demo3d, phantom, ["block2.relu"])
    assert extraction.activations["block2.relu"].shape == (12, 16, 16, 16)
    assert extraction.probabilities is not None and extraction.probabilities.sum() == pytest.approx(1.0)
    result = cam(demo3d, phantom, default_cam_layer(demo3d))
    assert upsample(result.cam, phantom.shape3d).shape == phantom.shape3d
    assert phantom.array.shape == (64, 96, 96) and phantom.spacing == (3.0, 2.0, 2.0)  # the display keeps them


# ---------------------------------------------------------------------------------------------------
# Layers: 5-D maps


def test_demo_layers_are_5d_maps_with_labels(demo3d) -> None:
    infos = {info.name: info for info in list_layers(demo3d)}
    conv = infos["block2.conv"]
    assert conv.spatial and conv.shape == (12, 16, 16, 16) and conv.channels == 12
    assert conv.label == "block2.conv · Conv3d · 12×16×16×16"
    assert not infos["classifier"].spatial and not infos["flatten"].spatial
    assert default_layer(demo3d) == "block2.relu"
    assert default_cam_layer(demo3d) == "block3"


def test_demo_extraction_equals_plain_clone_hooks(demo3d) -> None:
    volume = shape_volume(volumes(1, seed=3)[0][0, 0])
    names = [info.name for info in list_layers(demo3d) if info.spatial]
    extraction = extract(demo3d, volume, names)
    reference = plain_clone_hooks(demo3d, demo3d.preprocess_volume(volume), names)
    for name in names:
        got = extraction.activations[name]
        assert got.dtype == np.float32 and got.ndim == 4 and not got.flags.writeable
        np.testing.assert_array_equal(got, reference[name])
    assert hook_count(demo3d.module) == 0


def test_r3d18_lists_5d_layers_and_extracts_like_clone_hooks(r3d) -> None:
    assert {"r3d_18", "mc3_18", "r2plus1d_18", "s3d"} <= set(video_models())
    infos = {info.name: info for info in list_layers(r3d)}
    assert infos["layer1.0.conv1.0"].shape == (64, 16, 56, 56) and infos["layer1.0.conv1.0"].spatial
    assert infos["layer4"].shape == (512, 2, 7, 7)
    # stem.1 (BatchNorm3d) is overwritten by the in-place ReLU after it: extraction must keep it as it was.
    assert infos["stem.1"].overwritten
    names = ["stem.1", "stem.2", "layer1.0.bn1.0" if "layer1.0.bn1.0" in infos else "layer1.0.conv1.1", "layer3"]
    volume = clip(8, 40, 50)
    extraction = extract(r3d, volume, names)
    reference = plain_clone_hooks(r3d, r3d.preprocess_volume(volume), names)
    for name in names:
        np.testing.assert_array_equal(extraction.activations[name], reference[name])
    assert (extraction.activations["stem.1"] < 0).any()  # before the in-place ReLU


def test_clip_through_r3d18_preprocessing_is_the_weights_transforms(r3d) -> None:
    import torchvision

    volume = clip(20, 60, 80)
    tensor = r3d.preprocess_volume(volume)
    transforms = torchvision.models.get_model_weights("r3d_18").DEFAULT.transforms()
    assert tensor.shape == (1, 3, 16, *transforms.crop_size)
    frames = np.floor((np.arange(16) + 0.5) * 20 / 16).astype(int)
    uint8 = torch.from_numpy(volume.array[:, frames]).to(torch.uint8).permute(1, 0, 2, 3)
    assert torch.allclose(tensor[0], transforms(uint8), atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Sources


FACTORY = """
from torch import nn

class Net3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8 * 8, 2)  # only takes 8x8x8 volumes

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))

def fixed():
    return Net3d()

def sized():
    from featviz_core import Preprocessing
    return Net3d(), Preprocessing(input_size=(8, 8, 8))
"""


def test_a_3d_module_from_code_is_detected_and_sized(tmp_path: Path) -> None:
    path = tmp_path / "net3d.py"
    path.write_text(textwrap.dedent(FACTORY))
    model = load_from_code(f"{path}:sized")
    assert model.is_volumetric and model.input_shape == (1, 8, 8, 8) and "3-D" in model.provenance
    assert model.preprocess_volume(phantom_volume()).shape == (1, 1, 8, 8, 8)
    with pytest.raises(ModelLoadError) as refused:
        load_from_code(f"{path}:fixed")
    message = str(refused.value)
    assert "1×96×96×96 volume" in message and "input_size=(D, H, W)" in message
    assert "--input-size" not in message and "HxW" not in message


def test_monai_densenet_from_code_defaults_and_cam_layer() -> None:
    monai_nets = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(0)
    net = monai_nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    model = load_module(net, Preprocessing(input_size=32))
    assert model.input_shape == (1, 32, 32, 32)
    assert default_cam_layer(model) == "features.transition3.conv"  # denseblock4 is 1×1×1 at 32³
    assert layer_info(model, "features.denseblock3").shape == (1024, 2, 2, 2)


# ---------------------------------------------------------------------------------------------------
# CAM in 3-D


def test_gradcam_equals_monai_gradcam() -> None:
    monai_nets = pytest.importorskip("monai.networks.nets")
    monai_visualize = pytest.importorskip("monai.visualize")
    torch.manual_seed(0)
    net = monai_nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    model = load_module(net, Preprocessing(input_size=(32, 32, 32)))
    volume = shape_volume(volumes(1, seed=2)[0][0, 0])
    x = model.preprocess_volume(volume)
    layers = ("features.denseblock2", "features.transition2")
    ours = {layer: cam(model, volume, layer) for layer in layers}
    assert hook_count(net) == 0  # (MONAI's GradCAM leaves its own hooks on the network)
    for layer, result in ours.items():
        assert result.cam.shape == layer_info(model, layer).shape[1:]  # type: ignore[index]
        reference = monai_visualize.GradCAM(nn_module=net, target_layers=layer, postprocessing=lambda m: m)
        theirs = reference(x, class_idx=result.class_index)[0, 0].detach().numpy()
        stretched = upsample(result.cam, x.shape[2:])
        assert np.corrcoef(stretched.ravel(), theirs.ravel())[0, 1] >= 0.99


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_cam_method_runs_on_5d_maps(demo3d, method: str) -> None:
    volume = shape_volume(volumes(1, seed=4)[0][0, 0])
    result = cam(demo3d, volume, "block3.conv", method=method)
    assert result.cam.shape == result.shape == (8, 8, 8) and result.activations_mean.shape == (8, 8, 8)
    assert result.weights.shape == (24,) and (result.cam >= 0).all()
    assert np.isfinite(result.cam).all() and result.normalized.max() <= 1.0


def test_a_method_that_cannot_run_in_3d_says_why(demo3d) -> None:
    class PlanarOnly(GradCAM):
        name, title, volumes = "planar", "Planar-CAM", False
        volume_note = " because it needs flat pictures"

    with pytest.raises(CamError, match=r"Planar-CAM cannot run on a 3-D model .* choose Grad-CAM"):
        PlanarOnly(demo3d, "block3.conv").run(phantom_volume())


def test_upsample_is_trilinear_to_the_volume_shape() -> None:
    small = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    big = upsample(small, (4, 6, 8))
    reference = torch.nn.functional.interpolate(torch.from_numpy(small)[None, None], size=(4, 6, 8),
                                                mode="trilinear", align_corners=False)[0, 0].numpy()  # fmt: skip
    np.testing.assert_array_equal(big, reference)
    with pytest.raises(Exception, match="three numbers|3 numbers"):
        upsample(small, (4, 6))


def test_sanity_check_runs_in_3d(demo3d) -> None:
    volume = shape_volume(volumes(1, seed=5)[0][0, 0])
    result = sanity_check(demo3d, volume, "block3.conv")
    assert result.size == (32, 32, 32)
    assert result.randomized_modules == ("classifier", "block3.conv")
    assert result.level in ("model", "partly", "image", "empty") and result.verdict.endswith(".")
    assert result.original.cam.shape == result.randomized.cam.shape == (8, 8, 8)


# ---------------------------------------------------------------------------------------------------
# The wrong kind of input


def test_a_2d_model_given_a_volume_says_what_to_pick() -> None:
    model = load_demo()
    with pytest.raises(InputKindError) as refused:
        extract(model, phantom_volume(), [default_layer(model)])
    message = str(refused.value)
    assert "3-D" in message and "pick a 3-D model" in message and message.endswith(".")
    with pytest.raises(InputKindError):
        cam(model, phantom_volume(), default_cam_layer(model))


def test_a_3d_model_given_a_picture_says_what_to_pick(demo3d) -> None:
    picture = Image.new("RGB", (32, 32))
    for call in (
        lambda: extract(demo3d, picture, ["block1.conv"]),
        lambda: cam(demo3d, picture, "block3.conv"),
        lambda: demo3d.preprocess(picture),
        lambda: demo3d.model_view(picture),
    ):
        with pytest.raises(InputKindError, match=r"looks at 3-D scans and clips, not at single pictures: .*2-D"):
            call()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_one_plane_of_a_stretched_map_equals_that_plane_of_the_whole_stretched_volume(axis: int) -> None:
    from featviz_core.cam import upsample, upsample_plane

    rng = np.random.default_rng(axis)
    small = rng.random((4, 5, 3)).astype(np.float32)
    size = (37, 23, 30)
    whole = upsample(small, size)
    for index in (0, 1, size[axis] // 2, size[axis] - 1):
        plane = upsample_plane(small, size, axis, index)
        np.testing.assert_allclose(plane, np.take(whole, index, axis=axis), rtol=0, atol=2e-6)
    with pytest.raises(FeatvizError):
        upsample_plane(small, size, axis, size[axis])
