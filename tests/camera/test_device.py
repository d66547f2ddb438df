"""``woundcare camera`` as a real subprocess against the real server, and its snapshot queue."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame
from aiohttp import web
from PIL import Image
from sqlalchemy import func, select

from signaling.protocol import SnapshotRequest, VideoMode, VideoProfileMessage
from tests.camera.scene import home_visit, last_second, next_of
from tests.server import RunningServer
from tests.services import free_port
from woundcare.appkeys import SERVICES
from woundcare.camera.snapshots import SnapshotQueue, SnapshotUploader
from woundcare.db.models import Consultation


@pytest.mark.usefixtures("loopback_ice")
async def test_camera_streams_to_a_specialist_and_answers_a_snapshot_request(
    server: RunningServer, tmp_path: Path
) -> None:
    async with home_visit(server, tmp_path) as visit:
        voice = tmp_path / "speaker.wav"
        visit.start_camera(server.url, "--width", "1920", "--height", "1080", "--speaker", str(voice), "--loopback-only")
        # The camera starts the consultation; the specialist finds it in the queue.
        consultation = await visit.find_consultation(30)
        consents = await visit.nurse.json("GET", f"/api/consultations/{consultation}/consents")
        assert consents["consents"]["snapshots"] is True

        await visit.join_specialist(30, microphone=Tone(440))
        assert visit.viewer is not None
        async with asyncio.timeout(30):
            counter = await visit.viewer.frames(10)
        assert counter.frames >= 10 and counter.size is not None
        assert max(counter.size) <= 1280  # the standard profile scales the 1080p source to 720p

        await visit.send(SnapshotRequest(id="r1"))
        try:
            stored = await next_of(visit.inbox, "snapshot_stored", timeout=60)
        except TimeoutError:
            queued = sorted(p.name for p in (tmp_path / "queue").rglob("*"))
            pytest.fail(f"no snapshot_stored; queue {queued}; camera log:\n{visit.camera_log()}")
        assert stored["request"] == "r1"
        listed = (await visit.spes.json("GET", f"/api/consultations/{consultation}/snapshots"))["snapshots"]
        [snapshot] = [s for s in listed if s["request"] == "r1"]
        assert snapshot["id"] == stored["id"]
        response = await visit.spes.request("GET", f"/api/snapshots/{snapshot['id']}")
        assert response.status == 200
        image = Image.open(io.BytesIO(await response.read()))
        assert image.size == (1920, 1080)  # the still is full resolution, whatever the video sent
        # Uploaded, so no longer queued; the room may hear of it before the camera reads its 201.
        async with asyncio.timeout(10):
            while list((tmp_path / "queue").glob("*.jpg")):
                await asyncio.sleep(0.05)

        # Let the speaker play for a while: 400 kB is over a second of 48 kHz stereo.
        async with asyncio.timeout(30):
            while not voice.exists() or voice.stat().st_size < 400_000:
                await asyncio.sleep(0.1)
        assert await visit.stop_camera() == 0
        # The specialist's voice played on the camera's speaker (here a WAV file).
        heard = last_second(voice)
        assert heard.level > 1000  # not silence
        assert abs(heard.hertz - 440) < 10


@pytest.mark.usefixtures("loopback_ice")
async def test_the_specialist_pins_the_low_profile_and_returns_to_auto(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    # Credentials that live 2 s: the camera renews them every second.
    server = await start_server(turn_ttl_seconds=2)
    async with home_visit(server, tmp_path) as visit:
        visit.start_camera(server.url, "--width", "1280", "--height", "720", "--loopback-only")
        await visit.join_specialist(30)
        assert visit.viewer is not None
        told = await next_of(visit.inbox, "video_profile", timeout=30)
        assert (told["mode"], told["active"]) == ("auto", "standard")  # told on joining
        await visit.viewer.frames(5)

        nurse = visit.nurse_id()
        await visit.send(VideoProfileMessage(to=nurse, mode=VideoMode.LOW))
        told = await next_of(visit.inbox, "video_profile", timeout=20, mode="low")
        assert told["active"] == "low" and told["from"] == nurse
        counter = visit.viewer.counter
        assert counter is not None
        async with asyncio.timeout(20):  # frames already in flight still have the old size
            while counter.last_size != (640, 360):
                await asyncio.sleep(0.1)

        await visit.send(VideoProfileMessage(to=nurse, mode=VideoMode.AUTO))
        told = await next_of(visit.inbox, "video_profile", timeout=20, mode="auto")
        assert told["active"] == "standard"  # a clean loopback link
        async with asyncio.timeout(20):
            while counter.last_size != (1280, 720):
                await asyncio.sleep(0.1)
        assert counter.frames >= 10

        async with asyncio.timeout(10):
            while visit.camera_log().count("TURN credentials renewed") < 2:
                await asyncio.sleep(0.1)
        # The session log keeps the camera's changes and the specialist's choices.
        await server.app[SERVICES].session_log.flush()
        events = (await visit.spes.json("GET", f"/api/consultations/{visit.consultation}"))["events"]
        details = [(e["kind"], e["detail"]) for e in events if e["kind"].startswith("video_profile")]
        assert ("video_profile_asked", "low") in details and ("video_profile", "low/low") in details
        assert ("video_profile_asked", "auto") in details and ("video_profile", "standard/auto") in details
        assert await visit.stop_camera() == 0


class Tone(AudioStreamTrack):
    """A microphone that hums one pitch, paced as aiortc's silent AudioStreamTrack is."""

    def __init__(self, hertz: float) -> None:
        super().__init__()
        self._hertz = hertz
        self._sent = 0

    async def recv(self) -> AudioFrame:
        frame = await super().recv()
        count = frame.samples
        t = (np.arange(count) + self._sent) / frame.sample_rate
        self._sent += count
        frame.planes[0].update((8000 * np.sin(2 * np.pi * self._hertz * t)).astype(np.int16).tobytes())
        return frame


async def test_snapshot_is_on_disk_before_upload_kept_on_failure_removed_after_success(tmp_path: Path) -> None:
    seen: list[list[str]] = []
    answers = [503, 201]

    async def upload(request: web.Request) -> web.Response:
        seen.append(sorted(p.name for p in (tmp_path / "queue").glob("*.jpg")))
        form = await request.post()
        assert form["request"] == "r1" and request.headers["Authorization"] == "Bearer wcd_test"
        status = answers.pop(0)
        return web.json_response({"id": "s1", "request": "r1"} if status == 201 else {}, status=status)

    app = web.Application()
    app.router.add_post("/api/consultations/c1/snapshots", upload)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            queue = SnapshotQueue(tmp_path / "queue")
            uploader = SnapshotUploader(session, f"http://127.0.0.1:{port}", "wcd_test", queue, first_backoff=0.05)
            item = uploader.submit("c1", "r1", b"\xff\xd8 not really a jpeg")
            assert item.path.read_bytes() == b"\xff\xd8 not really a jpeg"
            # A restart finds the same still waiting.
            assert [q.request for q in SnapshotQueue(tmp_path / "queue").pending()] == ["r1"]
            async with asyncio.timeout(10):
                await uploader.drain()
        assert seen == [[item.path.name], [item.path.name]]  # on disk at both tries, kept after the 503
        assert not item.path.exists() and queue.pending() == []
        assert uploader.uploaded == [{"id": "s1", "request": "r1"}]
    finally:
        await runner.cleanup()


async def test_upload_failure_keeps_the_file(tmp_path: Path) -> None:
    queue = SnapshotQueue(tmp_path / "queue")
    async with aiohttp.ClientSession() as session:
        uploader = SnapshotUploader(session, f"http://127.0.0.1:{free_port()}", "wcd_test", queue)
        item = uploader.submit("c1", None, b"jpeg")
        task = asyncio.create_task(uploader.run())
        await asyncio.sleep(0.3)  # connection refused at least once
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert item.path.exists() and [q.request for q in queue.pending()] == [None]


@pytest.mark.usefixtures("loopback_ice")
async def test_a_restarted_camera_goes_back_into_its_consultation(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    """Killed mid-call and started again for the same patient, the camera does not split the
    record: the server names the live consultation (409 ``consultation_live``) and the camera
    waits for its earlier run's place to free (the grace window) and joins it again."""
    server = await start_server(grace_seconds=3.0)

    async def nurse_in_queue() -> tuple[str, bool] | None:
        queue = (await visit.spes.json("GET", "/api/consultations/queue"))["consultations"]
        assert len(queue) <= 1, queue
        return (queue[0]["id"], queue[0]["nurse"]["connected"]) if queue else None

    async with home_visit(server, tmp_path) as visit:
        visit.start_camera(server.url, "--loopback-only")
        consultation = await visit.find_consultation(30)
        async with asyncio.timeout(30):
            while await nurse_in_queue() != (consultation, True):
                visit.assert_camera_running()
                await asyncio.sleep(0.2)
        assert visit.camera is not None
        visit.camera.kill()  # no leave: the nurse's place is held for the grace window
        await asyncio.to_thread(visit.camera.wait)
        visit.start_camera(server.url, "--loopback-only")
        async with asyncio.timeout(45):
            while await nurse_in_queue() != (consultation, True):
                visit.assert_camera_running()
                await asyncio.sleep(0.2)
        assert f"consultation {consultation}" in visit.camera_log()
        async with server.app[SERVICES].database.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Consultation)) == 1
