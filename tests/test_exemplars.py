"""find_exemplars: running top-k equal to brute force, broken and empty collections, flat memory, clean stop,
exports and the command line."""

from __future__ import annotations

import io
import multiprocessing
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from featviz_core import Exemplars, extract, find_exemplars, load_image
from featviz_core.demo import load_demo
from featviz_core.exemplars import ExemplarsProgress
from featviz_core.exemplars.cli import main as cli_main
from featviz_core.exemplars.result import COLUMNS, ExemplarsError
from featviz_core.exemplars.search import EmptyCollectionError
from featviz_core.images import zip_collection
from featviz_core.layers import as_chw, hook_count, layer_info, parse_layer_name
from tests.conftest import make_tiny, random_image
from tests.data_builders import broken_bytes, dicom_bytes, jpeg_bytes, picture, png_bytes

ROOT = Path(__file__).resolve().parent.parent


def collection_items(n: int = 30) -> list[tuple[str, bytes]]:
    """``n`` generated pictures of different sizes and formats, in a nested naming."""
    items = []
    for i in range(n):
        image = picture(seed=100 + i, size=(40 + 7 * (i % 5), 36 + 5 * (i % 4)))
        data = jpeg_bytes(image) if i % 3 == 0 else png_bytes(image)
        items.append((f"{'scans/' if i % 2 else ''}img{i:02d}.{'jpg' if i % 3 == 0 else 'png'}", data))
    return items


def brute_force(model, layer: str, items, batch_size: int) -> dict[str, np.ndarray]:
    """Every activation of every image, kept, then peaks and positions by a plain loop.

    The images go through the model in the same batches of ``batch_size`` as find_exemplars forms them:
    convolutions give slightly different last bits for different batch compositions, and this comparison is
    about the top-k bookkeeping being exact, not about float rounding (checked separately below)."""
    info = layer_info(model, layer)
    module_name, call = parse_layer_name(layer)
    target = dict(model.module.named_modules())[module_name]
    tensors = [model.preprocess(load_image(data, name))[0] for name, data in items]
    kept: list[np.ndarray] = []
    for start in range(0, len(tensors), batch_size):
        seen: list[torch.Tensor] = []
        handle = target.register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out.detach().clone()))
        try:
            with torch.inference_mode():
                model.module(torch.stack(tensors[start:start + batch_size]))
        finally:
            handle.remove()
        kept.append(as_chw(seen[call - 1], info).numpy())
    every = np.concatenate(kept)  # (N, C, H, W): everything
    n, c, h, w = every.shape
    peaks = np.empty((n, c), np.float32)
    where = np.empty((n, c, 2), np.int64)
    for i in range(n):
        for ch in range(c):
            flat = every[i, ch].ravel()
            j = int(np.argmax(flat))
            peaks[i, ch] = flat[j]
            where[i, ch] = divmod(j, w)
    return {"every": every, "peaks": peaks, "where": where}


@pytest.mark.parametrize("layer", ["conv1", "relu#2", "bn2"])
def test_top_and_bottom_k_equal_brute_force(layer) -> None:
    model = make_tiny(seed=3, size=16)
    items = collection_items(30)
    k, batch = 7, 8
    result = find_exemplars(model, layer, items, k=k, batch_size=batch, num_workers=0)
    truth = brute_force(model, layer, items, batch)
    names = [name for name, _ in items]
    assert result.count == 30 and result.files == 30 and result.complete and not result.failed
    for ch in range(result.channels):
        for bottom in (False, True):
            sign = 1 if bottom else -1  # weakest first / strongest first, ties in collection order
            expected = sorted(range(len(items)), key=lambda i, ch=ch, sign=sign: (sign * truth["peaks"][i, ch], i))[:k]
            got = result.bottom(ch) if bottom else result.top(ch)
            assert [g.name for g in got] == [names[i] for i in expected]
            assert [g.peak for g in got] == [float(truth["peaks"][i, ch]) for i in expected]
            assert [g.position for g in got] == [tuple(int(v) for v in truth["where"][i, ch]) for i in expected]
            means = [float(truth["every"][i, ch].mean()) for i in expected]
            np.testing.assert_allclose(result.means(ch, bottom=bottom), means, rtol=1e-5, atol=1e-6)
    # The same activations as one image at a time through extract(), up to float rounding.
    single = np.stack([extract(model, load_image(d, n), [layer]).activations[layer].reshape(
        result.channels, -1).max(axis=1) for n, d in items])
    for ch in range(result.channels):
        np.testing.assert_allclose([g.peak for g in result.top(ch)], np.sort(single[:, ch])[::-1][:k], rtol=1e-5)


def test_worker_processes_give_the_same_result_and_are_shut_down() -> None:
    model = make_tiny(seed=1, size=16)
    items = collection_items(20)
    here = find_exemplars(model, "relu#2", items, k=5, batch_size=4, num_workers=0)
    workers = find_exemplars(model, "relu#2", items, k=5, batch_size=4, num_workers=2)
    for ch in range(here.channels):
        assert here.top(ch) == workers.top(ch) and here.bottom(ch) == workers.bottom(ch)
    assert not multiprocessing.active_children()


def test_broken_files_are_skipped_counted_and_listed_with_a_sentence() -> None:
    model = make_tiny(size=16)
    good = collection_items(6)
    items = [good[0], ("notes.txt", b"just text"), good[1], ("broken.png", broken_bytes()), ("empty.jpg", b""),
             *good[2:], ("scan.dcm", dicom_bytes())]
    result = find_exemplars(model, "conv2", items, k=3, batch_size=3, num_workers=0)
    assert result.count == 7 and result.files == 10
    assert [name for name, _ in result.failed] == ["notes.txt", "broken.png", "empty.jpg"]
    for name, reason in result.failed:
        assert name in reason and reason.endswith(".") and "\n" not in reason and "Traceback" not in reason
    assert "scan.dcm" not in dict(result.failed)  # DICOM files are read like every other format


def test_an_empty_collection_is_one_friendly_sentence() -> None:
    model = make_tiny(size=16)
    with pytest.raises(EmptyCollectionError) as empty:
        find_exemplars(model, "conv1", [])
    message = str(empty.value)
    assert message.startswith("There are no image files") and message.count(".") <= 2 and "\n" not in message
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__MACOSX/._a.png", b"x")
        archive.writestr("folder/.DS_Store", b"x")
    with pytest.raises(EmptyCollectionError, match="There are no image files in the zip file holiday.zip"):
        find_exemplars(model, "conv1", zip_collection(buffer.getvalue(), "holiday.zip"))
    with pytest.raises(EmptyCollectionError) as none_read:
        find_exemplars(model, "conv1", [("a.txt", b"text"), ("b.png", broken_bytes())])
    assert "None of the 2 files" in str(none_read.value)
    assert [name for name, _ in none_read.value.failed] == ["a.txt", "b.png"]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc (Linux)")
def test_memory_stays_flat_over_2000_images() -> None:
    model = make_tiny(seed=2, size=64)
    tiny = [png_bytes(random_image(seed=i, size=(12, 10))) for i in range(50)]
    items = [(f"i{i:04d}.png", tiny[i % 50]) for i in range(2000)]
    rss: dict[int, int] = {}

    def progress(done: int, total: int, preview: object) -> None:
        if done in (500, 2000):
            rss[done] = _rss_bytes()

    result = find_exemplars(model, "conv1", items, k=9, batch_size=50, progress=progress, num_workers=0)
    assert result.count == 2000
    growth = rss[2000] - rss[500]
    per_image = 6 * 64 * 64 * 4  # what keeping this layer's maps for each image would cost
    bound = 16 * 1024**2
    assert bound < 0.15 * per_image * 1500, "the bound must be far below what per-image arrays would take"
    assert growth < bound, f"RSS grew by {growth / 1e6:.1f} MB between image 500 and 2,000"


def test_progress_record_moves_forward_in_many_steps_and_ends_at_the_total() -> None:
    # What the Exemplars page's bar draws, independent of how fast the machine is: the job reports after every
    # batch, each report further than the last, and the last one is the whole collection.
    model = make_tiny(size=16)
    items = collection_items(24)
    record: list[tuple[int, int]] = []

    def progress(done: int, total: int, preview: ExemplarsProgress) -> None:
        record.append((done, total))
        assert (preview.done, preview.total) == (done, total)

    result = find_exemplars(model, "relu#2", items, k=3, batch_size=4, progress=progress, num_workers=0)
    done = [d for d, _ in record]
    assert len(set(done)) >= 6, record
    assert done == sorted(done) and len(set(done)) == len(done), f"steps back or repeated: {record}"
    assert all(total == 24 for _, total in record) and done[-1] == 24 == result.count


def test_a_stopped_run_leaves_the_model_as_it_was_and_shows_a_partial_result() -> None:
    model = make_tiny(size=16)
    items = collection_items(24)
    previews: list[ExemplarsProgress] = []

    class Stop(Exception):
        pass

    def progress(done: int, total: int, preview: ExemplarsProgress) -> None:
        previews.append(preview)
        assert not model.lock._is_owned(), "the lock is held for one batch at a time"  # type: ignore[attr-defined]
        if done >= 8:
            raise Stop

    with pytest.raises(Stop):
        find_exemplars(model, "relu#2", items, k=3, batch_size=4, progress=progress, num_workers=1)
    assert hook_count(model.module) == 0 and not model.module.training
    assert all(p.grad is None for p in model.module.parameters())
    acquired = []

    def other_session() -> None:
        acquired.append(model.lock.acquire(timeout=5))
        model.lock.release()

    thread = threading.Thread(target=other_session)
    thread.start()
    thread.join()
    assert acquired == [True], "the lock was released"
    assert not multiprocessing.active_children()
    partial = previews[-1].partial
    assert (previews[-1].done, previews[-1].total) == (8, 24)
    assert not partial.complete and partial.count == 8 and len(partial.top(0)) == 3
    assert partial.patch(0, 0).size == partial.receptive_field.size[::-1]


def test_result_file_round_trip_and_table() -> None:
    model = make_tiny(size=16)
    items = collection_items(12) + [("bad.png", broken_bytes())]
    result = find_exemplars(model, "conv2", items, k=4, batch_size=5, num_workers=0)
    table = result.table()
    assert tuple(table) == COLUMNS and len(table["image"]) == result.channels * 4 * 2
    loaded = Exemplars.load(result.npz_bytes())
    assert not loaded.has_images
    for ch in range(result.channels):
        assert loaded.top(ch) == result.top(ch) and loaded.bottom(ch) == result.bottom(ch)
        np.testing.assert_array_equal(loaded.means(ch), result.means(ch))
    assert loaded.failed == result.failed and loaded.receptive_field == result.receptive_field
    assert np.array_equal(loaded.strongest_channels(), result.strongest_channels())
    with np.load(io.BytesIO(result.npz_bytes()), allow_pickle=False) as npz:  # plain arrays, no pickle
        assert npz["peak"].dtype == np.float32 and npz["image"].dtype.kind == "U"
    with pytest.raises(ExemplarsError, match="not an exemplars result"):
        Exemplars.load(b"not a zip")
    with pytest.raises(ExemplarsError, match="not an exemplars result"):
        buffer = io.BytesIO()
        np.savez(buffer, peak=np.zeros(3))
        Exemplars.load(buffer.getvalue())
    with pytest.raises(ExemplarsError, match="not available here"):
        loaded.patch(0, 0)
    again = loaded.with_images(zip_collection(_zip(items)), model.model_view)
    assert np.array_equal(np.asarray(again.patch(0, 1)), np.asarray(result.patch(0, 1)))
    sheet = result.contact_sheet(0)
    assert sheet.width >= 4 * 128 and sheet.height > 3 * 128
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    parquet = pq.read_table(io.BytesIO(result.parquet_bytes()))
    assert parquet.column_names == list(COLUMNS) and b"featviz" in parquet.schema.metadata


def _zip(items) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in items:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_command_line_writes_a_result_the_library_reads(tmp_path, capsys) -> None:
    folder = tmp_path / "shapes"
    for i, (name, data) in enumerate(collection_items(10)):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if i == 0:
            (folder / "broken.png").write_bytes(broken_bytes())
    out = tmp_path / "ex.npz"
    code = cli_main(["--model", "demo", "--layer", "block2.relu1", "--images", str(folder), "--out", str(out),
                     "-k", "3", "--batch-size", "4", "--workers", "0"])
    assert code == 0
    err = capsys.readouterr().err
    assert "10 images read" in err and "broken.png" in err and "11/11 images" in err
    loaded = Exemplars.load(out)
    direct = find_exemplars(load_demo(), "block2.relu1", folder, k=3, batch_size=4, num_workers=0)
    assert all(loaded.top(c) == direct.top(c) for c in range(direct.channels))
    assert loaded.collection_root == str(folder.resolve())
    assert cli_main(["--model", "demo", "--images", str(tmp_path / "missing"), "--quiet"]) == 1
    assert "There is no folder" in capsys.readouterr().err


def test_python_dash_m_runs_the_command_line(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "featviz_core.exemplars",
                           "--model", "demo", "--list-layers"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "block2.relu1 · ReLU · 32×32×32" in done.stdout


class OneAtATime(torch.nn.Module):
    """Like an ONNX graph run by onnxruntime with a fixed batch of one: refuses bigger batches."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise RuntimeError("Got invalid dimensions for input: index 0 Got: 16 Expected: 1")
        return self.features(x)


def test_a_model_outside_autograd_with_a_batch_of_one() -> None:
    import dataclasses

    model = dataclasses.replace(make_tiny(size=16), module=OneAtATime().eval(), key="test:one-at-a-time",
                                supports_gradients=False)
    items = collection_items(10)
    result = find_exemplars(model, "features.3", items, k=4, batch_size=16, num_workers=0)
    field = result.receptive_field
    assert field.method == "perturbation" and (field.size, field.stride) == ((6, 6), (2.0, 2.0))
    peaks = np.stack([extract(model, load_image(d, n), ["features.3"]).activations["features.3"].reshape(4, -1)
                      .max(axis=1) for n, d in items])  # one image at a time: exactly the same numbers
    for ch in range(4):
        order = sorted(range(len(items)), key=lambda i, ch=ch: (-peaks[i, ch], i))[:4]
        assert [e.name for e in result.top(ch)] == [items[i][0] for i in order]
        assert [e.peak for e in result.top(ch)] == [float(peaks[i, ch]) for i in order]


def test_without_fork_decoding_stays_in_this_process_unless_the_inputs_pickle(monkeypatch) -> None:
    from featviz_core.exemplars import search as ex
    from featviz_core.images.collection import items_collection

    collection = items_collection(collection_items(2))
    demo = ex._Files(collection, load_demo())  # its preprocessing holds a local function (a closure)
    assert ex._context(demo, 2)[0] == 2  # Linux: fork, nothing is pickled
    monkeypatch.setattr(ex.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert ex._context(demo, 2) == (0, None), "a closure cannot travel to a spawned worker: decode here"
    tiny = ex._Files(collection, make_tiny(size=16))  # torchvision transforms only: they pickle
    workers, context = ex._context(tiny, 2)
    assert workers == 2 and context.get_start_method() == "spawn"


def test_exemplars_of_a_vision_transformer_token_layer() -> None:
    """A channel of a token layer is one embedding dimension over the patch grid (the class token left out)."""
    from tests.test_cam import vit_model

    model = vit_model("vit_tiny_patch16_224", img_size=64, depth=2)
    items = collection_items(10)
    result = find_exemplars(model, "blocks.1", items, k=3, batch_size=4, num_workers=0)
    assert result.map_size == (4, 4) and result.channels == 192
    tensors = [model.preprocess(load_image(data, name))[0] for name, data in items]
    seen: list[torch.Tensor] = []
    handle = model.module.blocks[1].register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.inference_mode():
            for start in range(0, len(tensors), 4):  # the batches find_exemplars forms
                model.module(torch.stack(tensors[start:start + 4]))
    finally:
        handle.remove()
    patches = torch.cat(seen)[:, 1:, :]  # (N, 16, 192): the class token dropped, row-major 4×4 grid
    peaks = patches.max(dim=1).values.numpy()
    where = patches.argmax(dim=1).numpy()
    for channel in (0, 7, 191):
        order = sorted(range(len(items)), key=lambda i, c=channel: (-peaks[i, c], i))[:3]
        got = result.top(channel)
        assert [g.name for g in got] == [items[i][0] for i in order]
        assert [g.peak for g in got] == [float(peaks[i, channel]) for i in order]
        assert [g.position for g in got] == [divmod(int(where[i, channel]), 4) for i in order]
    assert hook_count(model.module) == 0
