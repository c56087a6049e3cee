"""Exemplars page, driven in-process with AppTest: the bundled examples on the first view, zip upload, run,
results, open in the sidebar, exports, a folder given at start (and only then), a saved result."""

from __future__ import annotations

import io
import threading
import zipfile

import numpy as np
import pytest

from featviz_core import Exemplars
from featviz_core.demo.shapes import CLASSES, generate
from tests.conftest import no_exception
from tests.data_builders import broken_bytes, png_bytes

PAGE = "pages/exemplars.py"


def shapes(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` images of the demo model's shapes and textures, named by what they show."""
    rng = np.random.default_rng(seed)
    return [(f"{CLASSES[i % len(CLASSES)]}/{CLASSES[i % len(CLASSES)]}_{i:03d}.png",
             png_bytes(generate(CLASSES[i % len(CLASSES)], rng))) for i in range(n)]


def shapes_zip(n: int, seed: int = 0, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in [*shapes(n, seed), *(extra or {}).items()]:
            archive.writestr(f"my shapes/{name}", data)
    return buffer.getvalue()


def open_page(make_app, source: str = "Zip file", **kwargs):  # type: ignore[no-untyped-def]
    """The page with ``source`` chosen before its first view (so the bundled examples are not searched)."""
    return make_app(page=PAGE, state={"ex_source": source}, **kwargs)


def upload_zip(at, data: bytes, name: str = "shapes.zip"):  # type: ignore[no-untyped-def]
    if at.segmented_control(key="ex_source").value != "Zip file":
        at.segmented_control(key="ex_source").set_value("Zip file").run()
    at.file_uploader(key="ex_zip").upload(name, data, "application/zip").run()
    return at


def current_job(at):  # type: ignore[no-untyped-def]
    """The exemplars job the page shows now."""
    from ui import jobs

    job = jobs.get(at.session_state["_ex_job"])
    assert job is not None and job.label.startswith("exemplars")
    return job


def run_to_the_end(at, click: bool = True):  # type: ignore[no-untyped-def]
    if click:
        at.button(key="ex_run").click().run()
    job = current_job(at)
    assert job.wait(300), "the run did not end"
    at.run()
    no_exception(at)
    return job


def held_at_every_batch(monkeypatch, gate: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """Jobs started from now on wait for ``gate`` before each progress report (so they are still running)."""
    from ui import jobs

    real_start = jobs.start

    def held_start(key, fn, **kwargs):  # type: ignore[no-untyped-def]
        def held(progress):  # type: ignore[no-untyped-def]
            def wait_then_report(done, total, preview):  # type: ignore[no-untyped-def]
                gate.wait(30)
                progress(done, total, preview)
            return fn(wait_then_report)
        return real_start(key, held, **kwargs)

    monkeypatch.setattr(jobs, "start", held_start)


def captions(at) -> list[str]:
    return [c.value for c in at.caption]


@pytest.fixture(autouse=True)
def _forget_jobs():
    from ui import jobs

    jobs._jobs.clear()
    yield
    jobs._jobs.clear()


def test_zip_upload_run_results_open_and_downloads(make_app, monkeypatch) -> None:
    monkeypatch.delenv("FEATVIZ_IMAGES", raising=False)
    at = open_page(make_app)
    no_exception(at)
    assert at.title[0].value == "Exemplars"
    assert at.segmented_control(key="ex_source").options == ["Bundled examples", "Zip file", "Saved result (.npz)"]
    data = shapes_zip(24, extra={"notes.txt": b"hello", "broken.png": broken_bytes(), "__MACOSX/._x.png": b"junk"})
    upload_zip(at, data)
    no_exception(at)
    assert any("26 files" in c for c in captions(at)), captions(at)
    job = run_to_the_end(at)
    assert job.state == "done"
    result: Exemplars = job.result
    # the server-wide table of finished jobs keeps numbers and names, never the images
    assert not result.has_images and not job.preview.partial.has_images
    assert result.count == 24 and [n for n, _ in result.failed] == ["my shapes/broken.png", "my shapes/notes.txt"]
    assert at.subheader[0].value.startswith("24 images read")
    assert any("2 files could not be read" in e.label for e in at.expander)
    channel = at.selectbox(key="ex_channel").value
    assert channel == int(result.strongest_channels()[0])
    # 9 strongest images + 9 patches + 9 weakest, each with its name and peak
    assert len(at.main.get("image")) == 27
    top = result.top(channel)
    assert any(f"peak {top[0].peak:.3g}" in c for c in captions(at))
    # each name on one line of its own, shortened in the middle so that the number that tells files apart stays
    names = [c for c in at.caption if c.value.endswith(".png")]
    assert len(names) == 27 and all(not c.proto.wrap and len(c.value) <= 15 for c in names)
    for item in top:
        base = item.name.rsplit("/", 1)[-1]
        short = base if len(base) <= 15 else base[:6] + "…" + base[-7:]
        assert short in captions(at), (short, captions(at))
    assert any(c.value.startswith("checke…0") for c in names)  # checkerboard_0NN.png: 20 characters
    # another channel, by number
    at.selectbox(key="ex_order").set_value("index").run()
    at.selectbox(key="ex_channel").set_value(5).run()
    no_exception(at)
    assert any(f"peak {result.top(5)[0].peak:.3g}" in c for c in captions(at))
    # Open: the exemplar becomes the sidebar's image
    at.button(key="ex_open_top_0").click().run()
    no_exception(at)
    selection = at.session_state["_selection"]
    assert selection.image_source == "upload" and selection.image_name == result.top(5)[0].name.rsplit("/", 1)[-1]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert selection.image_bytes == archive.read(result.top(5)[0].name)
    assert any("is now the image in the sidebar" in s.value for s in at.success)
    labels = [b.proto.label for b in at.main.get("download_button") if b.proto.label != "Download report"]
    assert labels[:2] == ["Table (.npz)", "Table (.parquet)"] and labels[2].startswith("Contact sheet of channel 5")


def test_a_stopped_run_shows_the_partial_result(make_app) -> None:
    from ui import jobs

    at = open_page(make_app)
    upload_zip(at, shapes_zip(40))
    gate_reached = []
    real_start = jobs.start

    def start_and_stop(key, fn, **kwargs):  # type: ignore[no-untyped-def]
        def stopping(progress):  # type: ignore[no-untyped-def]
            def wrapped(done, total, preview):  # type: ignore[no-untyped-def]
                progress(done, total, preview)
                if done >= 16 and not gate_reached:
                    gate_reached.append(done)
                    jobs.stop(key)
                    progress(done, total, preview)  # raises JobStopped: as if Stop was pressed
            return fn(wrapped)
        return real_start(key, stopping, **kwargs)

    jobs.start = start_and_stop
    try:
        job = run_to_the_end(at)
    finally:
        jobs.start = real_start
    assert job.state == "stopped"
    assert any("Stopped after 16 of 40 files" in i.value for i in at.info)
    assert at.subheader[0].value.startswith("16 images read")
    assert at.button(key="ex_run").label == "Run again"


def test_an_empty_zip_and_a_zip_of_broken_files_are_one_sentence(make_app) -> None:
    at = open_page(make_app)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__MACOSX/._a.png", b"x")
    upload_zip(at, buffer.getvalue(), "empty.zip")
    no_exception(at)
    assert at.warning[0].value.startswith("There are no image files in the zip file empty.zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", broken_bytes())
        archive.writestr("b.txt", b"text")
    upload_zip(at, buffer.getvalue(), "broken.zip")
    run_to_the_end(at)
    assert at.warning[0].value.startswith("None of the 2 files")
    assert any("2 files could not be read" in e.label for e in at.expander)
    upload_zip(at, b"not a zip at all", "fake.zip")
    no_exception(at)
    assert "Could not open fake.zip as a zip file" in at.error[0].value


def test_the_folder_source_only_with_a_folder_given_at_start(make_app, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("FEATVIZ_IMAGES", raising=False)
    at = open_page(make_app)
    assert "Folder on this computer" not in at.segmented_control(key="ex_source").options
    root = tmp_path / "images"
    for name, data in shapes(12):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (tmp_path / "private").mkdir()
    monkeypatch.setenv("FEATVIZ_IMAGES", str(root))
    at = make_app(page=PAGE)  # a folder given at start is what the page opens on
    no_exception(at)
    assert at.segmented_control(key="ex_source").value == "Folder on this computer"
    assert any("The folder images: 12 files" in c for c in captions(at)), captions(at)
    at.text_input(key="ex_folder").input("../private").run()
    assert "outside the folder featviz was started with" in at.error[0].value
    at.text_input(key="ex_folder").input("star").run()
    no_exception(at)
    assert any("The folder star: 2 files" in c for c in captions(at)), captions(at)
    job = run_to_the_end(at)
    assert job.result.count == 2 and at.subheader[0].value.startswith("2 images read")
    # the saved result opens again, with its pictures, because they are inside the folder given at start
    saved = job.result.npz_bytes()
    at.segmented_control(key="ex_source").set_value("Saved result (.npz)").run()
    at.file_uploader(key="ex_result_file").upload("ex.npz", saved, "application/octet-stream").run()
    no_exception(at)
    assert at.subheader[0].value.startswith("2 images read") and len(at.main.get("image")) == 6


def test_a_saved_result_from_elsewhere_shows_its_numbers(make_app) -> None:
    from featviz_core import find_exemplars
    from featviz_core.demo import load_demo

    result = find_exemplars(load_demo(), "block2.relu1", shapes(10), k=3, num_workers=0)
    at = open_page(make_app, "Saved result (.npz)")
    at.file_uploader(key="ex_result_file").upload("ex.npz", result.npz_bytes(), "application/octet-stream").run()
    no_exception(at)
    assert any("in a folder this app cannot open" in i.value for i in at.info)
    best = int(result.strongest_channels()[0])
    assert not at.main.get("image") and any(f"peak {result.top(best)[0].peak:.3g}" in c for c in captions(at))
    at.file_uploader(key="ex_result_file").upload("bad.npz", b"garbage", "application/octet-stream").run()
    assert "not an exemplars result" in at.error[0].value


def test_choosing_another_layer_stops_the_run_for_the_old_one(make_app, monkeypatch) -> None:
    from ui import jobs

    at = open_page(make_app)
    upload_zip(at, shapes_zip(60))
    gate = threading.Event()
    with monkeypatch.context() as patch:
        held_at_every_batch(patch, gate)
        at.button(key="ex_run").click().run()
    (first,) = [j for j in jobs.running_jobs() if j.label.startswith("exemplars")]
    at.selectbox(key="layer").set_value("block1.relu1").run()
    gate.set()
    assert first.wait(60) and first.state == "stopped"
    assert any(b.label.startswith("Find the exemplars") for b in at.button)


def test_open_replaces_an_image_uploaded_in_the_sidebar_until_a_new_upload(make_app) -> None:
    from tests.conftest import upload_image

    at = upload_image(make_app, "mine.png", png_bytes(seed=3))
    at.switch_page(PAGE).run()
    upload_zip(at, shapes_zip(12))
    job = run_to_the_end(at)
    best = job.result.top(int(at.selectbox(key="ex_channel").value))[0].name.rsplit("/", 1)[-1]
    at.button(key="ex_open_top_0").click().run()
    assert at.session_state["_selection"].image_name == best, "the sidebar's own upload must not win back"
    at.run()
    assert at.session_state["_selection"].image_name == best
    at.file_uploader(key="upload").upload("other.png", png_bytes(seed=4), "image/png").run()
    assert at.session_state["_selection"].image_name == "other.png"


def test_the_first_view_shows_the_top_images_of_the_bundled_examples(make_app, monkeypatch) -> None:
    from featviz_core import find_exemplars
    from featviz_core.demo import load_demo
    from featviz_core.exemplars import demo_collection
    from ui import jobs

    monkeypatch.delenv("FEATVIZ_IMAGES", raising=False)
    at = make_app(page=PAGE)
    no_exception(at)
    assert at.segmented_control(key="ex_source").value == "Bundled examples"
    assert not at.main.get("file_uploader"), "nothing to upload on the first view"
    assert any("CC0" in c and "nothing is uploaded or downloaded" in c for c in captions(at)), captions(at)
    assert any(c.startswith("The bundled examples: 188 files") for c in captions(at)), captions(at)
    job = current_job(at)  # started by the first view itself: no button to press
    assert job.wait(300) and job.state == "done", job.error
    at.run()
    no_exception(at)
    assert at.subheader[0].value.startswith("188 images read")
    channel = int(at.selectbox(key="ex_channel").value)
    assert channel == int(job.result.strongest_channels()[0])
    assert len(at.main.get("image")) == 27  # 9 strongest images, their patches, 9 weakest
    layer = at.session_state["_selection"].layer.name
    direct = find_exemplars(load_demo(), layer, demo_collection(), k=9, batch_size=16, num_workers=0)
    top = job.result.top(channel)
    assert [e.name for e in top] == [e.name for e in direct.top(channel)]
    assert np.allclose([e.peak for e in top], [e.peak for e in direct.top(channel)], rtol=1e-5)
    names = [c.value for c in at.caption if c.value.endswith((".png", ".jpg"))]
    assert top[0].name.rsplit("/", 1)[-1][:6] in names[0], names
    # Open: a bundled picture becomes the sidebar's image
    at.button(key="ex_open_top_0").click().run()
    no_exception(at)
    assert at.session_state["_selection"].image_bytes == demo_collection().read(top[0].name)
    # the next visitor finds the result at once, without a second search
    started = len(jobs._jobs)
    other = make_app(page=PAGE)
    no_exception(other)
    assert other.subheader[0].value.startswith("188 images read") and len(jobs._jobs) == started


def test_the_bundled_search_stopped_by_a_choice_starts_again_stopped_by_stop_waits(make_app, monkeypatch) -> None:
    from ui import jobs

    monkeypatch.delenv("FEATVIZ_IMAGES", raising=False)
    gate = threading.Event()
    real_start = jobs.start
    held_at_every_batch(monkeypatch, gate)
    at = make_app(page=PAGE)
    first = current_job(at)
    assert first.running and at.button(key="ex_stop")
    # choosing "Zip file" stops it (nobody looks at it any more); coming back starts it again
    at.segmented_control(key="ex_source").set_value("Zip file").run()
    assert at.main.get("file_uploader")
    gate.set()
    assert first.wait(60) and first.state == "stopped"
    gate.clear()
    at.segmented_control(key="ex_source").set_value("Bundled examples").run()
    second = current_job(at)
    assert second is not first and second.running
    # Stop pressed: it waits for "Run again", even after a detour
    at.button(key="ex_stop").click().run()
    gate.set()
    assert second.wait(60) and second.state == "stopped"
    for source in ("Zip file", "Bundled examples"):
        at.segmented_control(key="ex_source").set_value(source).run()
    no_exception(at)
    assert current_job(at) is second and at.button(key="ex_run").label == "Run again"
    # a click on the chosen segment leaves it chosen
    at.segmented_control(key="ex_source").set_value(None).run()
    assert at.segmented_control(key="ex_source").value == "Bundled examples"
    # another visitor is not held back by this one's Stop
    monkeypatch.setattr(jobs, "start", real_start)
    monkeypatch.setattr(jobs, "session_id", lambda: "another visitor")  # AppTests share one session id
    other = make_app(page=PAGE)
    third = current_job(other)
    assert third is not second and third.wait(300) and third.state == "done"


def test_a_saved_result_of_the_bundled_examples_shows_its_pictures(make_app) -> None:
    from featviz_core import find_exemplars
    from featviz_core.demo import load_demo
    from featviz_core.exemplars import demo_collection

    result = find_exemplars(load_demo(), "block2.relu1", demo_collection(per_class=3), k=3, num_workers=0)
    other = open_page(make_app, "Saved result (.npz)")
    other.file_uploader(key="ex_result_file").upload("other.npz", result.npz_bytes(), "application/octet-stream")
    other.run()
    assert any("in a folder this app cannot open" in i.value for i in other.info), "not the bundled collection"
    result = find_exemplars(load_demo(), "block2.relu1", demo_collection(), k=3, num_workers=0)  # as --demo does
    at = open_page(make_app, "Saved result (.npz)")
    at.file_uploader(key="ex_result_file").upload("demo.npz", result.npz_bytes(), "application/octet-stream").run()
    no_exception(at)
    assert not [i for i in at.info if "cannot open" in i.value], [i.value for i in at.info]
    assert len(at.main.get("image")) == 9
