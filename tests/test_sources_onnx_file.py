"""ONNX files refused with one sentence, and never a file read outside memory (featviz_core/models/sources/onnx_file.py)."""

from __future__ import annotations

import builtins
import io
import os
import pickle

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from featviz_core import ModelLoadError, inspect_onnx, load_onnx
from tests.onnx_builders import export, model, small_cnn, tensor


@pytest.fixture(scope="module")
def resnet_bytes() -> bytes:
    import torchvision

    torch.manual_seed(0)
    return export(torchvision.models.resnet18().eval(), opset=17)


def _external(t: TensorProto) -> None:
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", "weights.bin"


def _external_initializer() -> onnx.ModelProto:
    built = small_cnn()
    _external(built.graph.initializer[0])
    return built


def _external_constant() -> onnx.ModelProto:
    built = small_cnn()
    weights = built.graph.initializer[0]
    node = helper.make_node(
        "Constant",
        [],
        [weights.name],
        name="w_const",
        value=tensor(weights.name, np.zeros((6, 3, 3, 3), np.float32)),
    )
    _external(node.attribute[0].t)
    del built.graph.initializer[0]
    built.graph.node.insert(0, node)
    return built


def _external_in_subgraph() -> onnx.ModelProto:
    built = small_cnn()
    inner = helper.make_node("Constant", [], ["k"], value=tensor("k", np.ones(4, np.float32)))
    _external(inner.attribute[0].t)
    branch = helper.make_graph(
        [inner], "branch", [], [helper.make_tensor_value_info("k", TensorProto.FLOAT, [4])]
    )
    built.graph.initializer.append(tensor("flag", np.array(True)))
    built.graph.node.append(
        helper.make_node("If", ["flag"], ["k_out"], then_branch=branch, else_branch=branch)
    )
    return built


@pytest.mark.parametrize("make", [_external_initializer, _external_constant, _external_in_subgraph])
def test_external_data_is_refused_and_no_file_is_opened(make, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "weights.bin").write_bytes(
        np.ones(1000, np.float32).tobytes()
    )  # would be found if looked for
    monkeypatch.chdir(tmp_path)
    data = make().SerializeToString()
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def watch_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    def watch_os_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watch_open)
    monkeypatch.setattr(io, "open", watch_open)
    monkeypatch.setattr(os, "open", watch_os_open)
    with pytest.raises(ModelLoadError, match="external data") as caught:
        load_onnx(data, "model.onnx")
    with pytest.raises(ModelLoadError, match="external data"):
        inspect_onnx(data, "model.onnx")
    assert not [p for p in opened if "weights" in p]
    assert "\n" not in str(caught.value)


def _zip() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer)
    return buffer.getvalue()


BAD = {
    "random bytes": (lambda: np.random.default_rng(0).bytes(4096), "not an ONNX model"),
    "empty": (lambda: b"", "is empty"),
    "keras h5 renamed": (lambda: b"\x89HDF\r\n\x1a\n" + bytes(200), "Keras .h5 file"),
    "zip archive": (_zip, "zip archive"),
    "pickle": (lambda: pickle.dumps({"w": [1.0]}, protocol=4), "pickled PyTorch file"),
    "text": (lambda: b"hello, this is not a model\n" * 20, "not an ONNX model"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_files_that_are_not_onnx_get_one_sentence(kind) -> None:  # type: ignore[no-untyped-def]
    make, expected = BAD[kind]
    for call in (load_onnx, inspect_onnx):
        with pytest.raises(ModelLoadError, match=expected) as caught:
            call(make(), "model.onnx")
        message = str(caught.value)
        assert "\n" not in message and "Traceback" not in message and message.endswith(".")


def test_truncated_file_is_refused(resnet_bytes) -> None:  # type: ignore[no-untyped-def]
    data = resnet_bytes
    with pytest.raises(ModelLoadError, match="damaged or cut short"):
        load_onnx(data[: len(data) // 2], "resnet18.onnx")


def test_oversized_file_is_refused_before_parsing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import featviz_core.models.sources.onnx_file as onnx_file

    monkeypatch.setattr(onnx_file, "MAX_ONNX_BYTES", 1000)
    monkeypatch.setattr(onnx_file.ModelProto, "FromString", lambda *_: pytest.fail("parsed"))
    with pytest.raises(ModelLoadError, match="too large"):
        load_onnx(small_cnn().SerializeToString(), "big.onnx")


def test_inputs_featviz_cannot_feed_are_refused(resnet_bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelLoadError, match="4 channels"):
        load_onnx(small_cnn(channels=4).SerializeToString())
    two = small_cnn()
    two.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    with pytest.raises(ModelLoadError, match="2 inputs"):
        load_onnx(two.SerializeToString())
    flat = model([helper.make_node("Relu", ["x"], ["y"])], [1, 10], ["y"])
    with pytest.raises(ModelLoadError, match="2 dimensions"):
        load_onnx(flat.SerializeToString())
    with pytest.raises(ModelLoadError, match="fixed in the file"):
        load_onnx(resnet_bytes, input_size=(160, 160))
    with pytest.raises(ModelLoadError, match="normalization"):
        load_onnx(small_cnn().SerializeToString(), normalization="zscore")
    with pytest.raises(ModelLoadError, match="3 names but this model gives 4 scores"):
        load_onnx(small_cnn().SerializeToString(), categories=["a", "b", "c"])
    broken = small_cnn()
    broken.graph.node[1].input[0] = "nothing"
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        load_onnx(broken.SerializeToString(), "broken.onnx")
