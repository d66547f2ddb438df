"""A server killed with SIGKILL while a specialist's page uploads a recording, then started
again: the recording is settled by the start (never left ``recording``), what had reached the
disk sealed is kept as a playable recording, and no upload file is left behind."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest
from sqlalchemy import select

from tests.e2e.process import ServerProcess
from tests.e2e.ward import consented_consultation, logged_in, ward_process
from tests.recording.media import PIECE, webm_part
from woundcare.db.engine import make_engine
from woundcare.db.models import AuditEvent, Recording


@pytest.fixture
async def server(tmp_path: Path, migrated_db_url: str) -> AsyncIterator[ServerProcess]:
    process = await ward_process(tmp_path, migrated_db_url, "recording-crash")
    try:
        yield process
    finally:
        await process.kill()


async def rows(db_url: str) -> list[Recording]:
    engine = make_engine(db_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(select(Recording))).all())  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def audit_actions(db_url: str) -> list[tuple[str, str]]:
    engine = make_engine(db_url)
    try:
        async with engine.connect() as connection:
            found = await connection.execute(select(AuditEvent.action, AuditEvent.outcome).order_by(AuditEvent.seq))
            return [(row.action, row.outcome) for row in found]
    finally:
        await engine.dispose()


def files_under(root: Path) -> list[str]:
    return sorted(path.name for path in root.rglob("*") if path.is_file())


async def test_a_recording_cut_off_by_sigkill_is_finished_with_what_was_stored(
    server: ServerProcess, migrated_db_url: str
) -> None:
    await server.start()
    nurse, spes = await logged_in(server, "nurse"), await logged_in(server, "spes")
    try:
        consultation = await consented_consultation(nurse, recording=True)
        recording = (await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=201))["id"]
        part = (await spes.json("POST", f"/api/recordings/{recording}/parts", expect=201))["part"]
        # Noise does not compress: 60 frames span several sealed 64 KiB chunks, so the kill
        # leaves whole chunks on disk (the last, partly filled one is only in memory).
        data = webm_part(60, size=(320, 240), noise=True)
        assert len(data) > 4 * 64 * 1024
        for n, at in enumerate(range(0, len(data), PIECE)):
            response = await spes.request("POST", f"/api/recordings/{recording}/pieces?part={part}&n={n}",
                                          data=data[at : at + PIECE])
            assert response.status == 204
    finally:
        await nurse.close()
        await spes.close()
    await server.kill()
    [cut_off] = await rows(migrated_db_url)
    assert cut_off.status == "recording"  # what the kill leaves: the row, and the upload's temporary file
    assert [name for name in files_under(server.data_dir / "recordings") if name.startswith(".tmp-")]

    await server.start()
    async with asyncio.timeout(30):  # settled in the background, as the server starts
        while (settled := (await rows(migrated_db_url))[0]).status == "recording":
            await asyncio.sleep(0.1)
    assert (settled.status, settled.end_reason) == ("complete", "interrupted")
    assert 0 < settled.frames < 60 and (settled.width, settled.height) == (320, 240)
    assert files_under(server.data_dir / "recordings") == [settled.blob_key]
    # The end's audit entry is written right after the row it follows, in a transaction of its own.
    async with asyncio.timeout(30):
        while ("recording.end.interrupted", "ok") not in (actions := await audit_actions(migrated_db_url)):
            await asyncio.sleep(0.1)
    assert ("recording.end.interrupted", "failed") not in actions

    spes = await logged_in(server, "spes")
    try:
        [listed] = (await spes.json("GET", f"/api/consultations/{consultation}/recordings"))["recordings"]
        assert (listed["status"], listed["endReason"], listed["frames"]) == ("complete", "interrupted", settled.frames)
        response = await spes.request("GET", f"/api/recordings/{recording}")
        assert response.status == 200
        with av.open(io.BytesIO(await response.read())) as container:
            frames = [(frame.width, frame.height) for frame in container.decode(video=0)]
        assert frames == [(320, 240)] * settled.frames
    finally:
        await spes.close()
