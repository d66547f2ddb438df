"""Blobs on local disk: one file per opaque key, published atomically and durably.

Layout: ``root/ab/<key>``, where ``ab`` is the first two hex digits of the key's SHA-256.
Hashing spreads time-ordered ids (ULID, UUIDv7), whose prefixes repeat, evenly over 256
shard directories, all made (and made durable) when the store is opened, so a put never pays
for creating a directory. 256 shards hold millions of blobs on any filesystem with hashed
directory indexes (ext4, XFS).

A put is a :func:`~woundcare.storage.files.create_once` through the temporary name
``.tmp-<key>`` in the shard directory, so two writers of one key cannot overwrite each other.
A crash leaves at most a ``.tmp-`` file: ``keys()`` never lists it and ``sweep()`` removes
it. The root needs a local POSIX filesystem (hard links, directory fsync); on a
case-insensitive one, keys differing only in case would collide, and the second
put would fail with ``BlobExists`` rather than overwrite.

Bytes are stored as given. Health data must be sealed (``woundcare.crypto``) before ``put``.

A blob too long to hold in memory (a recording) is written piece by piece through
:meth:`BlobStore.writer` into the same temporary file, published the same way by
:meth:`BlobWriter.commit`, and read back as a file from :meth:`BlobStore.reader`.

The API is synchronous and blocks on disk; from async code call it through
``asyncio.to_thread``.

Exception hierarchy::

    BlobError
    ├── InvalidBlobKey   the key is not 16-64 of [A-Za-z0-9_-] (also a ValueError)
    ├── BlobExists       put of a key that is already stored
    └── BlobNotFound     get of a key that is not stored
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import WoundcareError
from .files import create_once, fsync_dir, open_exclusive, publish
from .private import DIR_MODE as _DIR_MODE

_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
TEMP_PREFIX = ".tmp-"


class BlobError(WoundcareError):
    """Base class of every error raised by ``woundcare.storage.blobs``."""

    code = "blob_error"


class InvalidBlobKey(BlobError, ValueError):
    """Raised before any file is touched; the message does not quote the key."""

    code = "blob_invalid_key"

    def __init__(self) -> None:
        super().__init__("blob key must be 16-64 characters of A-Z a-z 0-9 _ -")


class BlobExists(BlobError):
    code = "blob_exists"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"blob already stored (key={key})")


class BlobNotFound(BlobError):
    code = "blob_not_found"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"blob not stored (key={key})")


@dataclass(frozen=True, slots=True)
class SweepResult:
    removed_blobs: tuple[str, ...]
    """Keys of the blobs removed, for the audit log."""
    removed_temp: int
    """Leftover temporary files removed."""


class BlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._make_shards()

    @property
    def root(self) -> Path:
        """Where the store lives: another process opens it with ``BlobStore(root)``."""
        return self._root

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under a new key; raises ``BlobExists`` if the key is taken.

        Any bytes-like ``data`` is written as it is, so a view of a reused buffer costs no copy.
        """
        final = self._path(key)
        try:
            # Named for the key, so ``delete`` also removes what a put cut off by a crash left.
            # Not kept in the page cache: a blob is read, if ever, later (create_once says why).
            create_once(final, data, temp=_temp_of(final), cached=False)
        except FileExistsError:
            raise BlobExists(key) from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> bool:
        """Remove a blob, and the temporary file a put of it cut off by a crash may have left;
        False if the blob was not stored."""
        path = self._path(key)
        removed = _unlink(str(path))
        if _unlink(str(_temp_of(path))) or removed:
            # Erasing a health record must survive a crash too.
            fsync_dir(path.parent)
        return removed

    def writer(self, key: str) -> BlobWriter:
        """A new blob written piece by piece; raises ``BlobExists`` if the key is taken."""
        final = self._path(key)
        return BlobWriter(key, final, _temp_of(final))

    def reader(self, key: str) -> BinaryIO:
        """The stored blob as a file open for reading; the caller closes it."""
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def adopt(self, key: str) -> bool:
        """Publish what a :meth:`writer` of ``key`` cut off by a crash left in its temporary
        file (a recording's upload, whose sealed chunks are worth keeping), made durable
        first; True if the blob is stored now."""
        final = self._path(key)
        temp = _temp_of(final)
        try:
            file = open(temp, "rb+")
        except FileNotFoundError:
            return final.is_file()
        with suppress(FileExistsError):  # published before the crash: the blob is the same bytes
            publish(file, temp, final)
        return True

    def written_ago(self, key: str) -> float | None:
        """Seconds since the blob of ``key``, or a writer's temporary file of it, was last
        written; None if neither exists."""
        final = self._path(key)
        for path in (_temp_of(final), final):
            with suppress(FileNotFoundError):
                return max(time.time() - path.stat().st_mtime, 0.0)
        return None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self) -> Iterator[str]:
        """Every stored key, in no particular order; temporary files are never listed."""
        for entry in self._files():
            if self._is_blob(entry):
                yield entry.name

    def sweep(
        self, keep: Callable[[str], bool] | set[str], *, older_than: float = 3600.0
    ) -> SweepResult:
        """Remove temporary files, and blobs ``keep`` does not claim, older than ``older_than`` s.

        The age limit protects an upload whose database row is not committed yet: its blob
        is young, so it stays even though ``keep`` does not know it.
        """
        wanted = keep if callable(keep) else keep.__contains__
        cutoff = time.time() - older_than
        removed_blobs: list[str] = []
        removed_temp = 0
        for entry in self._files():
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            # No directory fsync: a removal undone by a crash is redone by the next sweep.
            if entry.name.startswith(TEMP_PREFIX):
                if _unlink(entry.path):
                    removed_temp += 1
            elif self._is_blob(entry) and not wanted(entry.name) and _unlink(entry.path):
                removed_blobs.append(entry.name)
        return SweepResult(removed_blobs=tuple(removed_blobs), removed_temp=removed_temp)

    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not _is_key(key):
            raise InvalidBlobKey()
        digest = hashlib.sha256(key.encode("ascii")).hexdigest()
        return self._root / digest[:2] / key

    def _is_blob(self, entry: os.DirEntry[str]) -> bool:
        """A final blob in its own shard; anything else in the tree is not ours to list."""
        return _is_key(entry.name) and self._path(entry.name) == Path(entry.path)

    def _make_shards(self) -> None:
        if (self._root / "ff").is_dir():
            return
        missing: list[Path] = []
        directory = self._root
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            new.mkdir(mode=_DIR_MODE, exist_ok=True)
            fsync_dir(new.parent)
        for shard in range(256):
            # exist_ok: another process may be opening the same store.
            (self._root / f"{shard:02x}").mkdir(mode=_DIR_MODE, exist_ok=True)
        fsync_dir(self._root)

    def _files(self) -> Iterator[os.DirEntry[str]]:
        """Regular files in the shard directories."""
        for shard in _subdirs(self._root):
            with os.scandir(shard.path) as entries:
                yield from (e for e in entries if e.is_file(follow_symlinks=False))


class BlobWriter:
    """A blob being written: bytes go to its temporary file, which no listing shows, until
    :meth:`commit` makes it durable and publishes it; :meth:`abort` removes it."""

    def __init__(self, key: str, final: Path, temp: Path) -> None:
        # Exclusive on the temporary name: one writer per key, and none beside a put of it.
        try:
            self._file = open_exclusive(temp)
        except FileExistsError:
            raise BlobExists(key) from None
        self.key = key
        self.size = 0
        self._final = final
        self._temp = temp

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> None:
        """fsync, then publish under the key with the same link discipline as ``put``."""
        try:
            publish(self._file, self._temp, self._final)
        except FileExistsError:
            raise BlobExists(self.key) from None

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


def _is_key(name: str) -> bool:
    return _KEY.fullmatch(name) is not None


def _subdirs(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return [e for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _temp_of(final: Path) -> Path:
    return final.with_name(TEMP_PREFIX + final.name)


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False  # removed concurrently
    return True
