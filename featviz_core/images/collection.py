"""A collection of images read one at a time: a zip file kept in memory, a folder, or (name, bytes) pairs.

:func:`open_collection` turns what a user gives into a :class:`Collection`: its image names in a fixed order
(sorted paths) and a way to read each file's bytes on demand, so a collection of any size costs only its
list of names. Folders and zip files may be nested; hidden files, ``__MACOSX/`` folders and folders are
left out. Nothing is ever written to disk: a zip upload is read from memory with :mod:`zipfile`.

Safety: a zip file is checked against :data:`MAX_FILES` and :data:`MAX_TOTAL_BYTES` (the sizes its directory
declares, which also bound what reading it can produce) before anything is unpacked, so a "zip bomb" is
refused with one sentence. A folder given by the person who started the app is a *root*: a sub-folder typed
in the browser must stay inside it, and links that lead out of it are not followed.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CollectionError

__all__ = [
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_TOTAL_BYTES",
    "Collection",
    "CollectionError",
    "folder_collection",
    "folder_reader",
    "inside",
    "items_collection",
    "open_collection",
    "resolve_subfolder",
    "zip_collection",
]

MAX_FILES = 50_000
"""Most files a zip upload may hold."""
MAX_TOTAL_BYTES = 4 * 1024**3
"""Most bytes the files of a zip upload may unpack to, together (4 GiB)."""
MAX_FILE_BYTES = 512 * 1024**2
"""Largest single file read from a collection (512 MiB)."""


def _hidden(parts: Iterable[str]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


class _ZipReader:
    """Reads members of a zip file held in memory (the file object is reopened in each process)."""

    def __init__(self, data: bytes, members: dict[str, zipfile.ZipInfo]) -> None:
        self.data = data
        self.members = members
        self._zip: zipfile.ZipFile | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data, "members": self.members, "_zip": None}

    def read(self, name: str) -> bytes:
        if self._zip is None:
            self._zip = zipfile.ZipFile(io.BytesIO(self.data))
        info = self.members[name]
        if info.file_size > MAX_FILE_BYTES:
            raise CollectionError(f"Skipped {name}: it unpacks to more than {MAX_FILE_BYTES >> 20} MB.")
        try:
            return self._zip.read(info)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError,
                EOFError, ValueError):
            raise CollectionError(
                f"Could not unpack {name} from the zip file: it is damaged or uses a kind of compression "
                "featviz cannot read; zip the images again."
            ) from None


class _FolderReader:
    """Reads files below ``base``; every path is checked again to stay inside ``root``."""

    def __init__(self, base: Path, root: Path | None) -> None:
        self.base = base
        self.root = root

    def read(self, name: str) -> bytes:
        path = self.base / name
        if self.root is not None and not inside(path.resolve(), self.root):
            raise CollectionError(f"Skipped {name}: it is a link to a place outside the folder.")
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise CollectionError(f"Skipped {name}: it is larger than {MAX_FILE_BYTES >> 20} MB.")
            return path.read_bytes()
        except OSError:
            raise CollectionError(
                f"Could not open {name}: the file may have been moved, deleted or not be readable."
            ) from None


class _ItemsReader:
    def __init__(self, items: dict[str, bytes]) -> None:
        self.items = items

    def read(self, name: str) -> bytes:
        return self.items[name]


@dataclass(frozen=True, eq=False)
class Collection:
    """Image files read on demand.

    ``names`` are the files in reading order (paths inside the zip or folder, with ``/``); ``refused`` are
    files left out before reading, each with its one-sentence reason; ``key`` identifies the contents for
    caches; ``label`` says in words what it is ("the zip file xrays.zip"); ``root`` is the folder of a folder
    collection (names are relative to it).
    """

    names: tuple[str, ...]
    key: str
    label: str
    refused: tuple[tuple[str, str], ...] = ()
    root: str | None = None
    _reader: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def read(self, name: str) -> bytes:
        """The bytes of file ``name``; CollectionError (one sentence) when it cannot be read."""
        return bytes(self._reader.read(name))

    def empty_message(self) -> str:
        return (
            f"There are no image files in {self.label}: add PNG, JPEG, WebP, BMP, GIF, TIFF or DICOM files "
            "(folders inside are fine) and try again."
        )


def zip_collection(data: bytes, filename: str = "the zip file", *, max_files: int = MAX_FILES,
                   max_total_bytes: int = MAX_TOTAL_BYTES) -> Collection:
    """The images inside a zip file held in memory (nothing is unpacked to disk)."""
    label = f"the zip file {filename}" if filename != "the zip file" else filename
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise CollectionError(
            f"Could not open {filename} as a zip file: it is damaged or not a zip; compress the folder of "
            "images again (right-click, “Compress” or “Send to → Compressed folder”) and upload that."
        ) from None
    files = [info for info in infos if not info.is_dir()]
    if len(files) > max_files:
        raise CollectionError(
            f"{filename} holds {len(files):,} files, more than the {max_files:,} featviz reads from an upload: "
            "split it into smaller zip files, or run featviz on your own computer with a folder."
        )
    total = sum(info.file_size for info in files)
    if total > max_total_bytes:
        raise CollectionError(
            f"{filename} unpacks to {total / 1024**3:.1f} GB, more than the {max_total_bytes / 1024**3:.0f} GB "
            "featviz reads from an upload (it may be a “zip bomb”): upload a smaller zip file."
        )
    members: dict[str, zipfile.ZipInfo] = {}
    refused: list[tuple[str, str]] = []
    for info in sorted(files, key=lambda i: i.filename):
        name = info.filename
        if _hidden(name.split("/")):
            continue
        if name in members:
            refused.append((name, f"Skipped {name}: the zip file holds two files of that name; the first was read."))
        elif info.flag_bits & 0x1:
            refused.append((name, f"Skipped {name}: it is password-protected; zip the images without a password."))
        elif info.file_size > MAX_FILE_BYTES:
            refused.append((name, f"Skipped {name}: it unpacks to more than {MAX_FILE_BYTES >> 20} MB."))
        else:
            members[name] = info
    key = "zip:" + hashlib.sha256(data).hexdigest()
    return Collection(names=tuple(members), key=key, label=label, refused=tuple(refused),
                      _reader=_ZipReader(data, members))


def inside(path: Path, root: Path) -> bool:
    """True when the resolved ``path`` is ``root`` or below it."""
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def resolve_subfolder(root: str | os.PathLike[str], relative: str) -> Path:
    """``root / relative``, resolved, refusing anything outside ``root`` (``..``, absolute paths, links)."""
    base = Path(root).expanduser().resolve()
    text = (relative or "").strip()
    target = (base / text).resolve() if text else base
    if not inside(target, base):
        raise CollectionError(
            f"“{text}” is outside the folder featviz was started with; type a folder inside {base.name}."
        )
    if not target.is_dir():
        raise CollectionError(f"There is no folder “{text or base.name}” inside {base.name}; check the spelling.")
    return target


def folder_collection(folder: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None,
                      max_files: int | None = None) -> Collection:
    """The image files below ``folder`` (nested folders included, hidden ones left out).

    With ``root`` (the folder the app was started with), files that are links to somewhere outside it are
    refused and never read; without it (the command line) file links are followed. Links to folders are
    never followed (they could loop), and are listed as refused.
    """
    base = Path(folder).expanduser().resolve()
    confine = Path(root).expanduser().resolve() if root is not None else None
    if not base.is_dir():
        raise CollectionError(f"There is no folder {folder}; check the path.")
    if confine is not None and not inside(base, confine):
        raise CollectionError(f"{base.name} is outside the folder featviz was started with.")
    names: list[str] = []
    refused: list[tuple[str, str]] = []
    digest = hashlib.sha256(str(base).encode())
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        kept_dirs = []
        for d in sorted(dirnames):
            if d.startswith(".") or d == "__MACOSX":
                continue
            if (here / d).is_symlink():
                rel = (here / d).relative_to(base).as_posix()
                refused.append((rel + "/", f"Skipped {rel}/: it is a link to another folder, which featviz "
                                           "does not follow."))
                continue
            kept_dirs.append(d)
        dirnames[:] = kept_dirs
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            path = here / filename
            rel = path.relative_to(base).as_posix()
            if confine is not None and path.is_symlink() and not inside(path.resolve(), confine):
                refused.append((rel, f"Skipped {rel}: it is a link to a place outside the folder."))
                continue
            try:
                stat = path.stat()
            except OSError:
                refused.append((rel, f"Could not open {rel}: the file is not readable."))
                continue
            names.append(rel)
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            if max_files is not None and len(names) > max_files:
                raise CollectionError(
                    f"{base.name} holds more than {max_files:,} files: choose a smaller folder inside it, or "
                    "use the command line (python -m featviz_core.exemplars) for large collections."
                )
    names.sort()
    return Collection(names=tuple(names), key="folder:" + digest.hexdigest(), label=f"the folder {base.name}",
                      refused=tuple(sorted(refused)), root=str(base), _reader=_FolderReader(base, confine))


def folder_reader(folder: str | os.PathLike[str]) -> Collection:
    """A Collection that only reads files below ``folder`` by name, without listing it (for workers that are
    handed the names)."""
    base = Path(folder).expanduser().resolve()
    return Collection(names=(), key="", label=f"the folder {base.name}", root=str(base),
                      _reader=_FolderReader(base, None))


def items_collection(items: Iterable[tuple[str, bytes]], label: str = "the images given") -> Collection:
    """(name, bytes) pairs, kept as given (a repeated name gets " (2)", " (3)"... appended)."""
    kept: dict[str, bytes] = {}
    digest = hashlib.sha256()
    for name, data in items:
        unique, n = str(name), 1
        while unique in kept:
            n += 1
            unique = f"{name} ({n})"
        kept[unique] = data
        digest.update(unique.encode() + b"\0" + hashlib.sha256(data).digest())
    return Collection(names=tuple(kept), key="items:" + digest.hexdigest(), label=label,
                      _reader=_ItemsReader(kept))


def open_collection(images: Any) -> Collection:
    """A Collection from a Collection, a folder path, a ``.zip`` file path, or (name, bytes) pairs."""
    if isinstance(images, Collection):
        return images
    if isinstance(images, (str, os.PathLike)):
        path = Path(images).expanduser()
        if path.is_file() and path.suffix.lower() == ".zip":
            return zip_collection(path.read_bytes(), path.name)
        return folder_collection(path)
    if isinstance(images, (bytes, bytearray)):
        return zip_collection(bytes(images))
    return items_collection(images)
