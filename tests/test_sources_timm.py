"""featviz_core.models.sources.timm: timm architectures, exact values, timm's own preprocessing, HF downloads."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from featviz_core import FeatvizError, ModelLoadError, extract, list_layers, load_timm
from featviz_core.layers import hook_count
from featviz_core.models.sources import timm as timm_source
from featviz_core.models.sources.timm_catalog import architectures, catalog, family_title

timm = pytest.importorskip("timm")

# One small architecture per family the issue names (random seeded weights: speed does not depend on them).
FAMILIES = {
    "resnet": "resnet18",
    "efficientnet": "efficientnet_b0",
    "convnext": "convnext_atto",
    "regnet": "regnetx_002",
    "mobilenetv3": "mobilenetv3_small_050",
    "densenet": "densenet121",
}


def clone_everything(model, image) -> dict[tuple[str, int], torch.Tensor]:  # type: ignore[no-untyped-def]
    """Every module call's output, copied the moment it is produced by a plain hook."""
    seen: dict[tuple[str, int], torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def make(name: str):  # type: ignore[no-untyped-def]
        def hook(_m, _i, out):  # type: ignore[no-untyped-def]
            counts[name] = counts.get(name, 0) + 1
            if isinstance(out, torch.Tensor):
                seen[(name, counts[name])] = out.detach().clone()

        return hook

    for name, module in model.module.named_modules():
        if name:
            handles.append(module.register_forward_hook(make(name)))
    try:
        with torch.no_grad():
            model.module(model.preprocess(image))
    finally:
        for handle in handles:
            handle.remove()
    return seen


@pytest.fixture(scope="module", params=sorted(FAMILIES.items()), ids=sorted(FAMILIES))
def timm_model(request):  # type: ignore[no-untyped-def]
    return load_timm(request.param[1], pretrained=False)


def test_every_spatial_layer_equals_a_clone_everything_reference(timm_model, image) -> None:
    layers = [info for info in list_layers(timm_model) if info.spatial]
    assert len(layers) > 10
    got = extract(timm_model, image, [info.name for info in layers]).activations
    reference = clone_everything(timm_model, image)
    for info in layers:
        expected = reference[(info.module_name, info.call)]
        if info.channels_last:
            expected = expected.permute(0, 3, 1, 2)
        np.testing.assert_array_equal(got[info.name], expected[0].numpy(), err_msg=info.name)
    assert hook_count(timm_model.module) == 0


def test_in_place_activations_do_not_leak_into_recorded_outputs(image) -> None:
    """timm's BatchNormAct2d applies its activation in place after the norm: the norm's output keeps its
    negative values, exactly as a copying hook sees them."""
    model = load_timm("resnet18", pretrained=False)
    overwritten = [info for info in list_layers(model) if info.spatial and info.overwritten]
    assert overwritten, "resnet18 in timm has in-place ReLUs after its norms"
    name = overwritten[0].name
    got = extract(model, image, [name]).activations[name]
    assert got.min() < 0
    info = overwritten[0]
    np.testing.assert_array_equal(got, clone_everything(model, image)[(info.module_name, info.call)][0].numpy())


def test_eight_threads_on_one_timm_model_get_their_own_maps(make_image) -> None:
    model = load_timm("mobilenetv3_small_050", pretrained=False)
    layer = [i.name for i in list_layers(model) if i.spatial][20]
    images = [make_image(seed) for seed in range(8)]
    sequential = [extract(model, img, [layer]).activations[layer] for img in images]
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        results[i] = extract(model, images[i], [layer]).activations[layer]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        np.testing.assert_array_equal(results[i], sequential[i])
    assert hook_count(model.module) == 0


def test_preprocessing_is_exactly_timms_own(image) -> None:
    from timm.data import create_transform, resolve_model_data_config

    model = load_timm("resnet50.a1_in1k", pretrained=False)
    expected = create_transform(**resolve_model_data_config(model.module), is_training=False)(image)
    assert torch.equal(model.preprocess(image), expected.unsqueeze(0))
    assert model.input_size == (224, 224)
    # a1_in1k evaluates at crop_pct 0.95: the view is resized to 236 before the 224 crop, as timm does
    assert model.model_view(image).size == (224, 224)
    assert "Resize(size=235" in repr(model.transform) or "Resize(size=236" in repr(model.transform)


def test_class_names_come_from_imagenet_info() -> None:
    model = load_timm("resnet18", pretrained=False)
    assert model.categories is not None and len(model.categories) == 1000
    assert model.categories[0] == "tench" and model.categories[207] == "golden retriever"


def test_unknown_names_are_explained() -> None:
    with pytest.raises(ModelLoadError, match="not a timm architecture.*resnet"):
        load_timm("resnet5000", pretrained=False)
    with pytest.raises(ModelLoadError, match="no pretrained weights called 'resnet18.nonsense'"):
        load_timm("resnet18.nonsense")


# ---------------------------------------------------------------------------------------------------
# Pretrained weights through the Hugging Face cache (no network)


def _place_in_hf_cache(hf_home: Path, repo: str, payload: bytes, *, blob_named_by_hash: bool = True) -> Path:
    """The layout huggingface_hub itself writes: blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    blob_name = hashlib.sha256(payload).hexdigest() if blob_named_by_hash else "f" * 64
    (root / "blobs").mkdir(exist_ok=True)
    blob = root / "blobs" / blob_name
    blob.write_bytes(payload)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    link = snapshot / "model.safetensors"
    link.symlink_to(os.path.relpath(blob, snapshot))
    return link


@pytest.fixture
def resnet18_weights() -> tuple[bytes, dict[str, torch.Tensor]]:
    from safetensors.torch import save

    torch.manual_seed(3)
    state = timm.create_model("resnet18").state_dict()
    return save(state), state


@pytest.fixture
def no_network(monkeypatch):  # type: ignore[no-untyped-def]
    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("featviz tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_weights_in_the_hf_cache_load_without_network(tmp_path, monkeypatch, resnet18_weights, no_network,
                                                       image) -> None:
    payload, state = resnet18_weights
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("FEATVIZ_OFFLINE", raising=False)
    assert not timm_source.timm_weights_cached("resnet18.a1_in1k")
    _place_in_hf_cache(tmp_path, "timm/resnet18.a1_in1k", payload)
    assert timm_source.timm_weights_cached("resnet18.a1_in1k")
    model = load_timm("resnet18.a1_in1k")
    assert model.key == "timm:resnet18.a1_in1k:pretrained" and "Hugging Face" in model.provenance
    for key, tensor in state.items():
        assert torch.equal(model.module.state_dict()[key], tensor), key
    assert model.weights == "resnet18.a1_in1k"
    assert extract(model, image, [list_layers(model)[3].name]).probabilities is not None


def test_a_damaged_download_is_refused_and_deleted(tmp_path, monkeypatch, resnet18_weights, no_network) -> None:
    payload, _ = resnet18_weights
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    link = _place_in_hf_cache(tmp_path, "timm/resnet18.a1_in1k", payload, blob_named_by_hash=False)

    def fake_download(repo, filename, **kwargs):  # type: ignore[no-untyped-def]
        return str(link)

    monkeypatch.setattr(timm_source, "_cached_file", lambda cfg: None)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(ModelLoadError, match="damaged"):
        timm_source.download_timm_weights("resnet18.a1_in1k")
    assert not os.path.exists(os.path.realpath(link))


def test_download_reports_progress_and_is_never_repeated(tmp_path, monkeypatch, resnet18_weights) -> None:
    payload, _ = resnet18_weights
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("FEATVIZ_OFFLINE", raising=False)
    calls: list[str] = []

    def fake_download(repo, filename, *, tqdm_class=None, cache_dir=None, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(f"{repo}/{filename}")
        assert cache_dir == str(tmp_path / "hub")
        bar = tqdm_class(total=len(payload), initial=0)
        for start in range(0, len(payload), 1 << 20):
            bar.update(min(1 << 20, len(payload) - start))
        bar.close()
        return str(_place_in_hf_cache(tmp_path, repo, payload))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    seen: list[tuple[int, int | None]] = []
    path = timm_source.download_timm_weights("resnet18.a1_in1k", lambda done, total: seen.append((done, total)))
    assert Path(path).read_bytes() == payload
    assert calls == ["timm/resnet18.a1_in1k/model.safetensors"]
    assert seen[0] == (0, len(payload)) and seen[-1] == (len(payload), len(payload))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    timm_source.download_timm_weights("resnet18.a1_in1k")
    assert len(calls) == 1, "weights in the cache are never fetched again"


def test_offline_refusal_is_one_sentence(tmp_path, monkeypatch, no_network) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("FEATVIZ_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="switched off here") as info:
        load_timm("resnet18.a1_in1k")
    assert str(info.value).count(". ") <= 2 and "Traceback" not in str(info.value)


def test_network_failure_is_one_sentence(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("FEATVIZ_OFFLINE", raising=False)
    import huggingface_hub

    def unreachable(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(ModelLoadError, match="could not reach the internet"):
        timm_source.download_timm_weights("resnet18.a1_in1k")
    assert isinstance(ModelLoadError("x"), FeatvizError)


# ---------------------------------------------------------------------------------------------------
# The catalog


def test_catalog_lists_cnn_and_vision_transformer_families() -> None:
    listed = {arch.family for arch in architectures(maps_only=True)}
    assert set(FAMILIES) <= listed
    assert {"vision_transformer", "deit", "eva", "beit", "vision_transformer_hybrid", "swin_transformer"} <= listed
    assert "hiera" not in listed  # its tokens are reordered into mask units: no map of the picture
    assert family_title("resnet").startswith("ResNet")
    assert len(architectures(maps_only=True)) > 500


@pytest.mark.parametrize("name", ["resnet50d", "convnext_nano", "efficientnet_b0"])
def test_catalog_fingerprints_match_a_fresh_build(name) -> None:
    """The shipped catalog agrees with the installed timm (else detection would miss these)."""
    from featviz_core.models.sources.timm_catalog import _meta_entry

    fresh = _meta_entry(name)
    assert fresh is not None
    assert catalog()["architectures"][name]["fingerprint"] == fresh["fingerprint"]


def test_featviz_offline_switches_huggingface_hub_offline(tmp_path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(FEATVIZ_OFFLINE="1", HF_HOME=str(tmp_path))
    code = "import featviz_core, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "True"
