"""Blobs written piece by piece (recordings): hidden until committed, durable, removable."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from woundcare.storage import BlobExists, BlobNotFound, BlobStore, InvalidBlobKey
from woundcare.storage.blobs import TEMP_PREFIX


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_pieces_are_hidden_until_commit_then_read_back(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    key = secrets.token_urlsafe(24)
    writer = store.writer(key)
    writer.write(b"abc")
    writer.write(b"defg")
    assert writer.size == 7
    assert list(store.keys()) == [] and not store.exists(key)
    [temp] = files_under(tmp_path / "blobs")
    assert temp.name == TEMP_PREFIX + key and oct(temp.stat().st_mode & 0o777) == "0o600"
    writer.commit()
    assert list(store.keys()) == [key]
    assert [p.name for p in files_under(tmp_path / "blobs")] == [key]
    with store.reader(key) as file:
        assert file.read() == b"abcdefg"


def test_commit_fsyncs_the_file_before_publishing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    events: list[str] = []
    real_fsync, real_link = os.fsync, os.link
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "link", lambda a, b: (events.append("link"), real_link(a, b))[1])
    writer = store.writer(secrets.token_urlsafe(24))
    writer.write(b"x")
    writer.commit()
    assert events == ["fsync", "link", "fsync"]  # the file, the name, the directory


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    writer = store.writer(secrets.token_urlsafe(24))
    writer.write(b"partial")
    writer.abort()
    assert files_under(tmp_path / "blobs") == []


def test_taken_keys_and_bad_keys_are_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    key = secrets.token_urlsafe(24)
    writer = store.writer(key)
    with pytest.raises(BlobExists):
        store.writer(key)  # one writer per key at a time
    with pytest.raises(BlobExists):
        store.put(key, b"other")
    writer.write(b"first")
    writer.commit()
    late = store.writer(key)  # the name is published now: a second commit must not overwrite it
    late.write(b"second")
    with pytest.raises(BlobExists):
        late.commit()
    assert store.get(key) == b"first"
    assert [p.name for p in files_under(tmp_path / "blobs")] == [key]
    with pytest.raises(InvalidBlobKey):
        store.writer("../../etc/passwd")
    with pytest.raises(BlobNotFound):
        store.reader(secrets.token_urlsafe(24))


def test_delete_removes_an_unfinished_write(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    key = secrets.token_urlsafe(24)
    store.writer(key).write(b"cut off by a crash")
    assert store.delete(key) is False  # never published, but its temporary file is gone
    assert files_under(tmp_path / "blobs") == []


def test_adopt_publishes_what_a_crash_left_and_written_ago_dates_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    key = secrets.token_urlsafe(24)
    assert store.adopt(key) is False and store.written_ago(key) is None
    writer = store.writer(key)
    writer.write(b"sealed chunks before the kill")
    writer._file.close()  # the killed process's file: what it wrote is in the page cache
    [temp] = [p for p in (tmp_path / "blobs").rglob(TEMP_PREFIX + "*")]
    os.utime(temp, (temp.stat().st_atime, temp.stat().st_mtime - 700))
    ago = store.written_ago(key)
    assert ago is not None and 699 < ago < 760
    assert store.adopt(key) is True
    assert store.get(key) == b"sealed chunks before the kill"
    assert [p.name for p in files_under(tmp_path / "blobs")] == [key]
    assert store.adopt(key) is True  # published already: nothing more to do
