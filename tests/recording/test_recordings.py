"""Recordings stored and read back through the service: sealing, integrity, rotation,
shredding, retention, and recovery after a crash (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.recording.media import PIECE, decoded, stored_recording, webm_part
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.crypto import Binding, KeyShreddedError, RecordIntegrityError
from woundcare.crypto.stream import open_stream
from woundcare.db.models import AuditEvent, Consultation, Recording, RecordingStatus, Region, WebhookEvent
from woundcare.records.recordings import KEY_KIND, VIDEO_KIND
from woundcare.records.rekey import Reencryption
from woundcare.recording import uploads
from woundcare.recording.remux import piece


async def media_of(server: RunningServer, recording_id: str) -> bytes:
    recordings = server.app[SERVICES].recordings
    row = await recordings.get(recording_id)
    assert row is not None
    media = await recordings.media(row)
    data = b"".join([chunk async for chunk in media.chunks])
    assert len(data) == media.size
    return data


def blob_path(server: RunningServer, row: Recording) -> Path:
    [path] = [p for p in server.settings.recording_dir.rglob(row.blob_key)]
    return path


async def test_round_trip_sealed_on_disk(start_server, migrated_db_url: str) -> None:  # type: ignore[no-untyped-def]
    server = await start_server(database_url=migrated_db_url)
    consultation = await server.new_consultation("east")
    view = await stored_recording(server, consultation, frames=20, size=(160, 120))
    assert (view.status, view.frames, view.width, view.height) == (RecordingStatus.COMPLETE, 20, 160, 120)
    media = await media_of(server, view.id)
    assert media[:4] == bytes.fromhex("1a45dfa3")
    assert decoded(media) == [(160, 120)] * 20
    row = await server.app[SERVICES].recordings.get(view.id)
    assert row is not None
    stored = blob_path(server, row).read_bytes()
    assert len(stored) == row.size and bytes.fromhex("1a45dfa3") not in stored and b"webm" not in stored
    listed = await server.app[SERVICES].recordings.of_consultation(consultation)
    assert [r.id for r in listed] == [view.id]


async def test_tampering_and_other_regions_fail(server: RunningServer) -> None:
    consultation = await server.new_consultation("east")
    other_region = await server.region("west")
    view = await stored_recording(server, consultation, frames=30, size=(320, 240), noise=True)
    recordings = server.app[SERVICES].recordings
    row = await recordings.get(view.id)
    assert row is not None
    keyring = server.app[SERVICES].keyring
    # The stream key does not open for another region, nor for another recording.
    for binding in (Binding(other_region, KEY_KIND, row.id), Binding(row.region_id, KEY_KIND, "other")):
        with pytest.raises(RecordIntegrityError):
            await keyring.open(binding, row.key_sealed)
    # The video does not open as another region's, even with the right stream key.
    key = await keyring.open(Binding(row.region_id, KEY_KIND, row.id), row.key_sealed)
    path = blob_path(server, row)
    original = path.read_bytes()
    with pytest.raises(RecordIntegrityError), path.open("rb") as file:
        list(open_stream(key, Binding(other_region, VIDEO_KIND, row.id), file.read))

    def damaged(data: bytes) -> None:
        path.chmod(0o600)
        path.write_bytes(data)

    for change in (_flip_bit, _truncate, _swap_chunks):
        damaged(change(original))
        with pytest.raises(RecordIntegrityError):
            await media_of(server, view.id)
    damaged(original)
    assert decoded(await media_of(server, view.id))


def _frames(stream: bytes) -> list[bytes]:
    frames, at = [], 1
    while at < len(stream):
        size = int.from_bytes(stream[at : at + 4], "big")
        frames.append(stream[at : at + 4 + size])
        at += 4 + size
    return frames


def _flip_bit(stream: bytes) -> bytes:
    data = bytearray(stream)
    data[len(data) // 2] ^= 0x10
    return bytes(data)


def _truncate(stream: bytes) -> bytes:
    return stream[: len(stream) - len(_frames(stream)[-1])]


def _swap_chunks(stream: bytes) -> bytes:
    frames = _frames(stream)
    assert len(frames) >= 3, "the recording should span several chunks"
    return stream[:1] + frames[1] + frames[0] + b"".join(frames[2:])


async def test_rotation_reseals_the_key_and_shredding_makes_it_unreadable(server: RunningServer) -> None:
    consultation = await server.new_consultation("east")
    view = await stored_recording(server, consultation)
    app = server.app
    old_key = view.key_id
    region_id = view.region_id
    await app[SERVICES].keyring.rotate(region_id)
    rekey = Reencryption(app[SERVICES].database, app[SERVICES].keyring, app[SERVICES].snapshots)
    assert await rekey.pending(region_id) == 1
    assert await rekey.run(region_id) == 1 and await rekey.pending(region_id) == 0
    row = await app[SERVICES].recordings.get(view.id)
    assert row is not None and row.key_id != old_key and row.key_id == await app[SERVICES].keyring.ensure_region_key(region_id)
    assert decoded(await media_of(server, view.id))

    other = await stored_recording(server, await server.new_consultation("west"))
    await app[SERVICES].keyring.shred(region_id)
    with pytest.raises(KeyShreddedError):
        await media_of(server, view.id)
    assert decoded(await media_of(server, other.id))  # other regions are untouched


async def test_retention_purge_deletes_recordings_with_their_blobs(server: RunningServer) -> None:
    consultation = await server.new_consultation("east")
    view = await stored_recording(server, consultation)
    row = await server.app[SERVICES].recordings.get(view.id)
    assert row is not None
    path = blob_path(server, row)
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        await session.execute(update(Region).where(Region.id == view.region_id).values(retention_days=30))
        await session.execute(
            update(Consultation).where(Consultation.id == consultation).values(ended_at=datetime.now(UTC) - timedelta(days=31))
        )
    assert await server.app[SERVICES].retention.purge(view.region_id) == [consultation]
    assert await server.app[SERVICES].recordings.get(view.id) is None and not path.exists()


async def settled(server: RunningServer, recording_id: str) -> Recording:
    """The row once the server has settled the recording a crash cut off (in the background)."""
    async with asyncio.timeout(30):
        while True:
            row = await server.app[SERVICES].recordings.get(recording_id)
            assert row is not None
            if row.status is not RecordingStatus.RECORDING:
                return row
            await asyncio.sleep(0.1)


async def test_a_crash_mid_recording_with_nothing_playable_leaves_a_failed_row_and_no_file(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "crashed"
    server = await start_server(data_dir=data_dir, instance="one")
    consultation = await server.new_consultation("east")
    view = await server.app[SERVICES].consultations.get(consultation)
    assert view is not None
    capture = await server.app[SERVICES].recordings.begin(view, "u0")
    capture.sink.write(os.urandom(200_000))  # what a muxer wrote before the process died: no video
    capture.writer._file.flush()  # as the page cache would hold it
    leftovers = [p for p in data_dir.joinpath("recordings").rglob("*") if p.is_file()]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-")
    await server.stop()  # no finish: as if killed

    again = await start_server(data_dir=data_dir, instance="one")
    row = await settled(again, capture.recording.id)
    assert (row.status, row.end_reason) == (RecordingStatus.FAILED, "interrupted")
    assert [p for p in data_dir.joinpath("recordings").rglob("*") if p.is_file()] == []


async def cut_off_recording(server: RunningServer) -> tuple[str, int]:
    """A recording whose instance died after a part of noise was sealed (most of it reached
    the disk; the chunk being filled had not); its id and the frames sent."""
    consultation = await server.new_consultation("east")
    view = await server.app[SERVICES].consultations.get(consultation)
    assert view is not None
    capture = await server.app[SERVICES].recordings.begin(view, "u0")
    data = webm_part(60, size=(320, 240), noise=True)
    for at in range(0, len(data), PIECE):
        capture.sink.write(piece(0, data[at : at + PIECE]))
    capture.writer._file.close()  # the killed process's file: what it wrote is in the page cache
    return capture.recording.id, 60


async def test_another_instances_recording_is_salvaged_once_its_upload_lies_still(  # type: ignore[no-untyped-def]
    start_server, migrated_db_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "shared"
    gone = await start_server(data_dir=data_dir, database_url=migrated_db_url, instance="gone")
    recording_id, sent = await cut_off_recording(gone)
    await gone.stop()  # as if killed, and never started again

    # An instance by another name leaves it alone while the upload may still be written to...
    other = await start_server(data_dir=data_dir, database_url=migrated_db_url, instance="other")
    await asyncio.sleep(0.5)
    row = await other.app[SERVICES].recordings.get(recording_id)
    assert row is not None and (row.status, row.instance) == (RecordingStatus.RECORDING, "gone")
    await other.stop()
    # ...and salvages it once the upload has lain still longer than a live one can.
    [upload] = [p for p in data_dir.joinpath("recordings").rglob(".tmp-*")]
    stale = upload.stat().st_mtime - uploads.STALE_SECONDS - 1
    os.utime(upload, (stale, stale))
    other = await start_server(data_dir=data_dir, database_url=migrated_db_url, instance="other")
    row = await settled(other, recording_id)
    assert (row.status, row.end_reason, row.instance) == (RecordingStatus.COMPLETE, "interrupted", "other")
    assert 0 < row.frames < sent
    assert decoded(await media_of(other, recording_id)) == [(320, 240)] * row.frames
    assert [p.name for p in data_dir.joinpath("recordings").rglob("*") if p.is_file()] == [row.blob_key]


_REFUSE_END = {
    "sqlite": [
        "CREATE TRIGGER refuse_end BEFORE INSERT ON audit_events WHEN NEW.action LIKE 'recording.end.%' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_end() RETURNS trigger AS $$ BEGIN IF NEW.action LIKE 'recording.end.%' THEN "
        "RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_end BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_end()",
    ],
}
_ALLOW_END = {"sqlite": ["DROP TRIGGER refuse_end"], "postgresql": ["DROP TRIGGER refuse_end ON audit_events"]}


async def ends_on_record(server: RunningServer, recording_id: str) -> tuple[RecordingStatus, list[str], list[str]]:
    """The recording's status, its outbox events' statuses and its audit entries' actions."""
    async with server.app[SERVICES].database.engine.connect() as connection:
        status = (await connection.execute(select(Recording.status).where(Recording.id == recording_id))).scalar_one()
        events = await connection.scalars(
            select(WebhookEvent.status).where(WebhookEvent.subject_id == recording_id).order_by(WebhookEvent.id)
        )
        resource = f"recording:{recording_id}"
        actions = await connection.scalars(
            select(AuditEvent.action).where(AuditEvent.resource == resource).order_by(AuditEvent.seq)
        )
        return status, [s for s in events.all() if s is not None], list(actions.all())


async def test_a_recordings_end_its_event_and_its_audit_entry_commit_together(  # type: ignore[no-untyped-def]
    start_server, migrated_db_url: str
) -> None:
    server = await start_server(database_url=migrated_db_url)
    database = server.app[SERVICES].database
    dialect = database.engine.dialect.name

    async def run(statements: list[str]) -> None:
        async with database.engine.begin() as connection:
            for sql in statements:
                await connection.exec_driver_sql(sql)

    consultation = await server.new_consultation("east")
    await run(_REFUSE_END[dialect])
    # The audit entry cannot be written: neither is the row's end, nor the webhooks' event.
    with pytest.raises(Exception, match="refused"):
        await stored_recording(server, consultation, frames=10)
    [row] = await server.app[SERVICES].recordings.of_consultation(consultation)
    assert await ends_on_record(server, row.id) == (RecordingStatus.RECORDING, [], [])
    # The finished video's upload is kept while no row names the video: salvage can make it again.
    stored = await server.app[SERVICES].recordings.get(row.id)
    assert stored is not None
    assert any(p.name == f"{stored.blob_key}-up" for p in server.settings.recording_dir.rglob("*"))

    await run(_ALLOW_END[dialect])
    view = await stored_recording(server, await server.new_consultation("east"), frames=10)
    assert await ends_on_record(server, view.id) == (RecordingStatus.COMPLETE, ["complete"], ["recording.end.stopped"])
