"""featviz_core.models.sources.hf: transformers image models from a zip of a save_pretrained folder or the hub cache.

Tiny models built from tiny configs (seeded), saved with safetensors, zipped in memory; the hub is a
temporary HF_HOME cache laid out as huggingface_hub writes it. No network anywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from featviz_core import CamTarget, ModelLoadError, describe_outputs, extract, is_classifier, load_spec
from featviz_core.cam import target_scores
from featviz_core.layers import probabilities_from_output
from featviz_core.layers.extract import class_scores
from featviz_core.models.sources import download_hf, hf_cached, hf_files, load_from_code, load_hf

tr = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"id2label": {0: "cat", 1: "dog", 2: "bird"}, "label2id": {"cat": 0, "dog": 1, "bird": 2}}
VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32,
       "patch_size": 8}


def _families() -> dict[str, tuple]:  # type: ignore[type-arg]
    """name -> (config, model class, image processor): the processors as the hub's models of each family
    use them (ViT: height × width; DeiT: resize + crop; Swin: ViT's; ConvNeXT: crop_pct; DINOv2: BiT's
    shortest edge + crop), at a tiny size."""
    return {
        "vit": (tr.ViTConfig(**VIT, num_labels=3, **LABELS), tr.ViTForImageClassification,
                tr.ViTImageProcessor(size={"height": 32, "width": 32})),
        "deit": (tr.DeiTConfig(**VIT, num_labels=3, **LABELS), tr.DeiTForImageClassificationWithTeacher,
                 tr.DeiTImageProcessor(size={"height": 37, "width": 37}, crop_size={"height": 32, "width": 32})),
        "swin": (tr.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                               window_size=2, num_labels=3, **LABELS),
                 tr.SwinForImageClassification, tr.ViTImageProcessor(size={"height": 32, "width": 32})),
        "convnext": (tr.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3, **LABELS),
                     tr.ConvNextForImageClassification,
                     tr.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)),
        "dinov2": (tr.Dinov2Config(**VIT), tr.Dinov2Model,
                   tr.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})),
    }


FAMILIES = sorted(_families())


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Each family saved as transformers saves it: config.json, model.safetensors, preprocessor_config.json."""
    folders = {}
    for name, (config, cls, processor) in _families().items():
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(name)
        cls(config).eval().save_pretrained(folder, safe_serialization=True)
        processor.save_pretrained(folder)
        folders[name] = folder
    return folders


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():  # a fixed date: the same files give the same bytes (and model key)
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data,
                             compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def folder_zip(folder: Path, nest: str | None = None, drop: tuple[str, ...] = ()) -> bytes:
    return zip_bytes({f"{nest}/{p.name}" if nest else p.name: p.read_bytes()
                      for p in sorted(folder.iterdir()) if p.name not in drop})


def images() -> list[Image.Image]:
    """Sizes that exercise the rounding: odd margins for the crop, smaller than the crop, portrait, landscape."""
    rng = np.random.default_rng(0)
    sizes = [(80, 96), (97, 61), (32, 32), (20, 25), (35, 35), (333, 250)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


@pytest.fixture(scope="module")
def models(saved) -> dict:  # type: ignore[type-arg]
    return {name: load_hf(folder_zip(folder, nest="my-model" if name == "swin" else None), filename=f"{name}.zip")
            for name, folder in saved.items()}


# ---------------------------------------------------------------------------------------------------
# From a zip


@pytest.mark.parametrize("name", FAMILIES)
def test_a_zip_of_each_family_loads(models, saved, name) -> None:
    model = models[name]
    data = folder_zip(saved[name], nest="my-model" if name == "swin" else None)
    assert model.source == "hf" and model.key == f"hf-zip:{hashlib.sha256(data).hexdigest()}"
    assert model.name == name and not model.module.training and model.weights is None
    assert model.input_size == (32, 32) and model.input_channels == 3
    assert model.module.config._attn_implementation == "eager"
    assert all(p.dtype == torch.float32 for p in model.module.parameters())
    assert f"{name}.zip" in model.provenance and "safetensors" in model.provenance
    if name == "dinov2":
        assert model.categories is None and "backbone" in model.provenance
    else:
        assert model.categories == ["cat", "dog", "bird"] and "3 classes" in model.provenance


@pytest.mark.parametrize("name", FAMILIES)
def test_preprocessing_equals_the_image_processor(models, saved, name) -> None:
    reference = tr.AutoImageProcessor.from_pretrained(saved[name])
    model = models[name]
    for image in images():
        expected = reference(image, return_tensors="pt").pixel_values
        got = model.preprocess(image)
        assert got.shape == expected.shape == (1, 3, 32, 32)
        assert float((got - expected).abs().max()) <= 1e-5, name  # measured: 0.0 (the same operations)
        view = np.asarray(model.model_view(image), dtype=np.float32)
        mean, std = np.asarray(reference.image_mean), np.asarray(reference.image_std)
        np.testing.assert_allclose((view / 255 - mean) / std, got[0].permute(1, 2, 0).numpy(), atol=1e-5)
    assert pickle.loads(pickle.dumps(model.transform))(images()[0]).shape == (3, 32, 32)  # for worker processes


@pytest.mark.parametrize("name", FAMILIES)
def test_the_forward_pass_gives_the_library_outputs(models, saved, name) -> None:
    model = models[name]
    _config, cls, _processor = _families()[name]
    reference = cls.from_pretrained(saved[name], attn_implementation="eager").eval()
    x = model.preprocess(images()[0])
    with torch.no_grad():
        got, expected = model.module(x), reference(pixel_values=x)
    key = "last_hidden_state" if name == "dinov2" else "logits"
    assert torch.equal(got[key], expected[key])


@pytest.mark.parametrize("name", FAMILIES)
def test_classifiers_are_told_from_backbones(models, name) -> None:
    model = models[name]
    image = images()[1]
    with torch.no_grad():
        output = model.module(model.preprocess(image))
    outputs = describe_outputs(model)
    if name == "dinov2":
        assert not is_classifier(model)
        assert [(o.output, o.shape) for o in outputs] == [("last_hidden_state", (1, 17, 32)), ("pooler_output", (1, 32))]
        assert class_scores(output) is None and probabilities_from_output(output) is None
        return
    assert is_classifier(model)
    assert outputs[0].output is None and outputs[0].shape == (1, 3)
    assert torch.equal(class_scores(output), output.logits)
    probabilities = probabilities_from_output(output)
    np.testing.assert_allclose(probabilities, torch.softmax(output.logits, 1)[0].numpy(), rtol=1e-6)
    assert torch.equal(target_scores(output, CamTarget(channel=2), 1), output.logits[:, 2])
    assert CamTarget(channel=1).label(model) == "dog"
    layer = next(info.name for info in __import__("featviz_core").list_layers(model) if info.spatial)
    assert extract(model, image, [layer]).top_k(1)[0][0] == model.categories[int(output.logits.argmax())]


def test_a_users_own_transformers_model_is_a_classifier_too(tmp_path, saved) -> None:
    """The command line's --model pkg.mod:factory path: the output is a ModelOutput, read by its logits."""
    factory = tmp_path / "my_hf_net.py"
    factory.write_text(
        "import transformers\n"
        f"def build():\n    return transformers.ViTForImageClassification.from_pretrained({str(saved['vit'])!r})\n"
    )
    model = load_from_code(f"{factory}:build", input_size=32, normalization="-1-1")
    assert is_classifier(model)
    assert extract(model, images()[0], ["vit.embeddings.patch_embeddings.projection"]).probabilities.shape == (3,)


def test_sharded_weights_load_and_nothing_stays_on_disk(tmp_path, models, saved) -> None:
    import tempfile

    config, cls, processor = _families()["vit"]
    torch.manual_seed(0)
    cls(config).save_pretrained(tmp_path, max_shard_size="20KB")
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").exists() and len(list(tmp_path.glob("model-*"))) > 1
    before = set(Path(tempfile.gettempdir()).glob("featviz-hf-*"))
    model = load_hf(folder_zip(tmp_path))
    assert set(Path(tempfile.gettempdir()).glob("featviz-hf-*")) == before
    x = model.preprocess(images()[0])
    with torch.no_grad():
        assert torch.equal(model.module(x).logits, models["vit"].module(x).logits)


def test_generic_label_names_are_dropped(saved, tmp_path) -> None:
    config = json.loads((saved["vit"] / "config.json").read_text())
    config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    files = {p.name: p.read_bytes() for p in saved["vit"].iterdir()} | {"config.json": json.dumps(config).encode()}
    assert load_hf(zip_bytes(files)).categories is None
    config["id2label"]["1"] = "dog"
    files["config.json"] = json.dumps(config).encode()
    assert load_hf(zip_bytes(files)).categories == ["LABEL_0", "dog", "LABEL_2"]


def test_without_a_preprocessor_config_the_processor_defaults_at_the_model_size(saved) -> None:
    model = load_hf(folder_zip(saved["vit"], drop=("preprocessor_config.json",)))
    assert model.input_size == (32, 32) and "no preprocessor_config.json" in model.provenance
    reference = tr.ViTImageProcessor(size={"height": 32, "width": 32})
    image = images()[0]
    assert torch.equal(model.preprocess(image), reference(image, return_tensors="pt").pixel_values)


def test_an_old_style_preprocessor_config_is_read_as_the_library_reads_it(saved) -> None:
    """google/vit-base-patch16-224's file: a feature extractor, ``size`` a number, no ``do_rescale``."""
    legacy = {"do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 32}
    files = {p.name: p.read_bytes() for p in saved["vit"].iterdir()}
    files["preprocessor_config.json"] = json.dumps(legacy).encode()
    model = load_hf(zip_bytes(files))
    image = images()[3]
    expected = (np.asarray(image.resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(model.preprocess(image)[0].permute(1, 2, 0).numpy(), expected, atol=0.02)
    assert model.input_size == (32, 32)


def test_a_processor_featviz_does_not_replay_runs_as_it_is(saved) -> None:
    """EfficientNet's processor has its own rescale (an offset): the processor itself prepares each image."""
    processor = tr.EfficientNetImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32},
                                              do_center_crop=True, rescale_offset=True)
    files = {p.name: p.read_bytes() for p in saved["vit"].iterdir()}
    files["preprocessor_config.json"] = processor.to_json_string().encode()
    model = load_hf(zip_bytes(files))
    assert model.input_size == (32, 32) and "EfficientNetImageProcessor itself" in model.provenance
    for image in images()[:3]:
        assert torch.equal(model.preprocess(image), processor(image, return_tensors="pt").pixel_values)
        assert model.model_view(image).size == (32, 32)


# ---------------------------------------------------------------------------------------------------
# What a zip may not hold


def test_pickle_weights_are_refused_with_how_to_convert(saved) -> None:
    files = {"config.json": (saved["vit"] / "config.json").read_bytes(), "pytorch_model.bin": b"\x80\x02pickle"}
    with pytest.raises(ModelLoadError, match=r"pytorch_model\.bin.*safe_serialization=True") as info:
        load_hf(zip_bytes(files))
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize("bad", ["../evil.json", "model/../../evil", "/etc/passwd", "C:/x.json", "a\\..\\b"])
def test_names_that_leave_the_folder_are_refused(saved, bad) -> None:
    files = {p.name: p.read_bytes() for p in saved["vit"].iterdir()} | {bad: b"{}"}
    with pytest.raises(ModelLoadError, match="points outside its folder"):
        load_hf(zip_bytes(files))


def test_zip_bombs_are_refused_before_unpacking(saved, monkeypatch) -> None:
    monkeypatch.setattr(hf_files, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(ModelLoadError, match="unpack to more than"):
        load_hf(folder_zip(saved["vit"]))


@pytest.mark.parametrize(("data", "message"), [
    (b"not a zip", "not a zip file"),
    (zip_bytes({"readme.txt": b"hello"}), "no config.json"),
    (zip_bytes({"a/config.json": b"{}", "b/config.json": b"{}"}), "several models"),
    (zip_bytes({"config.json": b"{}"}), "no model.safetensors"),
    (zip_bytes({"config.json": b"[1, 2", "model.safetensors": b"x"}), "not a readable JSON"),
    (zip_bytes({"config.json": b"{}", "model.safetensors": b"x"}), r"type \(none given\) is not one"),
])
def test_broken_zips_get_one_sentence(data, message) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_hf(data)


@pytest.fixture
def no_remote_code(monkeypatch):  # type: ignore[no-untyped-def]
    import transformers.dynamic_module_utils as dynamic

    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("featviz ran a model's own code")

    monkeypatch.setattr(dynamic, "get_class_from_dynamic_module", refuse)
    monkeypatch.setattr(dynamic, "get_cached_module_file", refuse)


def test_auto_map_of_a_library_model_type_is_ignored(saved, no_remote_code) -> None:
    config = json.loads((saved["vit"] / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "evil.EvilNet"}
    processor = json.loads((saved["vit"] / "preprocessor_config.json").read_text())
    processor["auto_map"] = {"AutoImageProcessor": "evil.EvilProcessor"}
    files = {p.name: p.read_bytes() for p in saved["vit"].iterdir()} | {
        "config.json": json.dumps(config).encode(), "preprocessor_config.json": json.dumps(processor).encode(),
        "evil.py": b"raise SystemExit('remote code ran')\n",
    }
    model = load_hf(zip_bytes(files))
    assert type(model.module) is tr.ViTForImageClassification
    assert type(model.transform).__module__ == "featviz_core.models.sources.hf_preprocess"


def test_config_keys_that_could_fetch_code_are_dropped(saved, no_remote_code, no_network, monkeypatch) -> None:
    """CVE-2026-4372: ``_attn_implementation_internal`` naming a hub kernel made transformers < 5.3 run its code."""
    from transformers.integrations import hub_kernels

    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("featviz loaded a hub kernel")

    monkeypatch.setattr(hub_kernels, "get_kernel", refuse, raising=False)
    config = json.loads((saved["vit"] / "config.json").read_text())
    config.update(_attn_implementation_internal="evil/flash-kernel", _attn_implementation="evil/flash-kernel",
                  trust_remote_code=True)
    files = {p.name: p.read_bytes() for p in saved["vit"].iterdir()} | {"config.json": json.dumps(config).encode()}
    model = load_hf(zip_bytes(files))
    assert model.module.config._attn_implementation == "eager"


def test_a_model_type_that_needs_its_own_code_is_refused(saved, no_remote_code) -> None:
    config = json.loads((saved["vit"] / "config.json").read_text())
    config.update(model_type="evil-net", architectures=["EvilNet"], auto_map={"AutoModel": "evil.EvilNet"})
    files = {p.name: p.read_bytes() for p in saved["vit"].iterdir()} | {"config.json": json.dumps(config).encode()}
    with pytest.raises(ModelLoadError, match="own Python code.*never runs"):
        load_hf(zip_bytes(files))


def test_a_processor_that_needs_its_own_code_is_refused(saved, no_remote_code) -> None:
    processor = {"image_processor_type": "EvilProcessor", "auto_map": {"AutoImageProcessor": "evil.EvilProcessor"}}
    files = {p.name: p.read_bytes() for p in saved["vit"].iterdir()}
    files["preprocessor_config.json"] = json.dumps(processor).encode()
    with pytest.raises(ModelLoadError, match="never run"):
        load_hf(zip_bytes(files))


def test_a_text_model_is_refused() -> None:
    config = tr.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    files = {"config.json": config.to_json_string().encode(), "model.safetensors": b"x"}
    with pytest.raises(ModelLoadError, match="not an image model"):
        load_hf(zip_bytes(files))


# ---------------------------------------------------------------------------------------------------
# From the hub (its cache; no network)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def place_in_cache(hub: Path, repo: str, files: dict[str, bytes]) -> Path:
    """huggingface_hub's layout: blobs/<hash>, snapshots/<commit>/<file> -> blob, refs/main."""
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    (root / "blobs").mkdir(exist_ok=True)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        if not link.exists():
            link.symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("FEATVIZ_OFFLINE", raising=False)
    return tmp_path / "hub"


@pytest.fixture
def no_network(monkeypatch):  # type: ignore[no-untyped-def]
    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("featviz tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_a_cached_hub_model_loads_offline(saved, hf_home, monkeypatch, no_network) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert not hf_cached("tiny/vit")
    place_in_cache(hf_home, "tiny/vit", {p.name: p.read_bytes() for p in saved["vit"].iterdir()})
    assert hf_cached("tiny/vit") and not hf_cached("tiny/other")
    model = load_hf("tiny/vit")
    assert model.key == "hf:tiny/vit" and model.weights == "tiny/vit" and model.name == "tiny/vit"
    assert "Hugging Face model tiny/vit" in model.provenance and COMMIT[:10] in model.provenance
    assert model.categories == ["cat", "dog", "bird"]
    assert load_spec("hf:tiny/vit").key == "hf:tiny/vit"


def test_a_cache_without_safetensors_weights_is_not_enough(saved, hf_home) -> None:
    place_in_cache(hf_home, "tiny/vit", {"config.json": (saved["vit"] / "config.json").read_bytes()})
    assert not hf_cached("tiny/vit")


def test_offline_the_download_says_so_in_one_sentence(hf_home, monkeypatch, no_network) -> None:
    monkeypatch.setenv("FEATVIZ_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="switched off here") as info:
        load_hf("google/vit-base-patch16-224")
    assert str(info.value).count(". ") <= 2
    with pytest.raises(ModelLoadError, match="switched off here"):
        download_hf("google/vit-base-patch16-224")


def test_an_unreachable_hub_is_one_sentence(hf_home, monkeypatch) -> None:
    import huggingface_hub

    def unreachable(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(ModelLoadError, match="could not reach the internet"):
        download_hf("google/vit-base-patch16-224")


def fake_hub(monkeypatch, hub: Path, repo_files: dict[str, bytes], calls: list[str]) -> None:
    """hf_hub_download and model_info answering from ``repo_files``, writing the cache as the hub does."""
    import huggingface_hub

    def download(repo, filename, *, revision=None, cache_dir=None, tqdm_class=None, **_):  # type: ignore[no-untyped-def]
        assert cache_dir == str(hub) and revision in (None, COMMIT)
        calls.append(filename)
        data = repo_files[filename]
        if tqdm_class is not None:
            bar = tqdm_class(total=len(data), initial=0)
            for start in range(0, len(data), 4096):
                bar.update(min(4096, len(data) - start))
            bar.close()
        return str(place_in_cache(hub, repo, {filename: data}) / filename)

    def model_info(self, repo, *, revision=None, files_metadata=False, **_):  # type: ignore[no-untyped-def]
        assert revision == COMMIT and files_metadata
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=n, size=len(d)) for n, d in repo_files.items()])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)


def test_download_fetches_the_model_files_once_with_progress(saved, hf_home, monkeypatch) -> None:
    repo_files = {p.name: p.read_bytes() for p in saved["convnext"].iterdir()}
    repo_files |= {"pytorch_model.bin": b"never fetched", "README.md": b"# tiny"}
    calls: list[str] = []
    fake_hub(monkeypatch, hf_home, repo_files, calls)
    seen: list[tuple[int, int | None]] = []
    folder = download_hf("tiny/convnext", lambda done, total: seen.append((done, total)))
    assert calls == ["config.json", "preprocessor_config.json", "model.safetensors"]
    total = len(repo_files["preprocessor_config.json"]) + len(repo_files["model.safetensors"])
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    assert Path(folder, "model.safetensors").read_bytes() == repo_files["model.safetensors"]
    assert hf_cached("tiny/convnext")
    load_hf("tiny/convnext")
    assert len(calls) == 3, "a cached model is never fetched again"


def test_a_hub_model_with_pickle_weights_only_is_refused(saved, hf_home, monkeypatch) -> None:
    repo_files = {"config.json": (saved["vit"] / "config.json").read_bytes(), "pytorch_model.bin": b"pickle"}
    fake_hub(monkeypatch, hf_home, repo_files, [])
    with pytest.raises(ModelLoadError, match=r"only PyTorch pickle weights .*model\.safetensors"):
        download_hf("tiny/pickled")


@pytest.mark.parametrize("bad", ["", "../etc", "a/b/c", "org/na me", "org--x/y", "org/name@rev ision"])
def test_model_ids_are_checked(bad) -> None:
    with pytest.raises(ModelLoadError, match="not a Hugging Face model id"):
        load_hf(bad)
    assert not hf_cached(bad)


def test_load_spec_takes_a_zip_path(saved, tmp_path) -> None:
    path = tmp_path / "tiny-convnext.zip"
    path.write_bytes(folder_zip(saved["convnext"], nest="tiny-convnext"))
    model = load_spec(str(path))
    assert model.source == "hf" and model.name == "tiny-convnext" and model.categories == ["cat", "dog", "bird"]
    with pytest.raises(ModelLoadError, match="no zip file"):
        load_spec(str(tmp_path / "missing.zip"))


def test_importing_featviz_core_does_not_import_transformers() -> None:
    code = ("import sys, featviz_core, featviz_core.models.sources.hf, featviz_core.models.sources.hf_preprocess; "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
