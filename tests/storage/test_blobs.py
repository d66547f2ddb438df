from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import secrets
import stat
import time
from pathlib import Path

import pytest

from tests.services import missing
from woundcare.storage import (
    BlobExists,
    BlobNotFound,
    BlobStore,
    InvalidBlobKey,
    SweepResult,
)
from woundcare.storage.blobs import TEMP_PREFIX

HOUR = 3600.0


def new_key() -> str:
    return secrets.token_urlsafe(24)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def store(root: Path) -> BlobStore:
    return BlobStore(root)


def blob_path(root: Path, key: str) -> Path:
    [path] = [p for p in files_under(root) if p.name == key]
    return path


def test_put_get_delete(store: BlobStore) -> None:
    key = new_key()

    store.put(key, b"sealed wound photo")

    assert store.exists(key)
    assert store.get(key) == b"sealed wound photo"
    assert list(store.keys()) == [key]
    assert store.delete(key) is True
    assert store.delete(key) is False
    assert not store.exists(key)
    with pytest.raises(BlobNotFound) as caught:
        store.get(key)
    assert caught.value.code == "blob_not_found"


def test_layout_is_one_shard_level_private_to_the_service(store: BlobStore, root: Path) -> None:
    key = new_key()
    store.put(key, b"x")

    path = blob_path(root, key)

    assert path.parent.parent == root
    assert len(path.parent.name) == 2
    assert sorted(p.name for p in root.iterdir()) == [f"{i:02x}" for i in range(256)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_overwrite_is_refused(store: BlobStore, root: Path) -> None:
    key = new_key()
    store.put(key, b"first")

    with pytest.raises(BlobExists) as caught:
        store.put(key, b"second")

    assert caught.value.code == "blob_exists"
    assert store.get(key) == b"first"
    assert not [p for p in files_under(root) if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.parametrize(
    "key",
    [
        "../../../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "/etc/passwd/aaaaaaaaaaaaaa",
        "abcdefghijklmnop/../x",
        "abcdefghijklmnop\n",
        "abcdefghijklmnop\x00",
        ".tmp-abcdefghijklmnop",
        "short",
        "a" * 65,
        "",
        "abcdefghijklmnøp",
    ],
)
def test_keys_that_are_not_opaque_ids_are_refused(store: BlobStore, root: Path, key: str) -> None:
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.delete(key),
        lambda: store.exists(key),
    ):
        with pytest.raises(InvalidBlobKey) as caught:
            call()
        assert key not in str(caught.value) or not key

    assert files_under(root.parent) == []


def test_key_of_the_wrong_type_is_refused(store: BlobStore) -> None:
    with pytest.raises(InvalidBlobKey):
        store.get(b"abcdefghijklmnopq")  # type: ignore[arg-type]


def test_put_fsyncs_the_data_before_publishing_and_the_directory_after(
    store: BlobStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int]] = []
    real_fsync, real_link = os.fsync, os.link

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def recording_link(src: str, dst: str) -> None:
        events.append(("link", 0))
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "link", recording_link)
    key = new_key()

    store.put(key, b"payload")

    blob = blob_path(root, key)
    published = events.index(("link", 0))
    # The temporary name and the final one are hard links: one inode.
    assert ("fsync", blob.stat().st_ino) in events[:published]
    assert events[-1] == ("fsync", blob.parent.stat().st_ino)


def cached_pages(path: Path) -> int:
    """How many of the file's pages are in the page cache (``mincore`` over a mapping of it,
    which reads nothing in)."""
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    found = (ctypes.c_ubyte * pages)()
    libc = ctypes.CDLL(None, use_errno=True)
    with path.open("rb") as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)
        failed = libc.mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(size), found)
        del start  # the mapping closes only once nothing points into it
    if failed:
        raise OSError(ctypes.get_errno(), "mincore")
    return sum(byte & 1 for byte in found)


def test_a_put_leaves_the_blob_out_of_the_page_cache(store: BlobStore, root: Path, tmp_path: Path) -> None:
    # The same write by hand: cached once written, and this filesystem can drop its pages
    # (tmpfs cannot: its pages are the file).
    control = tmp_path / "control"
    with control.open("wb") as file:
        file.write(os.urandom(1024 * 1024))
        file.flush()
        os.fsync(file.fileno())
        assert cached_pages(control) > 0
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if cached_pages(control) > 0:
        missing("a filesystem that can drop a file's pages from memory (tmp_path's keeps them)")
    key = new_key()

    store.put(key, os.urandom(1024 * 1024))

    assert cached_pages(blob_path(root, key)) == 0
    assert len(store.get(key)) == 1024 * 1024


def test_opening_a_store_makes_its_shards_durable_and_puts_fsync_only_their_shard(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = BlobStore(root)
    assert root.parent.stat().st_ino in synced and root.stat().st_ino in synced
    synced.clear()
    key = new_key()

    store.put(key, b"payload")

    shard = blob_path(root, key).parent
    assert synced == [blob_path(root, key).stat().st_ino, shard.stat().st_ino]


def test_crash_before_publishing_leaves_no_blob(
    store: BlobStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before the blob is published")

    monkeypatch.setattr(os, "link", crash)
    with pytest.raises(OSError, match="simulated"):
        store.put(key, b"half-stored")
    monkeypatch.undo()

    assert not store.exists(key)
    assert list(store.keys()) == []
    assert not [p for p in files_under(root) if p.name.startswith(TEMP_PREFIX)]
    store.put(key, b"retried")
    assert store.get(key) == b"retried"


def test_temp_file_left_by_a_killed_process_is_ignored_then_swept(
    store: BlobStore, root: Path
) -> None:
    key = new_key()
    store.put(key, b"kept")
    leaf = blob_path(root, key).parent
    orphan = leaf / f"{TEMP_PREFIX}0123456789abcdef"
    orphan.write_bytes(b"written, never published")

    assert list(store.keys()) == [key]
    assert store.sweep({key}) == SweepResult(removed_blobs=(), removed_temp=0)
    assert orphan.exists()  # young: its put may still be running

    age(orphan, 2 * HOUR)
    assert store.sweep({key}) == SweepResult(removed_blobs=(), removed_temp=1)
    assert not orphan.exists()
    assert store.get(key) == b"kept"


def test_sweep_removes_only_old_blobs_nobody_claims(store: BlobStore, root: Path) -> None:
    known, young_orphan, old_orphan, old_known = (new_key() for _ in range(4))
    for key in (known, young_orphan, old_orphan, old_known):
        store.put(key, key.encode())
    for key in (old_orphan, old_known):
        age(blob_path(root, key), 2 * HOUR)

    result = store.sweep({known, old_known})

    assert result == SweepResult(removed_blobs=(old_orphan,), removed_temp=0)
    assert sorted(store.keys()) == sorted([known, young_orphan, old_known])


def test_sweep_asks_a_callable_only_about_old_blobs(store: BlobStore, root: Path) -> None:
    young, old = new_key(), new_key()
    store.put(young, b"y")
    store.put(old, b"o")
    age(blob_path(root, old), 2 * HOUR)
    asked: list[str] = []

    def keep(key: str) -> bool:
        asked.append(key)
        return False

    result = store.sweep(keep, older_than=HOUR)

    assert asked == [old]
    assert result.removed_blobs == (old,)
    assert list(store.keys()) == [young]


def test_sweep_leaves_files_it_does_not_own(store: BlobStore, root: Path) -> None:
    key = new_key()
    store.put(key, b"x")
    leaf = blob_path(root, key).parent
    stranger = leaf / "README"
    misplaced = root / "00" / "00" / new_key()
    misplaced.parent.mkdir(parents=True, exist_ok=True)
    for path in (stranger, misplaced):
        path.write_bytes(b"not a blob of this store")
        age(path, 2 * HOUR)

    assert store.sweep(set()) == SweepResult(removed_blobs=(), removed_temp=0)
    assert stranger.exists() and misplaced.exists()
    assert list(store.keys()) == [key]


def test_empty_store(store: BlobStore) -> None:
    assert list(store.keys()) == []
    assert store.sweep(set()) == SweepResult(removed_blobs=(), removed_temp=0)
    assert not store.exists(new_key())


def test_delete_also_removes_what_a_put_cut_off_by_a_crash_left(store: BlobStore, root: Path) -> None:
    key = new_key()
    store.put(key, b"sealed")
    final = blob_path(root, key)
    leftover = final.with_name(TEMP_PREFIX + key)
    os.link(final, leftover)  # a put killed between link and unlink leaves this

    assert store.delete(key) is True
    assert files_under(root) == []


def test_a_put_of_a_key_already_in_flight_is_refused(store: BlobStore, root: Path) -> None:
    key = new_key()
    shard = root / hashlib.sha256(key.encode()).hexdigest()[:2]
    (shard / (TEMP_PREFIX + key)).write_bytes(b"in flight")

    with pytest.raises(BlobExists):
        store.put(key, b"second")
    assert not store.exists(key)
