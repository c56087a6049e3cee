"""A zip of DICOM slices -> one series as a :class:`~featviz_core.images.volume.Volume`: the zip read in memory,
member by member, within the limits of :mod:`.volume`; its series listed for a page to offer; slices ordered and
assembled by :mod:`.dicom_frames`."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..errors import ImageLoadError, SeriesChoiceError
from . import volume as vol
from .dicom_frames import (
    NO_EXTENSION_OR_DICOM,
    DicomSlice,
    assemble,
    decode_slice,
    load_dicom_file,
    read_header,
    refused,
)
from .volume import SeriesInfo, Volume

__all__ = ["list_zip_series", "load_dicom_zip"]


def _zip_damaged(name: str) -> ImageLoadError:
    return refused(name, "the zip file is damaged", "zip the folder again")


def list_zip_series(data: bytes, name: str) -> list[SeriesInfo]:
    """The series of a DICOM zip, largest first."""
    archive, members = _open_zip(data, name)
    slices, _ = _scan(archive, members, name)
    return [info for info, _ in _series(slices)]


def load_dicom_zip(data: bytes, name: str, series: str | None) -> Volume:
    """Load one series (the only one, or the one named by ``series``) from a zip of DICOM files."""
    archive, members = _open_zip(data, name)
    slices, ignored = _scan(archive, members, name)
    if not slices:
        others = f"{ignored} other file{'s' if ignored != 1 else ''}"
        raise refused(
            name, f"the zip holds no DICOM images ({others})", "zip the folder of DICOM files itself"
        )
    info, chosen = _choose(_series(slices), series, name)
    notes = [f"{ignored} other file{'s' if ignored != 1 else ''} ignored" if ignored else None]
    if len(chosen) == 1 and chosen[0].frames > 1:
        return load_dicom_file(_read_member(archive, archive.getinfo(chosen[0].member), name), name, notes)

    def read(piece: DicomSlice) -> np.ndarray:
        return decode_slice(_read_member(archive, archive.getinfo(piece.member), name), piece, name, None)

    return assemble(chosen, read, name, info.description, notes)


def _open_zip(data: bytes, name: str) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, NotImplementedError):
        raise _zip_damaged(name) from None
    if (
        len(members) > vol.MAX_ZIP_MEMBERS
        or sum(info.file_size for info in members) > vol.MAX_UNCOMPRESSED_BYTES
    ):
        raise ImageLoadError(vol.too_large_message(name))
    if len({info.filename for info in members}) < len(members):  # slices are found again by their names
        raise refused(name, "the zip holds two files with the same name", "zip the folder again")
    return archive, members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    """One member's bytes, in memory; never more than its declared size (which the totals bound)."""
    if info.flag_bits & 0x1:
        raise refused(name, "the zip is protected by a password", "zip the files again without a password")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise refused(
            name, "the zip uses a compression method featviz does not read", "zip it with the usual method"
        )
    try:
        with archive.open(info) as member:
            return member.read(info.file_size)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError):
        raise _zip_damaged(name) from None


def _scan(
    archive: zipfile.ZipFile, members: Sequence[zipfile.ZipInfo], name: str
) -> tuple[list[DicomSlice], int]:
    """Read every member's header; return the image slices and how many members were not DICOM images."""
    slices: list[DicomSlice] = []
    ignored = 0
    for info in members:
        blob = _read_member(archive, info, name)
        base = info.filename.rsplit("/", 1)[-1]
        extension = base.rpartition(".")[2].lower() if "." in base else ""
        header = read_header(blob, name, force=extension in NO_EXTENSION_OR_DICOM)
        if header is None:
            ignored += 1
        else:
            slices.append(replace(header, member=info.filename))
    return slices, ignored


def _series(slices: Sequence[DicomSlice]) -> list[tuple[SeriesInfo, list[DicomSlice]]]:
    groups: dict[str, list[DicomSlice]] = {}
    for piece in slices:
        groups.setdefault(piece.series_uid, []).append(piece)
    found = [
        (SeriesInfo(uid, group[0].description, group[0].modality, sum(p.frames for p in group)), group)
        for uid, group in groups.items()
    ]
    return sorted(found, key=lambda item: (-item[0].slices, item[0].description))


def _choose(
    found: list[tuple[SeriesInfo, list[DicomSlice]]], series: str | None, name: str
) -> tuple[SeriesInfo, list[DicomSlice]]:
    infos = [info for info, _ in found]
    listing = "; ".join(f"'{info.description or info.uid}' ({info.label})" for info in infos[:8])
    if series is None:
        if len(found) == 1:
            return found[0]
        raise SeriesChoiceError(
            f"{name} holds {len(found)} series: {listing}. Choose one of them to open.", infos
        )
    wanted = series.strip()
    by_uid = [item for item in found if item[0].uid == wanted]
    by_text = [item for item in found if item[0].description.strip().lower() == wanted.lower()]
    if by_uid or len(by_text) == 1:
        return (by_uid or by_text)[0]
    raise SeriesChoiceError(f"{name} has no single series called '{wanted}': choose one of {listing}.", infos)
