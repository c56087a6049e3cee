"""The sidebar's Hugging Face entry (ui/source_hf.py) and zipped save_pretrained folders in "Your checkpoint"
(ui/source_checkpoint.py), in AppTest: a tiny ViT (seeded, built from a tiny config) in a temporary HF_HOME cache,
the download only on a press of the button (a fake hub), offline in one sentence, links that restore the entry."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from featviz_core import extract
from featviz_core.models.sources import load_hf
from tests.conftest import no_exception
from tests.test_sources_hf import fake_hub, folder_zip, place_in_cache

tr = pytest.importorskip("transformers")

HF = "Hugging Face"
LABELS = {"id2label": {0: "cat", 1: "dog", 2: "bird"}, "label2id": {"cat": 0, "dog": 1, "bird": 2}}


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> Path:
    """A tiny ViT classifier (4×4 patches of 8 pixels, 3 named classes) saved as transformers saves it."""
    torch.manual_seed(5)
    folder = tmp_path_factory.mktemp("tiny-vit")
    config = tr.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=32, patch_size=8, num_labels=3, **LABELS)
    tr.ViTForImageClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    tr.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hub"


@pytest.fixture
def no_network(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("featviz tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _names_shown(at) -> set[str]:  # type: ignore[no-untyped-def]
    return {name for name in ("cat", "dog", "bird") for p in at.sidebar.get("progress") if name in p.proto.text}


def test_a_cached_model_opens_by_its_id_without_a_download(make_app, tiny_vit, hf_home, no_network) -> None:
    place_in_cache(hf_home, "tiny/vit-cached", _files(tiny_vit))
    at = make_app(state={"model_kind": HF, "hf_id": "tiny/vit-cached"})
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.key == "hf:tiny/vit-cached" and sel.model.source == "hf"
    assert at.session_state["model_spec"] == "hf:tiny/vit-cached"
    assert not at.sidebar.button, "a cached model needs no Download button"
    assert sel.layer.label.endswith("tokens 32×4×4"), sel.layer.label
    maps = extract(sel.model, sel.image, [sel.layer.name]).activations[sel.layer.name]
    assert maps.shape == (32, 4, 4)
    assert _names_shown(at) == {"cat", "dog", "bird"}, "id2label gives the class names of the predictions"
    assert not any("demo model" in i.value for i in at.info)


def test_not_cached_and_offline_is_one_sentence_and_the_demo_model(make_app, hf_home, no_network) -> None:
    at = make_app(state={"model_kind": HF, "hf_id": "facebook/dinov2-small"})
    no_exception(at)
    assert [w.value for w in at.warning] == [
        "facebook/dinov2-small's weights are not on this machine and downloads are switched off here."]
    assert not at.sidebar.button and not at.error
    assert at.session_state["_selection"].model.source == "demo"
    assert any("Showing the offline demo model" in i.value for i in at.info)
    assert at.session_state["model_spec"] == "hf:facebook/dinov2-small", "the link keeps the choice"


def test_the_download_happens_only_when_the_button_is_pressed(make_app, tiny_vit, hf_home, monkeypatch) -> None:
    calls: list[str] = []
    fake_hub(monkeypatch, hf_home, _files(tiny_vit) | {"pytorch_model.bin": b"never fetched"}, calls)
    at = make_app(state={"model_kind": HF, "hf_id": "tiny/vit-fetched"}, offline=False)
    no_exception(at)
    assert calls == [] and at.session_state["_selection"].model.source == "demo"
    button = at.sidebar.button[0]
    assert button.label == "Download tiny/vit-fetched weights (size shown as it downloads)"
    assert "safetensors" in button.help
    button.click().run()
    no_exception(at)
    assert calls == ["config.json", "preprocessor_config.json", "model.safetensors"]
    assert at.session_state["_selection"].model.key == "hf:tiny/vit-fetched"
    at.run()  # later runs read the cache: nothing is fetched again, no button
    assert len(calls) == 3 and not at.sidebar.button


def test_an_unreachable_hub_is_one_sentence_and_the_demo_stays(make_app, hf_home, monkeypatch) -> None:
    import huggingface_hub

    def unreachable(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    at = make_app(state={"model_kind": HF, "hf_id": "google/vit-base-patch16-224"}, offline=False)
    assert at.sidebar.button[0].label == "Download google/vit-base-patch16-224 weights (about 350 MB)"
    at.sidebar.button[0].click().run()
    no_exception(at)
    assert len(at.error) == 1 and "could not reach the internet" in at.error[0].value
    assert "Traceback" not in at.error[0].value
    assert at.session_state["_selection"].model.source == "demo"


def test_a_quick_choice_fills_in_the_id(make_app, hf_home) -> None:
    at = make_app(state={"model_kind": HF})
    no_exception(at)
    quick = at.pills(key="hf_quick")
    assert at.text_input(key="hf_id").value == "google/vit-base-patch16-224" == quick.value
    assert quick.options == ["vit-base-patch16-224", "dinov2-small", "swin-tiny-patch4-window7-224",
                             "convnext-tiny-224"]
    quick.set_value("facebook/dinov2-small").run()
    no_exception(at)
    assert at.text_input(key="hf_id").value == "facebook/dinov2-small"
    assert at.session_state["model_spec"] == "hf:facebook/dinov2-small"
    at.text_input(key="hf_id").set_value("someone/my-vit").run()
    no_exception(at)
    assert at.pills(key="hf_quick").value is None, "an id typed by hand is none of the quick choices"
    assert at.session_state["model_spec"] == "hf:someone/my-vit"


def test_a_link_restores_the_entry_and_never_downloads(make_app, tiny_vit, hf_home, monkeypatch) -> None:
    calls: list[str] = []
    fake_hub(monkeypatch, hf_home, _files(tiny_vit), calls)
    at = make_app(query={"model": "hf:tiny/vit-linked"}, offline=False)
    no_exception(at)
    assert at.session_state["model_kind"] == HF and at.text_input(key="hf_id").value == "tiny/vit-linked"
    assert calls == [] and at.session_state["_selection"].model.source == "demo"
    assert at.sidebar.button[0].label.startswith("Download tiny/vit-linked")
    assert at.session_state["model_spec"] == "hf:tiny/vit-linked"


def test_a_link_to_a_cached_model_opens_it(make_app, tiny_vit, hf_home, no_network) -> None:
    place_in_cache(hf_home, "tiny/vit-link-cached", _files(tiny_vit))
    at = make_app(query={"model": "hf:tiny/vit-link-cached"})
    no_exception(at)
    assert at.session_state["_selection"].model.key == "hf:tiny/vit-link-cached"
    assert not any("cannot open" in i.value for i in at.info)


def test_a_link_with_a_bad_id_says_so(make_app) -> None:
    at = make_app(query={"model": "hf:../etc"})
    no_exception(at)
    assert at.session_state["_selection"].model.source == "demo"
    assert any("cannot open" in i.value and "../etc" in i.value for i in at.info)


def test_a_zipped_folder_opens_in_your_checkpoint_with_its_class_names(make_app, tiny_vit, no_network) -> None:
    data = folder_zip(tiny_vit, nest="tiny-vit")
    at = make_app(state={"model_kind": "Your checkpoint"})
    at.file_uploader(key="ckpt_file").upload("tiny-vit.zip", data, "application/zip").run()
    no_exception(at)
    sel = at.session_state["_selection"]
    assert sel.model.source == "hf" and sel.model.key.startswith("hf-zip:") and sel.model.name == "tiny-vit"
    assert sel.model.categories == ["cat", "dog", "bird"]
    assert _names_shown(at) == {"cat", "dog", "bird"}
    assert at.session_state["model_spec"] == "checkpoint", "an upload never goes into the link"
    expected = load_hf(data, filename="tiny-vit.zip")
    ours = extract(sel.model, sel.image, [sel.layer.name]).activations[sel.layer.name]
    np.testing.assert_array_equal(ours, extract(expected, sel.image, [sel.layer.name]).activations[sel.layer.name])


def test_a_zip_with_pickle_weights_is_one_sentence(make_app, tiny_vit) -> None:
    from tests.test_sources_hf import zip_bytes

    data = zip_bytes({"config.json": (tiny_vit / "config.json").read_bytes(), "pytorch_model.bin": b"pickle"})
    at = make_app(state={"model_kind": "Your checkpoint", "_last_ckpt": ("mine.zip", data)})
    no_exception(at)
    assert len(at.error) == 1 and "pytorch_model.bin" in at.error[0].value and "safetensors" in at.error[0].value
    assert at.session_state["_selection"].model.source == "demo"


def test_the_first_view_does_not_import_transformers() -> None:
    """transformers (seconds to import) loads only when a Hugging Face model is opened."""
    import subprocess
    import sys

    code = ("import os, sys; os.environ['FEATVIZ_OFFLINE'] = '1'; from streamlit.testing.v1 import AppTest; "
            "at = AppTest.from_file('app.py', default_timeout=180).run(); assert not at.exception; "
            "print(at.session_state['model_kind'], 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "TORCH_HOME": "/nonexistent"})
    assert done.stdout.strip().splitlines()[-1] == "Demo model False"


def test_class_names_uploaded_beside_a_zip_replace_its_labels(make_app, tiny_vit) -> None:
    data = folder_zip(tiny_vit)
    at = make_app(state={"model_kind": "Your checkpoint", "_last_ckpt": ("tiny.zip", data),
                         "_last_names": b"normal\nbenign\nmalignant\n"})
    no_exception(at)
    model = at.session_state["_selection"].model
    assert model.source == "hf" and model.categories == ["normal", "benign", "malignant"]
    assert model.key != load_hf(data, filename="tiny.zip").key, "other class names, another cache key"
    assert "class names from your file" in model.provenance
    assert {n for n in ("normal", "benign", "malignant") for p in at.sidebar.get("progress") if n in p.proto.text} \
        == {"normal", "benign", "malignant"}
