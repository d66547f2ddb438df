"""``woundcare camera`` as a real subprocess against the real server, and its snapshot queue."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from signaling.protocol import Role, SnapshotRequest
from tests.api.client import ApiClient
from tests.server import RunningServer
from tests.services import free_port
from woundcare.camera.client import SignalingClient
from woundcare.camera.peer import Viewer, ice_configuration, pump, shutdown
from woundcare.camera.snapshots import SnapshotQueue, SnapshotUploader
from woundcare.db.models import Role as StaffRole

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
NATIONAL_ID = "01018012371"


async def next_of(inbox: asyncio.Queue[dict[str, Any]], kind: str, timeout: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = await inbox.get()
            if frame["type"] == kind:
                return frame


def spawn_camera(args: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``woundcare camera`` in its own process; its output goes to ``log_path``."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "woundcare", "camera", *args],
            cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )


@pytest.mark.usefixtures("loopback_ice")
async def test_camera_streams_to_a_specialist_and_answers_a_snapshot_request(
    server: RunningServer, tmp_path: Path
) -> None:
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    await server.add_user("admin", PASSWORD, {"east": StaffRole.ADMIN})
    admin, nurse, spes = ApiClient(server.url), ApiClient(server.url), ApiClient(server.url)
    camera: subprocess.Popen[bytes] | None = None
    specialist_client = SignalingClient(server.url)
    viewer = Viewer(specialist_client, ice_configuration([]))
    tasks: list[asyncio.Task[None]] = []
    log_path = tmp_path / "camera.log"
    try:
        await admin.login("admin", PASSWORD)
        device = await admin.json("POST", "/api/devices", expect=201,
                                  json={"region": "east", "user": "nurse1", "name": "hodekamera 1"})
        await nurse.login("nurse1", PASSWORD)
        patient = await nurse.json("POST", "/api/patients", expect=201,
                                   json={"region": "east", "nationalId": NATIONAL_ID, "name": "Per Øst"})
        await spes.login("spes", PASSWORD)

        env = {**os.environ, "PYTHONPATH": str(REPO), "WOUNDCARE_DEVICE_TOKEN": device["token"]}
        camera = spawn_camera(
            ["--server", server.url, "--patient", patient["id"], "--consent", "video,snapshots",
             "--source", "synthetic", "--width", "1920", "--height", "1080",
             "--queue-dir", str(tmp_path / "queue"), "--loopback-only"],
            env, tmp_path, log_path,
        )

        # The camera starts the consultation; the specialist finds it in the queue.
        consultation: str | None = None
        async with asyncio.timeout(30):
            while consultation is None:
                assert camera.poll() is None, log_path.read_text()
                queue = (await spes.json("GET", "/api/consultations/queue"))["consultations"]
                consultation = queue[0]["id"] if queue else None
                await asyncio.sleep(0.2)
        consents = await nurse.json("GET", f"/api/consultations/{consultation}/consents")
        assert consents["consents"]["snapshots"] is True

        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        async with asyncio.timeout(30):
            while True:  # until the camera has joined /ws
                assert camera.poll() is None, log_path.read_text()
                token = (await spes.json("POST", f"/api/consultations/{consultation}/join-token"))["token"]
                joined = await specialist_client.join(consultation, Role.SPECIALIST, token)
                if any(p["role"] == "nurse" for p in joined["peers"]):
                    break
                await specialist_client.send({"type": "leave"})
                await specialist_client.drop()
                await asyncio.sleep(0.3)
        tasks.append(asyncio.create_task(pump(specialist_client, viewer, inbox)))

        async with asyncio.timeout(30):
            counter = await viewer.frames(10)
        assert counter.frames >= 10 and counter.size is not None

        await specialist_client.send(SnapshotRequest(id="r1"))
        try:
            stored = await next_of(inbox, "snapshot_stored", timeout=60)
        except TimeoutError:
            queued = sorted(p.name for p in (tmp_path / "queue").rglob("*"))
            pytest.fail(f"no snapshot_stored; queue {queued}; camera log:\n{log_path.read_text()}")
        assert stored["request"] == "r1"
        listed = (await spes.json("GET", f"/api/consultations/{consultation}/snapshots"))["snapshots"]
        [snapshot] = [s for s in listed if s["request"] == "r1"]
        assert snapshot["id"] == stored["id"]
        response = await spes.request("GET", f"/api/snapshots/{snapshot['id']}")
        assert response.status == 200
        image = Image.open(io.BytesIO(await response.read()))
        assert image.size == (1920, 1080)  # the still is full resolution, whatever the video sent
        assert not list((tmp_path / "queue").glob("*.jpg"))  # uploaded, so no longer queued

        camera.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(camera.wait), 15) == 0
    finally:
        if camera is not None and camera.poll() is None:
            camera.kill()
            camera.wait(5)
        await shutdown(tasks, viewer, specialist_client)
        for client in (admin, nurse, spes):
            await client.close()


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
