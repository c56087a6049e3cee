"""The bundled collection (featviz_core/exemplars/demo_collection.py) and ``python -m featviz_core.exemplars
--demo``: the same pictures every time, how many and how big, the samples inside, no network, no disk."""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featviz_core import Exemplars, default_layer, find_exemplars, load_image
from featviz_core.demo import load_demo
from featviz_core.demo.shapes import CLASSES
from featviz_core.errors import CollectionError
from featviz_core.exemplars import demo_collection
from featviz_core.exemplars.cli import main as cli_main
from featviz_core.exemplars.demo_collection import PER_CLASS, PICTURE_SIZE, demo_picture, provenance
from featviz_core.images import list_samples, sample_bytes

ROOT = Path(__file__).resolve().parent.parent
LAYER = "block2.relu1"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any attempt to open a connection is recorded and refused."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_the_samples_then_the_drawn_shapes_of_every_class(no_network: list[object]) -> None:
    collection = demo_collection()
    samples = list_samples()
    assert len(collection) == len(samples) + PER_CLASS * len(CLASSES) == 188
    assert collection.names[: len(samples)] == tuple(f"samples/{s.filename}" for s in samples)
    for sample in samples:
        assert collection.read(f"samples/{sample.filename}") == sample_bytes(sample.name)
    drawn = collection.names[len(samples):]
    assert len(set(drawn)) == len(drawn)
    # classes interleaved: any first part holds every class
    assert [n.split("/")[1].rsplit("_", 1)[0] for n in drawn[: len(CLASSES)]] == list(CLASSES)
    for name in drawn:
        image = load_image(collection.read(name), name)
        assert image.mode == "RGB" and image.size == (PICTURE_SIZE, PICTURE_SIZE), name
    assert collection.label == "the bundled examples" and collection.refused == ()
    assert not no_network


def test_the_same_pictures_every_time_and_in_another_process() -> None:
    collection = demo_collection()
    names = [collection.names[0], "shapes/star_00.png", "shapes/checkerboard_29.png"]
    first = {n: collection.read(n) for n in names}
    demo_collection.cache_clear()
    again = demo_collection()
    assert again is not collection and again.key == collection.key
    assert {n: again.read(n) for n in names} == first
    # the reader travels to worker processes (pickled where the platform does not fork)
    copy = pickle.loads(pickle.dumps(again._reader))
    assert {n: copy.read(n) for n in names} == first
    # different pictures of one class, each drawn from its own seed
    a, b = (np.asarray(demo_picture("star", i)) for i in (0, 1))
    assert a.shape == (PICTURE_SIZE, PICTURE_SIZE, 3) and not np.array_equal(a, b)
    assert np.array_equal(np.asarray(demo_picture("star", 1)), b)
    smaller = demo_collection(per_class=2)
    assert len(smaller) == 8 + 12 and smaller.key != collection.key
    assert smaller.read("shapes/star_01.png") == collection.read("shapes/star_01.png")


def test_a_name_outside_the_collection_is_one_sentence() -> None:
    collection = demo_collection(per_class=2)
    for name in ("shapes/star_02.png", "shapes/star_1.png", "shapes/star_001.png", "shapes/dragon_00.png",
                 "../etc/passwd", "samples/secret.png"):
        with pytest.raises(CollectionError, match="is not one of the bundled examples"):
            collection.read(name)
    with pytest.raises(CollectionError, match="no class 'dragon'"):
        demo_picture("dragon", 0)


def test_the_caption_says_where_the_pictures_come_from() -> None:
    text = provenance()
    assert "180 pictures of the demo model's six shapes" in text
    assert text.count("CC0") == 2 and "nothing is uploaded or downloaded" in text


def test_channels_choose_different_pictures_from_every_kind() -> None:
    """Enough pictures for the page's first layer: its channels' best images are many different pictures, of
    every kind (with 8 samples alone, every channel would choose among the same 8)."""
    model = load_demo()
    result = find_exemplars(model, default_layer(model), demo_collection(), k=9, batch_size=32, num_workers=0)
    assert result.count == 188 and not result.failed
    chosen = {e.name for c in range(result.channels) for e in result.top(c)}
    kinds = {name.split("/")[1].rsplit("_", 1)[0] for name in chosen if name.startswith("shapes/")}
    assert len(chosen) >= 40 and kinds == set(CLASSES), (len(chosen), kinds)
    assert any(name.startswith("samples/") for name in chosen)
    assert sum(result.top(c)[0].peak > 0 for c in range(result.channels)) >= result.channels - 2


def test_command_line_demo_needs_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           no_network: list[object]) -> None:
    out = tmp_path / "demo.npz"
    assert cli_main(["--demo", "--layer", LAYER, "--out", str(out), "-k", "4", "--workers", "0", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "the bundled examples: 188 pictures" in err and "188 images read" in err
    saved = Exemplars.load(out)
    direct = find_exemplars(load_demo(), LAYER, demo_collection(), k=4, batch_size=32, num_workers=0)
    assert saved.model_name == "TinyVGG (demo)" and saved.count == 188
    assert saved.collection_key == demo_collection().key and saved.collection_root is None
    assert all(saved.top(c) == direct.top(c) and saved.bottom(c) == direct.bottom(c) for c in range(direct.channels))
    assert not no_network


def test_command_line_demo_refuses_what_does_not_go_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, said in ((["--demo", "--images", "photos"], "either --images or --demo"),
                       (["--demo", "--ray"], "--demo runs here"),
                       ([], "give the model with --model (or --demo")):
        with pytest.raises(SystemExit) as stopped:
            cli_main(argv)
        assert stopped.value.code == 2 and said in capsys.readouterr().err


def test_python_dash_m_demo_with_another_model(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "featviz_core.exemplars", "--demo", "--model", "demo",
                           "--layer", "block1.relu1", "--out", str(tmp_path / "ex.npz"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert Exemplars.load(tmp_path / "ex.npz").layer == "block1.relu1"
