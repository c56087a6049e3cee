"""The shared sidebar (ui/sidebar.py): first view, shared links, checkpoints, camera, fallbacks.

Each scenario is a fresh AppTest session whose first run draws the sidebar (see make_app in conftest.py).
"""

from __future__ import annotations

import io

import torch
import torchvision

from tests.conftest import no_exception, plotly_figures
from tests.test_page_feature_maps import png


def checkpoint_bytes(num_classes: int = 3, seed: int = 5) -> bytes:
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(torchvision.models.resnet18(num_classes=num_classes).state_dict(), buffer)
    return buffer.getvalue()


def test_first_view_with_imagenet_weights_cached(make_app, imagenet_home) -> None:
    at = make_app(imagenet=imagenet_home)
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.key == "torchvision:resnet18:IMAGENET1K_V1" and sel.image_name == "chelsea.png"
    assert any("ImageNet weights" in i.value for i in at.info)
    assert len(at.sidebar.get("progress")) == 5, "the top-5 prediction is in the sidebar"


def test_layer_menu_lists_only_feature_maps_with_labels(make_app) -> None:
    at = make_app()
    menu = at.selectbox(key="layer")
    sel = at.session_state["_selection"]
    assert len(menu.options) == len(sel.layers) and all(i.spatial for i in sel.layers)
    assert menu.options[0] == sel.layers[0].label and "×" in menu.options[0]


def test_shared_link_reopens_the_same_view(make_app) -> None:
    query = {"sample": "checkerboard", "model": "demo", "layer": "block1.relu2", "channel": "5",
             "order": "max", "scale": "channel", "cmap": "Cividis (colour-blind friendly)"}
    at = make_app(query=query)
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.image_name == "checkerboard.png" and sel.layer.name == "block1.relu2"
    assert at.session_state["order"] == "max" and at.session_state["scale"] == "channel"
    assert any(h.value == "Channel 5" for h in at.subheader)
    assert "per channel" in plotly_figures(at)[0]["data"][0]["colorbar"]["title"]["text"]
    assert {k: at.query_params[k][0] if isinstance(at.query_params[k], list) else at.query_params[k]
            for k in query} == query, "the address bar keeps the view"


def test_uploaded_image_never_goes_into_the_link(make_app) -> None:
    at = make_app(state={"image_source": "Upload", "_last_upload": ("mine.png", png())})
    assert at.session_state["_selection"].image_name == "mine.png"
    assert "sample" not in at.query_params


def test_checkpoint_with_class_names(make_app) -> None:
    at = make_app(state={"model_kind": "Your checkpoint", "_last_ckpt": ("fine-tuned.pt", checkpoint_bytes()),
                         "_last_names": b"normal\nbenign\nmalignant\n"})
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.source == "checkpoint" and "detected architecture resnet18" in sel.model.provenance
    names = {name for name, _ in sel.extraction().top_k(3)}
    assert names == {"normal", "benign", "malignant"}
    assert any("normal" in p.proto.text or "benign" in p.proto.text for p in at.sidebar.get("progress"))


def test_a_bad_checkpoint_is_explained_and_the_demo_stays(make_app) -> None:
    at = make_app(state={"model_kind": "Your checkpoint", "_last_ckpt": ("model.pt", b"not a checkpoint")})
    no_exception(at)
    assert at.error and "state_dict" in at.error[0].value
    assert at.session_state["_selection"].model.source == "demo"
    assert any("demo model" in i.value for i in at.info)


def test_camera_photo_is_used(make_app) -> None:
    at = make_app(state={"image_source": "Camera", "_last_photo": png((10, 10, 250))})
    no_exception(at)
    assert at.session_state["_selection"].image_name == "camera photo"
    assert len(at.camera_input) == 1


def test_random_weights_are_flagged(make_app) -> None:
    at = make_app(state={"model_kind": "ImageNet model", "pretrained": False})
    no_exception(at)
    assert at.session_state["_selection"].model.key == "torchvision:resnet18:random"
    assert any("Random weights" in c.value for c in at.sidebar.caption)


def test_offline_without_weights_falls_back_to_the_demo(make_app) -> None:
    at = make_app(state={"model_kind": "ImageNet model", "arch": "resnet50"})
    no_exception(at)
    assert at.warning and "resnet50" in at.warning[0].value
    assert at.session_state["_selection"].model.source == "demo"
    assert any("until the model you chose is ready" in i.value for i in at.info)


def test_layer_of_another_model_is_replaced_by_the_default(make_app) -> None:
    at = make_app(state={"layer": "layer4.1.relu#2"})  # not a layer of the demo model
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.layer.name in {i.name for i in sel.layers}


def test_a_link_to_a_model_not_on_offer_says_which_model_is_shown(make_app, monkeypatch) -> None:
    at = make_app(query={"model": "tv:no_such_net"})
    no_exception(at)
    assert at.session_state["_selection"].model.source == "demo"
    assert [i.value for i in at.info if "The link" in i.value] == [
        "The link names torchvision model no_such_net, which this featviz cannot open; showing the demo model "
        "instead."]
    monkeypatch.delenv("FEATVIZ_MODEL", raising=False)
    at = make_app(query={"model": "code"})
    no_exception(at)
    assert any(i.value.startswith("The link names the model given on the command line, which this featviz cannot "
                                  "open") for i in at.info)


def test_a_link_to_an_offered_model_has_no_such_notice(make_app) -> None:
    at = make_app(query={"model": "tv:resnet18:random"})
    no_exception(at)
    assert at.session_state["_selection"].model.key == "torchvision:resnet18:random"
    assert not [i.value for i in at.info if "The link" in i.value]
