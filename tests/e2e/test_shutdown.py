"""SIGTERM with an upload in flight: the upload completes, connected clients are told to
resume elsewhere (going_away, 1001), the process exits cleanly, and no record is lost."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import orjson
from PIL import Image

from tests.e2e.test_crash import StartServer, start_server  # noqa: F401
from tests.e2e.ward import consented_consultation, logged_in


def noisy_jpeg() -> bytes:
    pixels = np.random.default_rng(3).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95)
    return out.getvalue()


async def test_sigterm_finishes_uploads_and_sends_clients_elsewhere(start_server: StartServer) -> None:  # noqa: F811 (the fixture imported above)
    server = await start_server()
    nurse = await logged_in(server, "nurse")
    specialist = await logged_in(server, "spes")
    try:
        consultation = await consented_consultation(nurse)
        token = (await specialist.json("POST", f"/api/consultations/{consultation}/join-token"))["token"]
        form = aiohttp.FormData()
        form.add_field("image", noisy_jpeg(), filename="wound.jpg", content_type="image/jpeg")
        form.add_field("request", "sigterm-1")
        writer = form()
        body = io.BytesIO()

        class Sink:
            async def write(self, data: bytes) -> None:
                body.write(data)

        await writer.write(Sink())  # type: ignore[arg-type]
        payload = body.getvalue()
        half_sent = asyncio.Event()

        async def slowly() -> AsyncIterator[bytes]:
            step = 64 * 1024
            for start in range(0, len(payload), step):
                if start >= len(payload) // 2:
                    half_sent.set()
                await asyncio.sleep(0.05)
                yield payload[start : start + step]

        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{server.url}/ws")
            await ws.send_json({"type": "join", "v": 1, "consultation": consultation, "role": "specialist",
                                "token": token})
            assert (await ws.receive_json(timeout=5))["type"] == "joined"
            upload = asyncio.create_task(nurse.session.post(
                f"{server.url}/api/consultations/{consultation}/snapshots",
                data=slowly(),
                headers={"Content-Type": writer.content_type, "X-CSRF-Token": nurse.csrf or ""},
            ))
            await asyncio.wait_for(half_sent.wait(), 20)
            exit_code = asyncio.create_task(server.terminate())

            # The upload in flight completes (and is announced), then the socket is told to go.
            response = await asyncio.wait_for(upload, 30)
            assert response.status == 201, await response.text()
            stored = await response.json()
            frames = []
            async with asyncio.timeout(30):
                while (msg := await ws.receive()).type is aiohttp.WSMsgType.TEXT:
                    frames.append(orjson.loads(msg.data))
            assert [f["type"] for f in frames] == ["snapshot_stored", "error"]
            assert frames[0]["id"] == stored["id"] and frames[1]["code"] == "going_away"
            # 1001 from the close frame; a client that reads it after the server has closed the
            # TCP connection reports 1006 instead (docs/protocol.md). The frame above is the message.
            assert ws.close_code in (1001, 1006)
            assert await asyncio.wait_for(exit_code, 30) == 0

        await server.start()
        again = await logged_in(server, "spes")
        try:
            listed = await again.json("GET", f"/api/consultations/{consultation}/snapshots")
            assert [s["id"] for s in listed["snapshots"]] == [stored["id"]]
            image = await again.request("GET", f"/api/snapshots/{stored['id']}")
            assert Image.open(io.BytesIO(await image.read())).size == (1200, 900)
        finally:
            await again.close()
    finally:
        await nurse.close()
        await specialist.close()
