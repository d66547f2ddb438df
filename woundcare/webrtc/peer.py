"""The pieces of an aiortc peer negotiated over the /ws protocol that every client shares:
the ICE configuration, trickled candidates held until their description, the telestration
data channel, the :class:`Viewer` that answers the camera (a specialist in a test or a
bench), and the loop that feeds a peer its frames.

aiortc has no ICE restart (aiortc#211), so media recovers by a *fresh* peer connection: the
camera offers with the next ``pc`` generation and the viewer replaces its connection when it
sees one.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import Any, Protocol

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame

from signaling.protocol import Answer, EndOfCandidates, IceRestart

from .client import SignalingClient, SignalingClosed


def ice_configuration(
    servers: list[dict[str, Any]], relay_only: bool = False
) -> RTCConfiguration:
    """An RTCConfiguration from an ``/api/ice-servers`` answer. An empty list means host
    candidates only: never aiortc's default public STUN server."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )


async def _add_candidate(pc: RTCPeerConnection, frame: dict[str, Any]) -> None:
    text = frame["candidate"]
    if not text:
        return
    candidate = candidate_from_sdp(text.removeprefix("candidate:"))
    candidate.sdpMid = frame.get("sdpMid")
    candidate.sdpMLineIndex = frame.get("sdpMLineIndex")
    await pc.addIceCandidate(candidate)


TELESTRATION_LABEL = "telestration"
TELESTRATION_CHANNEL_ID = 1


def telestration_channel(pc: RTCPeerConnection) -> RTCDataChannel:
    """The specialist's strokes to the camera (protocol: ``annotation``, ``freeze``).

    Negotiated out of band with a fixed id, and created by both ends as soon as ``pc`` is
    made, before the camera's offer: the offer then carries the data m-section, neither side
    waits for the other's announcement, and no renegotiation is needed."""
    return pc.createDataChannel(TELESTRATION_LABEL, negotiated=True, id=TELESTRATION_CHANNEL_ID, ordered=True)


def connected(pc: RTCPeerConnection) -> bool:
    return pc.iceConnectionState in ("completed", "connected")


class RemoteCandidates:
    """A connection's trickled remote candidates (browsers trickle theirs, protocol §12.1),
    held until its remote description is applied, so that none is lost whatever order the
    frames and our own awaits come in."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self._waiting: list[dict[str, Any]] = []

    async def add(self, frame: dict[str, Any]) -> None:
        if self.pc.remoteDescription is None:
            self._waiting.append(frame)
        else:
            await _add_candidate(self.pc, frame)

    async def flush(self) -> None:
        """After the remote description: add what waited."""
        while self._waiting:
            await _add_candidate(self.pc, self._waiting.pop(0))


class FrameCounter:
    """Consumes a received video track: counts decoded frames, notes the first one."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.last_size: tuple[int, int] | None = None
        self.first_frame_at: float | None = None
        self.first = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with suppress(MediaStreamError):
            while True:
                frame = await self.track.recv()
                # aiortc types recv() for any track; a video track's frames are VideoFrames.
                assert isinstance(frame, VideoFrame)
                self.frames += 1
                self.last_size = (frame.width, frame.height)
                if self.first_frame_at is None:
                    self.first_frame_at = time.perf_counter()
                    self.size = (frame.width, frame.height)
                    self.first.set()

    async def wait(self, count: int = 1) -> None:
        """Until ``count`` frames have been decoded."""
        await self.first.wait()
        while self.frames < count:
            await asyncio.sleep(1 / 60)

    async def stop(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task


class Viewer:
    """A specialist's side: answers the camera's offers, talking back
    through ``microphone`` if given."""

    def __init__(
        self, client: SignalingClient, configuration: RTCConfiguration, microphone: MediaStreamTrack | None = None
    ) -> None:
        self._client = client
        self._configuration = configuration
        self._microphone = microphone
        self._relay = MediaRelay()
        self.pc: RTCPeerConnection | None = None
        self.generation: int | None = None
        self.camera: str | None = None
        """The participant whose offer :attr:`pc` answers: a restarted camera is another one."""
        self._candidates: RemoteCandidates | None = None
        self.counters: list[FrameCounter] = []
        self.video = asyncio.Event()
        """Set when a video track arrives (again, after a fresh connection)."""
        self.channel: RTCDataChannel | None = None
        """The telestration channel of :attr:`pc` (a specialist's strokes go down it), made
        when the camera's offer carries it."""

    @property
    def counter(self) -> FrameCounter | None:
        return self.counters[-1] if self.counters else None

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        generation = frame.get("pc", 0)
        if kind == "offer":
            if self.pc is None or generation != self.generation or frame["from"] != self.camera:
                self.camera = frame["from"]
                await self._replace(generation)
            assert self.pc is not None and self._candidates is not None
            pc, candidates = self.pc, self._candidates
            await pc.setRemoteDescription(RTCSessionDescription(frame["sdp"], "offer"))
            if self.channel is None and "\nm=application " in frame["sdp"]:
                # Only when offered: made without the offer's data section, it would be a
                # transport of its own that gathers (a TURN relay too) and never connects,
                # keeping the connection's state short of "connected".
                self.channel = telestration_channel(pc)
            if self._microphone is not None and not any(s.track for s in pc.getSenders()):
                # After the offer, so that the offered audio transceiver carries it.
                pc.addTrack(self._relay.subscribe(self._microphone, buffered=False))
            await pc.setLocalDescription(await pc.createAnswer())
            await self._client.send(Answer(to=frame["from"], sdp=pc.localDescription.sdp, pc=generation))
            await self._client.send(EndOfCandidates(to=frame["from"], pc=generation))
            await candidates.flush()
        elif kind == "candidate" and self._candidates is not None and (generation, frame["from"]) == (
            self.generation, self.camera
        ):
            await self._candidates.add(frame)

    async def frames(self, count: int = 1) -> FrameCounter:
        """Until the current video track has decoded ``count`` frames; returns its counter."""
        await self.video.wait()
        counter = self.counters[-1]
        await counter.wait(count)
        return counter

    async def request_restart(self, camera: str) -> None:
        await self._client.send(IceRestart(to=camera))

    async def _replace(self, generation: int) -> None:
        """A new connection for ``generation``, registered before the old one is awaited
        closed, so that the candidates behind the offer find it."""
        old = self.pc
        self.video.clear()
        pc = self.pc = RTCPeerConnection(self._configuration)
        self.channel = None
        self.generation = generation
        self._candidates = RemoteCandidates(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self.counters.append(FrameCounter(track))
                self.video.set()

        if old is not None:
            await old.close()

    async def close(self) -> None:
        for counter in self.counters:
            await counter.stop()
        if self.pc is not None:
            await self.pc.close()


class _Closable(Protocol):
    async def close(self) -> None: ...


async def shutdown(tasks: list[asyncio.Task[None]], *parts: _Closable | None) -> None:
    """Stop the pumps, then close peers and clients, in that order."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for part in parts:
        if part is not None:
            await part.close()


class Negotiator(Protocol):
    """A peer that takes the room's frames: the camera's publisher, a viewer."""

    async def handle(self, frame: dict[str, Any]) -> None: ...


async def pump(
    client: SignalingClient,
    peer: Negotiator,
    inbox: asyncio.Queue[dict[str, Any]] | None = None,
) -> None:
    """Feed every frame to ``peer``, then to ``inbox`` for whoever else is listening."""
    try:
        while True:
            frame = await client.recv()
            await peer.handle(frame)
            if inbox is not None:
                inbox.put_nowait(frame)
    except SignalingClosed:
        return
