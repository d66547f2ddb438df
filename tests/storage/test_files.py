"""create_once: one winner among concurrent writers, durable file and directory entry;
replace_with: a reader sees the old file or the new, never part of one."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from woundcare.storage.files import WRITE_SLICE, create_once, replace_with


WRITERS: list[Callable[[Path, bytes], None]] = [
    lambda path, data: create_once(path, data),
    lambda path, data: replace_with(path, lambda file: file.write(data)),
]


@pytest.mark.parametrize("write", WRITERS, ids=["create_once", "replace_with"])
def test_creates_the_file_private_and_leaves_no_temporary(tmp_path: Path, write: Callable[[Path, bytes], None]) -> None:
    path = tmp_path / "secret.key"
    write(path, b"value")
    assert path.read_bytes() == b"value"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["secret.key"]


def test_writes_a_large_view_whole_in_slices(tmp_path: Path) -> None:
    """A blob as the store writes it: a view of the start of a larger, reused buffer, some
    slices long and not a whole number of them."""
    data = os.urandom(2 * WRITE_SLICE + 12345)
    buffer = bytearray(data) + b"rest of the buffer"
    path = tmp_path / "blob"
    create_once(path, memoryview(buffer)[: len(data)])
    assert path.read_bytes() == data


def test_never_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        create_once(path, b"second")
    assert path.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["secret.key"]


@pytest.mark.parametrize("shared_temp", [False, True], ids=["own-temp", "shared-temp"])
def test_of_concurrent_writers_exactly_one_wins(tmp_path: Path, shared_temp: bool) -> None:
    path = tmp_path / "blob"
    writers = 8
    start = threading.Barrier(writers)
    won: list[bytes] = []
    lost: list[BaseException] = []

    def write(data: bytes) -> None:
        start.wait()
        try:
            create_once(path, data, temp=tmp_path / ".tmp-blob" if shared_temp else None)
            won.append(data)
        except FileExistsError as exc:
            lost.append(exc)

    threads = [threading.Thread(target=write, args=(bytes([i]) * 65536,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert len(lost) == writers - 1
    assert path.read_bytes() == won[0]
    # Every loser removed only its own temporary file, never the winner's mid-write.
    assert os.listdir(tmp_path) == ["blob"]


def test_syncs_the_file_before_linking_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int, bool]] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        events.append(("fsync", info.st_ino, stat.S_ISDIR(info.st_mode)))
        real_fsync(fd)

    def link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_link(src, dst)
        events.append(("link", os.stat(dst).st_ino, False))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    path = tmp_path / "snapshot.jpg"
    create_once(path, b"jpeg")
    inode, directory = path.stat().st_ino, tmp_path.stat().st_ino
    assert events == [("fsync", inode, False), ("link", inode, False), ("fsync", directory, True)]


def test_a_failed_write_removes_its_temporary(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        create_once(tmp_path / "x", "not bytes")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_replace_with_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "overlay.png"
    path.write_bytes(b"old")
    replace_with(path, lambda file: file.write(b"new"))
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["overlay.png"]


def test_replace_with_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "overlay.png"
    path.write_bytes(b"old")

    def fail(file: object) -> None:
        raise ValueError("encoder broke")

    with pytest.raises(ValueError):
        replace_with(path, fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["overlay.png"]


def test_replace_with_a_reader_never_sees_part_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "overlay.png"
    versions = [bytes([i]) * 262144 for i in range(40)]
    replace_with(path, lambda file: file.write(versions[0]))
    done = threading.Event()
    seen: set[bytes] = set()

    def read() -> None:
        while not done.is_set():
            seen.add(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in versions[1:]:
            replace_with(path, lambda file: file.write(version))
    finally:
        done.set()
        reader.join()
    assert seen and seen <= set(versions)
    assert path.read_bytes() == versions[-1]
