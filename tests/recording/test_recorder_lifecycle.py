"""A recording ends with its consultation, and with the server: finished and playable either
way. The camera is an in-process aiortc Publisher with the synthetic source, on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from signaling.protocol import Role
from tests.api.client import ApiClient
from tests.recording.media import decoded
from tests.recording.test_recordings import media_of
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.webrtc.client import SignalingClient
from woundcare.camera.peer import Publisher
from woundcare.webrtc.peer import ice_configuration, pump, shutdown
from woundcare.camera.synthetic import SyntheticVideoTrack
from woundcare.db.models import ConsentKind, RecordingStatus
from woundcare.db.models import StaffRole
from woundcare.records.recordings import RecordingView

PASSWORD = "correct horse battery staple"
FRAMES = 20


@asynccontextmanager
async def camera_in(server: RunningServer, consultation: str) -> AsyncIterator[None]:
    """The nurse's camera in the room, offering its synthetic video to whoever joins."""
    client = SignalingClient(server.url)
    publisher = Publisher(client, SyntheticVideoTrack(160, 120), ice_configuration([]))
    await client.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE, region="east"))
    tasks = [asyncio.create_task(pump(client, publisher))]
    try:
        yield
    finally:
        await shutdown(tasks, publisher, client)


async def recording_with_video(server: RunningServer, consultation: str) -> RecordingView:
    """Start recording ``consultation`` and wait until the recorder has encoded some frames."""
    view = await server.app[SERVICES].consultations.get(consultation)
    assert view is not None
    await server.app[SERVICES].consents.record(consultation, view.patient_id, view.region_id, {ConsentKind.RECORDING: True}, "u0")
    started = await server.app[SERVICES].recorders.start(view, "u0")
    async with asyncio.timeout(30):
        while (recorder := server.app[SERVICES].recorders.recorder(consultation)) is None or recorder.frames < FRAMES:
            await asyncio.sleep(0.05)
    return started


@pytest.mark.usefixtures("loopback_ice")
async def test_ending_the_consultation_finishes_the_recording(server: RunningServer) -> None:
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    consultation = await server.new_consultation("east")
    spes = ApiClient(server.url)
    try:
        assert (await spes.login("spes", PASSWORD)).status == 200
        async with camera_in(server, consultation):
            started = await recording_with_video(server, consultation)
            response = await spes.request("POST", f"/api/consultations/{consultation}/end")
            assert response.status == 204
        row = await server.app[SERVICES].recordings.get(started.id)
        assert row is not None and (row.status, row.end_reason) == (RecordingStatus.COMPLETE, "ended")
        assert server.app[SERVICES].recorders.recorder(consultation) is None
        sizes = decoded(await media_of(server, started.id))
        assert len(sizes) == row.frames >= FRAMES and set(sizes) == {(160, 120)}
    finally:
        await spes.close()


@pytest.mark.usefixtures("loopback_ice")
async def test_a_server_shutdown_finishes_the_recording(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    data_dir = tmp_path / "shut-down"
    server = await start_server(data_dir=data_dir, instance="one")
    consultation = await server.new_consultation("east")
    async with camera_in(server, consultation):
        started = await recording_with_video(server, consultation)
        await server.stop()  # graceful: sockets told to go away, then cleanup_ctx finishes recordings
    again = await start_server(data_dir=data_dir, instance="one")
    row = await again.app[SERVICES].recordings.get(started.id)
    assert row is not None and (row.status, row.end_reason) == (RecordingStatus.COMPLETE, "shutdown")
    sizes = decoded(await media_of(again, started.id))
    assert len(sizes) == row.frames >= FRAMES
