"""How ``Snapshots.store`` ends its write, on SQLite and on PostgreSQL: a started write ends
with its row and its blob even if the caller is cancelled meanwhile, and a row that fails takes
its blob and intent with it."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from tests.api.test_snapshots import wound_jpeg
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import Consultation, Snapshot
from woundcare.storage.blobs import BlobStore

WAIT_SECONDS = 30.0
"""Bound on waiting for a write that runs on after its caller was cancelled."""


@pytest.fixture
async def server(start_server: Callable[..., Awaitable[RunningServer]], migrated_db_url: str) -> RunningServer:
    return await start_server(database_url=migrated_db_url)


async def consultation_of(server: RunningServer) -> Consultation:
    consultation_id = await server.new_consultation()
    async with server.app[SERVICES].database.sessions() as session:
        return await session.get_one(Consultation, consultation_id)


def files_under(root: Path) -> list[str]:
    return sorted(str(Path(d, n).relative_to(root)) for d, _, names in os.walk(root) for n in names)


async def test_a_write_cancelled_mid_way_still_ends_with_its_row_and_blob(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    consultation = await consultation_of(server)
    snapshots = server.app[SERVICES].snapshots
    writing, release = threading.Event(), threading.Event()
    put = BlobStore.put

    def held_put(self: BlobStore, key: str, data: Any) -> None:
        writing.set()
        release.wait(WAIT_SECONDS)
        put(self, key, data)

    monkeypatch.setattr(BlobStore, "put", held_put)
    store = asyncio.create_task(
        snapshots.store(consultation.id, consultation.region_id, consultation.patient_id, wound_jpeg(320, 240), "u1")
    )
    assert await asyncio.to_thread(writing.wait, WAIT_SECONDS)
    store.cancel()
    with pytest.raises(asyncio.CancelledError):
        await store
    release.set()

    async def finished() -> None:
        while not (await snapshots.of_consultation(consultation.id)) or files_under(server.settings.intent_dir):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(finished(), WAIT_SECONDS)
    [view] = await snapshots.of_consultation(consultation.id)
    row = await snapshots.get(view.id)
    assert row is not None
    assert (await snapshots.image(row))[:3] == b"\xff\xd8\xff"
    # Exactly the row's blob: no temporary file, no other blob.
    assert [Path(path).name for path in files_under(server.settings.blob_dir)] == [row.blob_key]


async def test_a_row_that_fails_removes_its_blob_and_intent(server: RunningServer) -> None:
    consultation = await consultation_of(server)
    with pytest.raises(IntegrityError):
        # No such consultation: the row's foreign key fails after the blob was written.
        await server.app[SERVICES].snapshots.store(
            "no-such-consultation", consultation.region_id, consultation.patient_id, wound_jpeg(320, 240), "u1"
        )
    assert files_under(server.settings.blob_dir) == []
    assert files_under(server.settings.intent_dir) == []


async def test_a_blob_write_waiting_on_the_disk_holds_no_image_thread(
    start_server: Callable[..., Awaitable[RunningServer]], migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(database_url=migrated_db_url, image_workers=1)
    consultation = await consultation_of(server)
    snapshots = server.app[SERVICES].snapshots
    first_writing, second_writing, release = threading.Event(), threading.Event(), threading.Event()
    put = BlobStore.put

    def held_put(self: BlobStore, key: str, data: Any) -> None:
        # The first write stays on the disk until the second upload, checked in the one image
        # thread meanwhile, is being written too.
        (second_writing if first_writing.is_set() else first_writing).set()
        release.wait(WAIT_SECONDS)
        put(self, key, data)

    monkeypatch.setattr(BlobStore, "put", held_put)

    def upload() -> Awaitable[Any]:
        return snapshots.store(consultation.id, consultation.region_id, consultation.patient_id, wound_jpeg(320, 240), "u1")

    first = asyncio.create_task(upload())
    assert await asyncio.to_thread(first_writing.wait, WAIT_SECONDS)
    second = asyncio.create_task(upload())
    assert await asyncio.to_thread(second_writing.wait, WAIT_SECONDS)
    release.set()
    await asyncio.gather(first, second)
    assert len(await snapshots.of_consultation(consultation.id)) == 2


async def test_the_rows_commit_only_once_their_blob_is_durable(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row goes in, and commits, after the blob's last fsync."""
    consultation = await consultation_of(server)
    database = server.app[SERVICES].database
    order: list[str] = []

    def executing(connection: Any, cursor: Any, statement: str, *rest: Any) -> None:
        # On PostgreSQL inside the statement that also writes its event (``WITH stored AS (INSERT``).
        if f"INSERT INTO {Snapshot.__tablename__} " in statement:
            order.append("insert")

    for engine in database.engines:
        event.listen(engine, "before_cursor_execute", executing)
        event.listen(engine, "commit", lambda connection: order.append("commit"))
    put = BlobStore.put

    def recorded_put(self: BlobStore, key: str, data: Any) -> None:
        put(self, key, data)
        order.append("blob durable")

    monkeypatch.setattr(BlobStore, "put", recorded_put)
    await server.app[SERVICES].snapshots.store(
        consultation.id, consultation.region_id, consultation.patient_id, wound_jpeg(320, 240), "u1"
    )
    start = order.index("blob durable")
    assert order[start : start + 3] == ["blob durable", "insert", "commit"], order
