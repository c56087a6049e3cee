"""The sidebar's model sources (ui/model_picker.py, ui/source_*.py) in AppTest: timm, checkpoints of every
kind, and a model class given on the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featviz_core import extract, load_from_code
from tests.conftest import no_exception, plotly_figures
from tests.test_sources_timm import _place_in_hf_cache

timm = pytest.importorskip("timm")


def _mosaic_tiles(at) -> dict[int, np.ndarray]:  # type: ignore[no-untyped-def]
    from tests.conftest import decode_array

    figure = plotly_figures(at)[0]
    heat = next(t for t in figure["data"] if t["type"] == "heatmap")
    z = decode_array(heat["z"]).astype(np.float32)
    channel = decode_array(heat["customdata"])
    tiles = {}
    for c in np.unique(channel[np.isfinite(z) if channel.shape == z.shape else slice(None)]):
        rows, cols = np.nonzero(channel == c)
        tiles[int(c)] = z[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return tiles


@pytest.fixture
def hf_home(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from safetensors.torch import save

    torch.manual_seed(3)
    _place_in_hf_cache(tmp_path, "timm/resnet18.a1_in1k", save(timm.create_model("resnet18").state_dict()))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


def test_timm_model_from_the_hf_cache(make_app, hf_home) -> None:
    at = make_app(state={"model_kind": "ImageNet model", "library": "timm", "timm_name": "resnet18.a1_in1k"})
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.key == "timm:resnet18.a1_in1k:pretrained" and sel.model.source == "timm"
    assert at.session_state["model_spec"] == "timm:resnet18.a1_in1k"
    maps = extract(sel.model, sel.image, [sel.layer.name]).activations[sel.layer.name]
    tiles = _mosaic_tiles(at)
    for channel in list(tiles)[:4]:
        np.testing.assert_array_equal(tiles[channel], maps[channel])
    assert len(at.sidebar.get("progress")) == 5, "ImageNet class names and the top 5"


def test_timm_without_weights_offline_shows_the_demo(make_app, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    at = make_app(state={"model_kind": "ImageNet model", "library": "timm", "timm_name": "convnext_atto.d2_in1k"})
    no_exception(at)
    assert at.warning and "convnext_atto.d2_in1k" in at.warning[0].value
    assert at.session_state["_selection"].model.source == "demo"


def test_timm_random_weights_and_the_link(make_app) -> None:
    at = make_app(query={"model": "timm:mobilenetv3_small_050.lamb_in1k:random"})
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.key == "timm:mobilenetv3_small_050.lamb_in1k:random"
    assert any("Random weights" in c.value for c in at.sidebar.caption)


def test_timm_checkpoint_upload_is_detected(make_app) -> None:
    from safetensors.torch import save

    torch.manual_seed(4)
    module = timm.create_model("resnet26d", num_classes=3).eval()
    at = make_app(state={"model_kind": "Your checkpoint"})
    at.file_uploader(key="ckpt_file").upload("fine-tuned.safetensors", save(module.state_dict()),
                                             "application/octet-stream").run()
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.source == "checkpoint" and "resnet26d (timm)" in sel.model.provenance
    assert len(sel.extraction().top_k(5)) == 3


def test_a_model_from_the_command_line(make_app, monkeypatch, image) -> None:
    monkeypatch.setenv("FEATVIZ_MODEL", "tests.custom_models:build_detector")
    at = make_app()
    no_exception(at)
    assert at.session_state["model_kind"] == "Your code"
    sel = at.session_state["_selection"]
    assert sel.model.source == "code" and any("your model" in i.value.lower() for i in at.info)
    assert any("does not output class scores" in c.value for c in at.sidebar.caption)
    reference = load_from_code("tests.custom_models:build_detector")
    maps = extract(reference, sel.image, [sel.layer.name]).activations[sel.layer.name]
    tiles = _mosaic_tiles(at)
    np.testing.assert_array_equal(tiles[0], maps[0])
    at.switch_page("pages/where_it_looks.py").run()
    no_exception(at)
    assert at.warning or at.info, "Where it looks says in a sentence why it shows nothing"


def test_no_code_source_without_the_command_line(make_app, monkeypatch) -> None:
    monkeypatch.delenv("FEATVIZ_MODEL", raising=False)
    at = make_app(query={"model": "code"})
    no_exception(at)
    assert "Your code" not in at.radio(key="model_kind").options
    assert at.session_state["_selection"].model.source == "demo"


def test_a_broken_factory_is_one_sentence_and_the_demo_stays(make_app, monkeypatch) -> None:
    monkeypatch.setenv("FEATVIZ_MODEL", "tests.custom_models:broken")
    at = make_app()
    no_exception(at)
    assert at.error and "broken on purpose" in at.error[0].value
    assert at.session_state["_selection"].model.source == "demo"


def test_a_model_with_a_fixed_input_size_says_which_size_featviz_chose(make_app, monkeypatch) -> None:
    monkeypatch.setenv("FEATVIZ_MODEL", "tests.custom_models:LeNet5")
    at = make_app()
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.source == "code" and sel.model.input_size == (32, 32)
    assert any("featviz chose 32×32, the size this model accepts" in c.value for c in at.sidebar.caption)
    assert plotly_figures(at), "the feature maps of the 32×32 input are drawn"


def test_a_link_to_a_timm_model_not_in_the_menu_says_which_one_is_shown(make_app) -> None:
    name = "hiera_base_224"  # Hiera reorders its tokens: no layer is a map, so the menu leaves it out
    at = make_app(query={"model": f"timm:{name}:random"})
    no_exception(at)
    assert at.session_state["_selection"].model.key == "timm:resnet50.a1_in1k:random"
    assert f"The link names timm model {name}, which this featviz cannot open; showing resnet50.a1_in1k instead." in [
        i.value for i in at.info]


def test_a_link_to_a_vision_transformer_opens_it_on_a_token_map(make_app) -> None:
    name = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # offered now that token maps count
    at = make_app(query={"model": f"timm:{name}:random"})
    no_exception(at)
    selection = at.session_state["_selection"]
    assert selection.model.key == f"timm:{name}:random"
    assert selection.layer.label == "blocks.5 · Block · tokens 192×14×14"
    assert not any("cannot open" in i.value for i in at.info)


