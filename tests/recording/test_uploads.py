"""A recording sent piece by piece over HTTP as the specialist's page sends it: parts after a
reload made into one seekable WebM with its sound, pieces in order and from the starter only,
ranges for a seeking player, and the ends a recording has (stop, the consultation's end, the
server's shutdown)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path

import av
import pytest

from tests.api.client import ApiClient
from tests.recording.media import PIECE, decoded, loudness, webm_part
from tests.recording.test_recordings import media_of
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.crypto.stream import CHUNK_SIZE
from woundcare.db.models import ConsentKind, RecordingStatus, StaffRole
from woundcare.recording import uploads

PASSWORD = "correct horse battery staple"


async def consenting(server: RunningServer) -> tuple[str, ApiClient, ApiClient]:
    """A consultation with consent to recording, and two logged-in specialists of its region."""
    for name in ("spes", "other"):
        await server.add_user(name, PASSWORD, {"east": StaffRole.SPECIALIST})
    consultation = await server.new_consultation("east")
    view = await server.app[SERVICES].consultations.get(consultation)
    assert view is not None
    await server.app[SERVICES].consents.record(consultation, view.patient_id, view.region_id, {ConsentKind.RECORDING: True}, "u0")
    clients = ApiClient(server.url), ApiClient(server.url)
    for client, name in zip(clients, ("spes", "other"), strict=True):
        assert (await client.login(name, PASSWORD)).status == 200
    return consultation, *clients


async def send_part(client: ApiClient, recording: str, data: bytes) -> None:
    part = (await client.json("POST", f"/api/recordings/{recording}/parts", expect=201))["part"]
    for n, at in enumerate(range(0, len(data), PIECE)):
        response = await client.request("POST", f"/api/recordings/{recording}/pieces?part={part}&n={n}",
                                        data=data[at : at + PIECE])
        assert response.status == 204


async def test_parts_become_one_seekable_webm_with_sound_and_play_in_ranges(server: RunningServer) -> None:
    consultation, spes, other = await consenting(server)
    try:
        started = await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=201)
        rid = started["id"]
        await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=409)  # one at a time
        # Only its starter sends it: another specialist of the region may stop it, not fill it.
        assert (await other.json("POST", f"/api/recordings/{rid}/parts", expect=403))["error"]["code"] == "not_recorder"
        await send_part(spes, rid, webm_part(45, size=(320, 240), noise=True))  # spans several sealed chunks
        await send_part(spes, rid, webm_part(45))  # the page reloaded, the camera changed size
        part = (await spes.json("POST", f"/api/recordings/{rid}/parts", expect=201))["part"]
        piece = webm_part(30)
        path = f"/api/recordings/{rid}/pieces?part={part}"
        assert (await spes.request("POST", f"{path}&n=0", data=piece)).status == 204
        assert (await spes.request("POST", f"{path}&n=0", data=piece)).status == 204  # sent again: taken once
        assert (await spes.json("POST", f"{path}&n=2", expect=409, data=piece))["error"]["code"] == "chunk_order"
        assert (await spes.json("POST", f"/api/recordings/{rid}/pieces?part=0&n=9", expect=409, data=piece))["error"]["code"] == "chunk_order"
        await spes.json("POST", f"/api/recordings/{rid}/pieces?part=x&n=0", expect=400, data=piece)

        stopped = await other.json("POST", f"/api/recordings/{rid}/stop")
        assert (stopped["status"], stopped["endReason"], stopped["frames"]) == ("complete", "stopped", 120)
        await spes.json("POST", f"/api/recordings/{rid}/pieces?part={part}&n=1", expect=409, data=piece)

        whole = await media_of(server, rid)
        assert len(decoded(whole)) == 120
        streams, level = loudness(whole)
        assert streams == 1 and level > 0.1
        with av.open(io.BytesIO(whole)) as container:
            assert 3.5 < float(container.duration or 0) / av.time_base < 4.5  # duration written: 4 s of parts
            container.seek(3 * av.time_base, stream=container.streams.video[0])
            assert float(next(container.decode(video=0)).time or 0) >= 2.0
        assert b"\x1c\x53\xbb\x6b" in whole  # the Cues element a player seeks with

        assert len(whole) > 3 * CHUNK_SIZE
        first, last = CHUNK_SIZE - 100, 2 * CHUNK_SIZE + 50  # across three chunks
        response = await spes.request("GET", f"/api/recordings/{rid}", headers={"Range": f"bytes={first}-{last}"})
        assert response.status == 206 and response.headers["Content-Range"] == f"bytes {first}-{last}/{len(whole)}"
        assert response.headers["Accept-Ranges"] == "bytes" and await response.read() == whole[first : last + 1]
        response = await spes.request("GET", f"/api/recordings/{rid}", headers={"Range": "bytes=70000-"})
        assert response.status == 206 and await response.read() == whole[70000:]
        response = await spes.request("GET", f"/api/recordings/{rid}", headers={"Range": "bytes=-10"})
        assert await response.read() == whole[-10:]
        response = await spes.request("GET", f"/api/recordings/{rid}", headers={"Range": f"bytes={len(whole)}-"})
        assert response.status == 416 and response.headers["Content-Range"] == f"bytes */{len(whole)}"
        response = await spes.request("GET", f"/api/recordings/{rid}")
        assert response.status == 200 and await response.read() == whole
    finally:
        await spes.close()
        await other.close()


async def test_ending_the_consultation_finishes_what_was_sent(server: RunningServer) -> None:
    consultation, spes, other = await consenting(server)
    try:
        started = await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=201)
        await send_part(spes, started["id"], webm_part(20))
        assert (await other.request("POST", f"/api/consultations/{consultation}/end")).status == 204
        [ended] = (await spes.json("GET", f"/api/consultations/{consultation}/recordings"))["recordings"]
        assert (ended["status"], ended["endReason"], ended["frames"]) == ("complete", "ended", 20)
    finally:
        await spes.close()
        await other.close()


async def test_a_server_shutdown_finishes_the_recording(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    data_dir = tmp_path / "shut-down"
    server = await start_server(data_dir=data_dir, instance="one")
    consultation, spes, other = await consenting(server)
    try:
        started = await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=201)
        await send_part(spes, started["id"], webm_part(20))
    finally:
        await spes.close()
        await other.close()
    await server.stop()
    again = await start_server(data_dir=data_dir, instance="one")
    row = await again.app[SERVICES].recordings.get(started["id"])
    assert row is not None and (row.status, row.end_reason, row.frames) == (RecordingStatus.COMPLETE, "shutdown", 20)
    assert len(decoded(await media_of(again, started["id"]))) == 20


async def test_a_recording_no_piece_reaches_is_finished_as_abandoned(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page was closed for good: what it sent is kept, and the recording ends by itself."""
    monkeypatch.setattr(uploads, "ABANDONED_SECONDS", 1.0)
    monkeypatch.setattr(uploads, "_WATCH_SECONDS", 0.2)
    consultation, spes, other = await consenting(server)
    try:
        started = await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=201)
        await send_part(spes, started["id"], webm_part(20))
        async with asyncio.timeout(30):
            while (row := await server.app[SERVICES].recordings.get(started["id"])) is None or row.status is RecordingStatus.RECORDING:
                await asyncio.sleep(0.2)
        assert (row.status, row.end_reason, row.frames) == (RecordingStatus.COMPLETE, "abandoned", 20)
    finally:
        await spes.close()
        await other.close()


async def test_a_recording_past_its_bound_is_refused_and_finished_with_what_it_holds(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page left recording cannot grow a recording past what the finishing worker can hold."""
    first = webm_part(20)
    monkeypatch.setattr(uploads, "MAX_BYTES", len(first) + PIECE // 2)
    consultation, spes, other = await consenting(server)
    try:
        started = await spes.json("POST", f"/api/consultations/{consultation}/recordings", expect=201)
        recording = started["id"]
        await send_part(spes, recording, first)
        # Part and piece numbers are counted from 0.
        refused = await spes.request("POST", f"/api/recordings/{recording}/pieces?part=-1&n=0", data=b"x")
        assert refused.status == 400 and (await refused.json())["error"]["code"] == "bad_piece"
        part = (await spes.json("POST", f"/api/recordings/{recording}/parts", expect=201))["part"]
        over = await spes.request("POST", f"/api/recordings/{recording}/pieces?part={part}&n=0", data=b"\0" * PIECE)
        assert over.status == 413 and (await over.json())["error"]["code"] == "recording_too_long"
        async with asyncio.timeout(30):
            while (row := await server.app[SERVICES].recordings.get(recording)) is None or row.status is RecordingStatus.RECORDING:
                await asyncio.sleep(0.2)
        assert (row.status, row.end_reason, row.frames) == (RecordingStatus.COMPLETE, "limit", 20)
        assert len(decoded(await media_of(server, recording))) == 20
    finally:
        await spes.close()
        await other.close()
