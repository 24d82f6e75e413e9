"""Where MIDI comes from: a folder, a tar(.gz) archive read as a stream, or a lake prefix.

Every source yields its MIDI files one at a time, in a stable order, with their key
relative to the source root, so memory stays bounded whatever the source's size. A file
over the size cap is hashed in chunks and never held whole. Lakh-style ``detailed_notes``
parquet parts found in a folder or a lake prefix are yielded separately (passthrough).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from ..config import DEFAULT_AWS_CONN_ID
from ..lake import Lake, open_lake

MIDI_SUFFIXES = (".mid", ".midi", ".kar")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
NOTES_PART = re.compile(r"(^|/)detailed_notes/p=[^/]+/[^/]+\.parquet$")
_CHUNK = 1 << 20


def is_midi_key(key: str) -> bool:
    return key.lower().endswith(MIDI_SUFFIXES)


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: its key, its size, and how to open it (once)."""

    key: str
    size: int
    open: Callable[[], BinaryIO]

    def read_capped(self, max_bytes: int) -> tuple[str, bytes | None]:
        """(md5 hex, bytes), or (md5 hex, None) when the file is over ``max_bytes``."""
        with self.open() as fh:
            if self.size <= max_bytes:
                data = fh.read()
                return hashlib.md5(data).hexdigest(), data
            digest = hashlib.md5()
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
            return digest.hexdigest(), None


class Source:
    """MIDI files and detailed_notes parts under one root."""

    def midi_files(self) -> Iterator[SourceFile]:
        raise NotImplementedError

    def notes_parts(self) -> Iterator[SourceFile]:
        return iter(())


class FolderSource(Source):
    def __init__(self, root: Path) -> None:
        self.root = root

    def _walk(self, wanted: Callable[[str], bool]) -> Iterator[SourceFile]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in sorted(filenames):
                key = name if rel == "." else f"{rel}/{name}"
                if not wanted(key):
                    continue
                path = os.path.join(dirpath, name)
                info = os.stat(path)
                if stat.S_ISREG(info.st_mode):
                    yield SourceFile(key, info.st_size, partial(open, path, "rb"))

    def midi_files(self) -> Iterator[SourceFile]:
        return self._walk(is_midi_key)

    def notes_parts(self) -> Iterator[SourceFile]:
        return self._walk(lambda key: bool(NOTES_PART.search(key)))


class TarSource(Source):
    """A tar archive, compressed or not, read front to back as a stream: never unpacked."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def midi_files(self) -> Iterator[SourceFile]:
        with tarfile.open(self.path, mode="r|*") as archive:
            for member in archive:
                if member.isfile() and is_midi_key(member.name):
                    fh = archive.extractfile(member)
                    if fh is not None:
                        yield SourceFile(member.name.removeprefix("./"), member.size, lambda fh=fh: fh)


class LakeSource(Source):
    """A prefix read through the lake interface (``s3://bucket/prefix`` or a folder URI).

    The lake gives whole objects, so an object is fetched before the size cap applies.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def _objects(self, wanted: Callable[[str], bool]) -> Iterator[SourceFile]:
        import io

        for key in self.lake.list(""):
            if wanted(key):
                data = self.lake.get(key)
                yield SourceFile(key, len(data), lambda data=data: io.BytesIO(data))

    def midi_files(self) -> Iterator[SourceFile]:
        return self._objects(is_midi_key)

    def notes_parts(self) -> Iterator[SourceFile]:
        return self._objects(lambda key: bool(NOTES_PART.search(key)))


def open_source(source: str, aws_conn_id: str = DEFAULT_AWS_CONN_ID) -> Source:
    """A folder, a tar archive, or a lake URI (``s3://...``, ``file://...``)."""
    if "://" in source:
        return LakeSource(open_lake(source, aws_conn_id))
    path = Path(source)
    if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return TarSource(path)
    if path.is_dir():
        return FolderSource(path)
    raise FileNotFoundError(f"MIDI source not found (a folder, a .tar/.tar.gz archive or an s3:// prefix): {source}")
