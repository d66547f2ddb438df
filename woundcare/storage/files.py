"""Files written atomically and durably: the one way woundcare writes a file.

A write goes to a temporary name in the same directory, is fsynced, then hard-linked to its
final name, and the directory is fsynced. ``os.link`` fails if the final name exists, so of
two writers of one name exactly one wins and the other gets :class:`FileExistsError` (a
rename after an existence check would let the second overwrite the first). After a crash the
final name holds either nothing or the whole file, never part of it; at most a temporary file
is left, which its owner sweeps.

The directory fsync is what makes the new name itself survive a power cut: without it, the
file's bytes are on disk but may belong to no name (POSIX says nothing of the entry otherwise).

Why the file is fsynced *before* it is linked, at the price of two flushes (the file's, then
the directory's) rather than one: only then does every crash find the final name pointing at
a file whose size and blocks are on disk. A cheaper order (write, push the data out with
``sync_file_range``, link, then one fsync that also carries the new entry) is safe on a
journalling ext4, where the link cannot reach the disk in a commit before the allocation made
ahead of it; but ext4 without a journal (the machine the benches ran on: no ``jbd2``, its
``journal_task`` is ``<none>``) writes an inode and a directory block back in any order, so
the new name could outlive a crash pointing at the file's inode as first created, empty.

A file that is *meant* to be rewritten (the camera's telestration overlay, read by the
device's display while the camera writes the next one) is :func:`replace_with`'s: the same
temporary file and fsyncs, then ``os.replace`` over the old one, so a reader opens the old
file or the new, never a half-written one.

Needs a local POSIX filesystem (hard links, directory fsync).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .private import FILE_MODE

Bytes = bytes | bytearray | memoryview

WRITE_SLICE = 256 * 1024
"""What :func:`create_once` hands the kernel per ``write`` call. Copying into the page cache
is kernel work that a thread woken meanwhile does not interrupt: a 5 MB photo's blob written
in one call kept a CPU for up to 12 ms while the event loop's thread waited for it (issue
20, ``perf sched``); between two calls of about half a millisecond the waiting thread runs."""


def create_once(
    path: Path, data: Bytes, *, temp: Path | None = None, mode: int = FILE_MODE, cached: bool = True
) -> None:
    """Write ``data`` to ``path``, which must not exist yet; durable when this returns.

    Raises :class:`FileExistsError` if ``path`` exists, or if ``temp`` does (another writer
    holds it). ``temp`` defaults to a random hidden name beside ``path``; a caller that sweeps
    leftovers by name (the blob store) passes its own.

    ``cached=False`` drops the file's pages from the page cache once they are on disk
    (``POSIX_FADV_DONTNEED`` after the fsync, when they are clean): for megabytes written now
    and read, if ever, later. Kept, each photo's blob took 5.6 MB of pages the cache had not
    held before, and on the benches' virtual machine a fresh page is slow to fill: the writer
    threads spent 14-15 ms of CPU per photo at concurrency 4, and 3.3-3.6 ms with the pages
    dropped, the next write reusing them (issue 20). Anywhere, photos kept at 100 MB/s would
    push the database's pages out of the cache.
    """
    _write(path, lambda file: _write_sliced(file, data), temp or _temp_name(path), mode, os.link, cached)


def replace_with(path: Path, write: Callable[[BinaryIO], object], *, mode: int = FILE_MODE) -> None:
    """Replace ``path`` (or create it) with what ``write`` writes into the open file; durable
    when this returns. ``write`` gets a real file, not a buffer, so an encoder such as
    Pillow's can write to it without holding the GIL."""
    _write(path, write, _temp_name(path), mode, os.replace)


def _write(
    path: Path,
    write: Callable[[BinaryIO], object],
    temp: Path,
    mode: int,
    move: Callable[[Path, Path], None],
    cached: bool = True,
) -> None:
    file = open_exclusive(temp, mode)
    try:
        write(file)
    except BaseException:
        file.close()
        temp.unlink(missing_ok=True)
        raise
    _settle(file, temp, path, move, cached)


def _write_sliced(file: BinaryIO, data: Bytes) -> None:
    view = memoryview(data).cast("B")
    for start in range(0, len(view), WRITE_SLICE):
        file.write(view[start : start + WRITE_SLICE])


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


def open_exclusive(temp: Path, mode: int = FILE_MODE) -> BinaryIO:
    """A new file at ``temp``, open for writing; :class:`FileExistsError` if the name is taken,
    so a temporary name is one writer's alone. Finish it with :func:`publish`."""
    return open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), "wb")


def publish(file: BinaryIO, temp: Path, final: Path) -> None:
    """fsync and close ``file`` (written at ``temp``), link it to ``final``, remove ``temp``,
    fsync the directory. :class:`FileExistsError` if ``final`` exists; ``temp`` is removed
    whatever happens."""
    _settle(file, temp, final, os.link)


def _settle(
    file: BinaryIO, temp: Path, final: Path, move: Callable[[Path, Path], None], cached: bool = True
) -> None:
    """fsync and close ``file`` (its pages dropped from the page cache unless ``cached``),
    ``move`` ``temp`` to ``final`` (a link: only if new; a replace: over the old), remove
    ``temp`` whatever happens, fsync the directory."""
    try:
        with file:
            file.flush()
            os.fsync(file.fileno())
            if not cached:
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        move(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(final.parent)


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a new, renamed or removed name) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
