"""Collections: zip files read in memory (nested, hidden files skipped, zip bombs refused), folders confined
to the folder the app was started with."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from featviz_core.images import open_collection, zip_collection
from featviz_core.images.collection import (
    CollectionError,
    folder_collection,
    items_collection,
    resolve_subfolder,
)
from tests.data_builders import png_bytes


def make_zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_is_read_in_memory_nested_without_hidden_files() -> None:
    data = make_zip({
        "xrays/b.png": png_bytes(seed=1), "a.png": png_bytes(seed=0), "xrays/deeper/c.dcm": b"dicom",
        "__MACOSX/xrays/._b.png": b"resource fork", ".hidden.png": b"x", "xrays/.DS_Store": b"x",
        "xrays/.thumbs/d.png": b"x", "xrays/empty/": b"",
    })
    collection = zip_collection(data, "xrays.zip")
    assert collection.names == ("a.png", "xrays/b.png", "xrays/deeper/c.dcm")
    assert collection.read("xrays/b.png") == png_bytes(seed=1)
    assert collection.label == "the zip file xrays.zip" and collection.key.startswith("zip:")
    assert zip_collection(data).key == collection.key != zip_collection(make_zip({"a.png": b"1"})).key


def test_zip_bombs_and_huge_zips_are_refused_with_a_sentence() -> None:
    bomb = make_zip({"zeros.png": bytes(5_000_000)})  # 5 MB that compress to a few KB
    assert len(bomb) < 50_000
    with pytest.raises(CollectionError, match="zip bomb") as bombed:
        zip_collection(bomb, "bomb.zip", max_total_bytes=1_000_000)
    assert "\n" not in str(bombed.value)
    many = make_zip({f"{i}.png": b"x" for i in range(30)})
    with pytest.raises(CollectionError, match="holds 30 files, more than the 20"):
        zip_collection(many, "many.zip", max_files=20)
    with pytest.raises(CollectionError, match="as a zip file"):
        zip_collection(b"PK\x03\x04 not really a zip", "fake.zip")


def test_a_member_that_cannot_be_unpacked_is_one_files_failure() -> None:
    data = bytearray(make_zip({"good.png": png_bytes(seed=0), "bad.png": png_bytes(seed=1)}))
    start = data.index(b"bad.png") + len("bad.png")  # bad.png's compressed bytes follow its local header
    data[start + 40:start + 60] = bytes(20)
    collection = zip_collection(bytes(data), "damaged.zip")
    assert collection.read("good.png") == png_bytes(seed=0)
    with pytest.raises(CollectionError, match="Could not unpack bad.png"):
        collection.read("bad.png")


def test_a_subfolder_typed_in_the_browser_stays_inside_the_root(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "ward" / "day1").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    assert resolve_subfolder(root, "") == root.resolve()
    assert resolve_subfolder(root, "ward/day1") == (root / "ward" / "day1").resolve()
    for escape in ("..", "../secret", "ward/../../secret", str(tmp_path / "secret"), "/etc"):
        with pytest.raises(CollectionError, match="outside the folder"):
            resolve_subfolder(root, escape)
    os.symlink(tmp_path / "secret", root / "link")
    with pytest.raises(CollectionError, match="outside the folder"):
        resolve_subfolder(root, "link")
    with pytest.raises(CollectionError, match="There is no folder"):
        resolve_subfolder(root, "ward/day9")


def test_a_folder_confined_to_its_root_does_not_follow_links_out(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "ward").mkdir(parents=True)
    (root / "ward" / "a.png").write_bytes(png_bytes(seed=0))
    (root / "ward" / ".hidden.png").write_bytes(b"x")
    (root / "b.png").write_bytes(png_bytes(seed=1))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.png").write_bytes(png_bytes(seed=2))
    os.symlink(outside / "private.png", root / "ward" / "escape.png")
    os.symlink(root / "b.png", root / "ward" / "same.png")  # a link that stays inside is fine
    os.symlink(outside, root / "linked_folder")
    confined = folder_collection(root, root=root)
    assert confined.names == ("b.png", "ward/a.png", "ward/same.png")
    assert dict(confined.refused).keys() == {"ward/escape.png", "linked_folder/"}
    assert "outside the folder" in dict(confined.refused)["ward/escape.png"]
    assert confined.read("ward/same.png") == png_bytes(seed=1)
    with pytest.raises(CollectionError, match="outside the folder"):
        confined.read("ward/escape.png")
    free = folder_collection(root)  # the command line: file links are followed
    assert "ward/escape.png" in free.names and free.root == str(root.resolve())
    with pytest.raises(CollectionError, match="more than 2 files"):
        folder_collection(root, root=root, max_files=2)


def test_open_collection_takes_folders_zip_paths_and_pairs(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(seed=0))
    (tmp_path / "set.zip").write_bytes(make_zip({"z/b.png": png_bytes(seed=1)}))
    assert open_collection(tmp_path / "set.zip").names == ("z/b.png",)
    assert open_collection(str(tmp_path)).names == ("a.png", "set.zip")
    pairs = items_collection([("x.png", b"1"), ("x.png", b"2"), ("y.png", b"3")])
    assert pairs.names == ("x.png", "x.png (2)", "y.png") and pairs.read("x.png (2)") == b"2"
    assert open_collection(pairs) is pairs
