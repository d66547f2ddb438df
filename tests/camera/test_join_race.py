"""``woundcare camera`` loses no trickled candidate, and recovers a connection whose media
does not connect (issue 14).

The camera runs in this process (so that its ICE-server fetch can be held back and its
``addIceCandidate`` calls counted) against the real server; the specialist is an aiortc
viewer that trickles its candidates the way a browser does: its answer carries none, each
follows as a ``candidate`` frame.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from aiortc.sdp import candidate_to_sdp

from signaling.protocol import Answer, Candidate, ClientMessage, IceRestart, Role
from tests.camera.scene import Visit, home_visit
from tests.server import RunningServer
from woundcare.webrtc.client import SignalingClient, SignalingClosed
from woundcare.camera.device import Camera, DeviceApi, DeviceOptions
from woundcare.webrtc.peer import Viewer, ice_configuration

FETCH_DELAY_SECONDS = 1.5


def without_candidates(sdp: str) -> tuple[str, list[str], str | None]:
    """The SDP without its candidate lines; the candidates (once each); the first mid."""
    lines = sdp.splitlines()
    candidates = list(dict.fromkeys(line[2:] for line in lines if line.startswith("a=candidate:")))
    mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
    kept = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    return "\r\n".join(kept) + "\r\n", candidates, mid


class TricklingViewer:
    """A specialist's aiortc :class:`Viewer` that trickles like a browser. For the ``pc``
    generations in ``blind`` it keeps its candidates to itself and ignores the camera's,
    so that media cannot connect."""

    def __init__(self, client: SignalingClient, blind: frozenset[int] = frozenset()) -> None:
        self.client = client
        self.viewer = Viewer(client, ice_configuration([]))
        self.blind = blind
        self.sent: list[str] = []
        self.offers: list[dict[str, Any]] = []
        self._send = client.send
        client.send = self._trickle  # type: ignore[method-assign]

    async def _trickle(self, message: ClientMessage | dict[str, Any]) -> None:
        if not isinstance(message, Answer):
            return await self._send(message)
        sdp, candidates, mid = without_candidates(message.sdp)
        await self._send(message.model_copy(update={"sdp": sdp}))
        if message.pc in self.blind:
            return
        for candidate in candidates:
            await self._send(Candidate(to=message.to, candidate=candidate, sdp_mid=mid, sdp_mline_index=0, pc=message.pc))
            self.sent.append(candidate.removeprefix("candidate:"))

    async def run(self) -> None:
        with suppress(SignalingClosed):
            while True:
                frame = await self.client.recv()
                if frame["type"] == "offer":
                    self.offers.append(frame)
                    if frame["pc"] in self.blind:
                        frame = {**frame, "sdp": without_candidates(frame["sdp"])[0]}
                await self.viewer.handle(frame)


@pytest.fixture
def added(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every remote candidate an aiortc peer connection in this process adds (only the
    camera's: the viewer is never sent any)."""
    seen: list[str] = []
    native = RTCPeerConnection.addIceCandidate

    async def add(self: RTCPeerConnection, candidate: Any) -> None:
        await native(self, candidate)
        if candidate is not None:
            seen.append(candidate_to_sdp(candidate))

    monkeypatch.setattr(RTCPeerConnection, "addIceCandidate", add)
    yield seen


@pytest.fixture
def slow_ice_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The camera's ICE-server fetch answers late."""
    native = DeviceApi.ice_servers

    async def late(self: DeviceApi) -> dict[str, Any]:
        await asyncio.sleep(FETCH_DELAY_SECONDS)
        return await native(self)

    monkeypatch.setattr(DeviceApi, "ice_servers", late)


@asynccontextmanager
async def camera_in_process(visit: Visit, tmp_path: Path) -> AsyncIterator[Camera]:
    async with aiohttp.ClientSession() as session:
        options = DeviceOptions(
            server=visit.server.url, token=visit.device_token, patient=visit.patient,
            width=320, height=240, consent=frozenset({"video"}), queue_dir=tmp_path / "queue",
        )
        camera = Camera(options, session)
        running = asyncio.create_task(camera.run())
        try:
            yield camera
        finally:
            camera.stop.set()
            code = await asyncio.wait_for(running, 30)
        assert code == 0


async def join_viewer(visit: Visit, blind: frozenset[int] = frozenset()) -> tuple[TricklingViewer, asyncio.Task[None]]:
    """The specialist in the room (the camera may come later); frames read from then on."""
    async with asyncio.timeout(30):
        while not (queue := (await visit.spes.json("GET", "/api/consultations/queue"))["consultations"]):
            await asyncio.sleep(0.1)
    consultation = queue[0]["id"]
    token = (await visit.spes.json("POST", f"/api/consultations/{consultation}/join-token"))["token"]
    visit.specialist = SignalingClient(visit.server.url)
    trickling = TricklingViewer(visit.specialist, blind)
    visit.viewer = trickling.viewer  # closed by home_visit
    await visit.specialist.join(consultation, Role.SPECIALIST, token)
    reading = asyncio.create_task(trickling.run())
    visit.tasks.append(reading)
    return trickling, reading


async def until(condition: Any, timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(what) from None


@pytest.mark.usefixtures("loopback_ice", "slow_ice_servers")
async def test_the_camera_adds_every_candidate_a_trickling_viewer_sends(
    server: RunningServer, tmp_path: Path, added: list[str]
) -> None:
    async with home_visit(server, tmp_path) as visit, camera_in_process(visit, tmp_path):
        trickling, _ = await join_viewer(visit)
        async with asyncio.timeout(30):
            await trickling.viewer.frames(5)
        await until(lambda: Counter(added) == Counter(trickling.sent) and added, 10,
                    f"the camera added {added} of the candidates {trickling.sent}")
        # A fresh connection on request (§12.3): its candidates are added too.
        await visit.send(IceRestart(to=trickling.offers[0]["from"]))
        await until(lambda: trickling.viewer.generation == 1, 30, "the camera offers generation 1")
        async with asyncio.timeout(30):
            await trickling.viewer.frames(5)
        await until(lambda: Counter(added) == Counter(trickling.sent) and len(trickling.sent) > 1, 10,
                    f"the camera added {added} of the candidates {trickling.sent}")


@pytest.mark.usefixtures("loopback_ice")
async def test_the_camera_offers_afresh_when_media_does_not_connect(
    server: RunningServer, tmp_path: Path, added: list[str]
) -> None:
    """Generation 0 gets no candidates either way, so its ICE never connects; nobody asks for
    a restart, and the camera's watchdog replaces the connection by itself."""
    async with home_visit(server, tmp_path) as visit, camera_in_process(visit, tmp_path):
        trickling, _ = await join_viewer(visit, blind=frozenset({0}))
        await until(lambda: len(trickling.offers) >= 2, 30, "the camera offers again by itself")
        async with asyncio.timeout(30):
            counter = await trickling.viewer.frames(5)
        assert trickling.viewer.generation == trickling.offers[-1]["pc"] >= 1
        assert counter.frames >= 5
        assert added and Counter(added) == Counter(trickling.sent)
