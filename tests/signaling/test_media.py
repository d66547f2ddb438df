"""Two real aiortc peers meet only through the real server's /ws, and video flows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCConfiguration

from signaling.protocol import Chat, Role
from tests.server import RunningServer
from woundcare.webrtc.client import SignalingClient
from woundcare.camera.peer import Publisher
from woundcare.webrtc.peer import Viewer, ice_configuration, pump, shutdown
from woundcare.camera.synthetic import SyntheticVideoTrack

pytestmark = pytest.mark.usefixtures("loopback_ice")


async def camera_in_room(
    server: RunningServer, **options: Any
) -> tuple[str, RTCConfiguration, SignalingClient, Publisher]:
    """A new consultation with the nurse's camera joined (320x240, loopback ICE)."""
    consultation = await server.new_consultation()
    config = ice_configuration([])
    nurse_client = SignalingClient(server.url)
    await nurse_client.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE))
    return consultation, config, nurse_client, Publisher(nurse_client, SyntheticVideoTrack(320, 240), config, **options)


async def next_of(inbox: asyncio.Queue[dict[str, Any]], kind: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = await inbox.get()
            if frame["type"] == kind:
                return frame


async def test_nurse_camera_reaches_specialist_and_chat_flows_both_ways(server: RunningServer) -> None:
    consultation = await server.new_consultation()
    config = ice_configuration([])
    nurse_client = SignalingClient(server.url)
    specialist_client = SignalingClient(server.url)
    await nurse_client.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE))
    camera = Publisher(nurse_client, SyntheticVideoTrack(640, 480), config)
    viewer = Viewer(specialist_client, config)
    nurse_inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    specialist_inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    tasks = [asyncio.create_task(pump(nurse_client, camera, nurse_inbox))]
    try:
        joined = await specialist_client.join(
            consultation, Role.SPECIALIST, server.invite(consultation, Role.SPECIALIST)
        )
        assert [p["role"] for p in joined["peers"]] == ["nurse"]
        tasks.append(asyncio.create_task(pump(specialist_client, viewer, specialist_inbox)))
        presence = await next_of(nurse_inbox, "presence")
        assert (presence["state"], presence["participant"]["role"]) == ("joined", "specialist")

        async with asyncio.timeout(20):
            counter = await viewer.frames(30)
        assert counter.size == (640, 480)

        await specialist_client.send(Chat(text="Kan du vise sårkanten nærmere?"))
        chat = await next_of(nurse_inbox, "chat")
        assert chat["text"] == "Kan du vise sårkanten nærmere?"
        assert chat["from"] == specialist_client.participant
        await nurse_client.send(Chat(text="Ja, et øyeblikk."))
        chat = await next_of(specialist_inbox, "chat")
        assert (chat["text"], chat["from"]) == ("Ja, et øyeblikk.", nurse_client.participant)
    finally:
        await shutdown(tasks, camera, viewer, nurse_client, specialist_client)


async def test_camera_resumes_and_media_recovers_on_a_fresh_peer_connection(server: RunningServer) -> None:
    """aiortc has no ICE restart: after a socket resume the viewer asks for one and the
    camera negotiates a fresh peer connection (next ``pc`` generation) in the same room."""
    consultation, config, nurse_client, camera = await camera_in_room(server)
    specialist_client = SignalingClient(server.url)
    viewer = Viewer(specialist_client, config)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    tasks = [asyncio.create_task(pump(nurse_client, camera))]
    try:
        await specialist_client.join(consultation, Role.SPECIALIST, server.invite(consultation, Role.SPECIALIST))
        tasks.append(asyncio.create_task(pump(specialist_client, viewer, inbox)))
        async with asyncio.timeout(20):
            await viewer.frames(1)
        first_pc = viewer.pc

        await nurse_client.drop()
        await tasks[0]
        assert (await next_of(inbox, "presence"))["state"] == "reconnecting"
        await nurse_client.resume()
        tasks[0] = asyncio.create_task(pump(nurse_client, camera))
        assert (await next_of(inbox, "presence"))["state"] == "rejoined"

        await viewer.request_restart(nurse_client.participant or "")
        async with asyncio.timeout(20):
            while viewer.generation != 1:
                await asyncio.sleep(0.05)
            await viewer.frames(10)
        assert viewer.pc is not first_pc
        assert len(viewer.counters) == 2
    finally:
        await shutdown(tasks, camera, viewer, nurse_client, specialist_client)


def ice_ufrag(sdp: str) -> str:
    return next(line for line in sdp.splitlines() if line.startswith("a=ice-ufrag:"))


async def test_a_new_viewer_gets_the_connection_the_camera_made_ahead(server: RunningServer) -> None:
    """aiortc gathers inside setLocalDescription; the camera does that before anyone joins, so
    a viewer's offer goes at once. The connection made ahead carries media like any other, and
    another is made for the next viewer, again when the ICE servers change."""
    consultation, config, nurse_client, camera = await camera_in_room(server)
    specialist_client = SignalingClient(server.url)
    viewer = Viewer(specialist_client, config)
    tasks = [asyncio.create_task(pump(nurse_client, camera))]

    async def made_ahead(configuration: object) -> str:
        async with asyncio.timeout(10):
            while camera._ready is None or camera._ready.configuration is not configuration:
                await asyncio.sleep(0.01)
        return ice_ufrag(camera._ready.pc.localDescription.sdp)

    try:
        await camera.start()
        ahead = await made_ahead(config)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await specialist_client.join(consultation, Role.SPECIALIST, server.invite(consultation, Role.SPECIALIST))
        tasks.append(asyncio.create_task(pump(specialist_client, viewer, inbox)))
        offer = await next_of(inbox, "offer")
        assert ice_ufrag(offer["sdp"]) == ahead
        async with asyncio.timeout(20):
            await viewer.frames(10)

        following = await made_ahead(config)
        assert following != ahead
        renewed = ice_configuration([])
        camera.configuration = renewed
        assert await made_ahead(renewed) not in (ahead, following)
    finally:
        await shutdown(tasks, camera, viewer, nurse_client, specialist_client)
    assert camera._ready is None


async def test_the_camera_hears_the_telestration_channel_of_a_specialist_only(server: RunningServer) -> None:
    """The server lets only a specialist send ``annotation`` (protocol §6.11); the data channel
    bypasses the server, so the camera applies the same rule to it: an observer's is not heard."""
    heard: list[tuple[str, str | bytes]] = []
    consultation, config, nurse_client, camera = await camera_in_room(
        server, on_telestration=lambda viewer, data: heard.append((viewer, data)))
    tasks = [asyncio.create_task(pump(nurse_client, camera))]
    viewers: dict[Role, tuple[SignalingClient, Viewer]] = {}
    try:
        for role in (Role.OBSERVER, Role.SPECIALIST):
            client = SignalingClient(server.url)
            viewer = Viewer(client, config)
            await client.join(consultation, role, server.invite(consultation, role))
            tasks.append(asyncio.create_task(pump(client, viewer)))
            viewers[role] = (client, viewer)
        for client, viewer in viewers.values():
            async with asyncio.timeout(20):
                await viewer.frames(1)
                while viewer.channel is None or viewer.channel.readyState != "open":
                    await asyncio.sleep(0.02)
        for role, (client, viewer) in viewers.items():
            assert viewer.channel is not None
            viewer.channel.send(f'{{"from-role": "{role.value}"}}')
        async with asyncio.timeout(10):
            while not heard:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the observer's, sent first, would be here by now
        specialist = viewers[Role.SPECIALIST][0].participant
        assert heard == [(specialist, '{"from-role": "specialist"}')]
    finally:
        await shutdown(tasks, camera, *(v for _, v in viewers.values()), nurse_client,
                       *(c for c, _ in viewers.values()))
