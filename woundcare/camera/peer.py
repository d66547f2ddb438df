"""aiortc peers negotiated over the /ws protocol.

The camera (:class:`Publisher`) offers one RTCPeerConnection per viewer, all fed from one
source through a ``MediaRelay``. A :class:`Viewer` answers. aiortc has no ICE restart
(aiortc#211), so media recovers by a *fresh* peer connection: the publisher offers with the
next ``pc`` generation and the viewer replaces its connection when it sees one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamError
from aiortc.contrib.media import MediaRelay
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame

from signaling.protocol import Answer, EndOfCandidates, IceRestart, Offer, Role

from .client import SignalingClient, SignalingClosed
from .profile import LinkSample

log = logging.getLogger(__name__)


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


def _connected(pc: RTCPeerConnection) -> bool:
    return pc.iceConnectionState in ("completed", "connected")


class _RemoteCandidates:
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


WATCHDOG_SECONDS = 4.0
"""How long media may take to connect after an answer before the camera offers afresh."""
WATCHDOG_MAX_SECONDS = 30.0


class _Link:
    """The connection to one viewer, of one ``pc`` generation."""

    def __init__(self, generation: int, pc: RTCPeerConnection) -> None:
        self.generation = generation
        self.pc = pc
        self.candidates = _RemoteCandidates(pc)
        self.watchdog: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        await self.pc.close()


class Publisher:
    """The head camera's side: offers its video (and the nurse's voice, if there is a
    microphone) to every viewer in the room, and hands each viewer's voice to ``on_voice``.

    A connection whose media has not connected ``watchdog`` seconds after its answer is
    replaced by a fresh one (protocol §12.6); each such replacement that did not help doubles
    the wait."""

    def __init__(
        self,
        client: SignalingClient,
        source: MediaStreamTrack,
        configuration: RTCConfiguration,
        *,
        microphone: MediaStreamTrack | None = None,
        on_voice: Callable[[MediaStreamTrack], Awaitable[None]] | None = None,
        watchdog: float = WATCHDOG_SECONDS,
    ) -> None:
        self._client = client
        self._relay = EncoderFormatRelay()
        self._source = source
        self._microphone = microphone
        self._on_voice = on_voice
        self._watchdog = watchdog
        self.configuration = configuration
        """For the next peer connections; the camera renews it after a reconnect."""
        self._links: dict[str, _Link] = {}
        self._misses: dict[str, int] = {}
        """Watchdog replacements in a row, per viewer."""

    def connection(self, viewer: str) -> RTCPeerConnection | None:
        link = self._links.get(viewer)
        return link.pc if link else None

    def senders(self) -> list[RTCRtpSender]:
        return [sender for link in self._links.values() for sender in link.pc.getSenders()]

    async def link_sample(self) -> LinkSample | None:
        """The worst link among the viewers, from their latest receiver reports."""
        samples = []
        for link in list(self._links.values()):
            for stats in (await link.pc.getStats()).values():
                if stats.type == "remote-inbound-rtp" and stats.kind == "video":
                    samples.append(LinkSample(stats.fractionLost / 256, stats.roundTripTime))
        if not samples:
            return None
        rtts = [s.rtt for s in samples if s.rtt is not None]
        return LinkSample(max(s.loss for s in samples), max(rtts) if rtts else None)

    async def start(self) -> None:
        """Offer to the viewers in the room (after our own join or rejoin), and drop the
        connections of those who left meanwhile: their watchdogs would offer to nobody."""
        viewers = [peer["id"] for peer in self._client.peers if peer["role"] != Role.NURSE.value]
        for viewer in set(self._links) - set(viewers):
            await self._close(viewer)
        for viewer in viewers:
            await self.offer(viewer)

    async def offer(self, viewer: str) -> None:
        """(Re)negotiate with ``viewer`` on a fresh peer connection of the next generation.

        The new connection is registered before anything is awaited, so frames of its
        generation always find it, and a second offer made meanwhile takes the generation after."""
        previous = self._links.get(viewer)
        link = _Link(previous.generation + 1 if previous else 0, RTCPeerConnection(self.configuration))
        self._links[viewer] = link
        pc = link.pc
        pc.addTrack(self._relay.subscribe(self._source, buffered=False))
        if self._microphone is not None:
            pc.addTrack(self._relay.subscribe(self._microphone, buffered=False))
        else:
            pc.addTransceiver("audio", direction="recvonly")  # to hear the specialist

        @pc.on("track")
        async def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self._on_voice is not None:
                await self._on_voice(track)

        if previous is not None:
            await previous.close()
        try:
            await pc.setLocalDescription(await pc.createOffer())
        except InvalidStateError:
            if self._links.get(viewer) is link:
                raise
            return  # replaced (and closed) while we gathered
        if self._links.get(viewer) is not link:
            return
        await self._client.send(Offer(to=viewer, sdp=pc.localDescription.sdp, pc=link.generation))
        await self._client.send(EndOfCandidates(to=viewer, pc=link.generation))

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "presence":
            peer = frame["participant"]
            if peer["role"] == Role.NURSE.value:
                return
            if frame["state"] == "joined":
                await self.offer(peer["id"])
            elif frame["state"] == "left":
                await self._close(peer["id"])
        elif kind in ("answer", "candidate"):
            viewer = frame["from"]
            link = self._links.get(viewer)
            if link is None or link.generation != frame.get("pc", 0):
                return  # for a connection we have already replaced
            if kind == "candidate":
                await link.candidates.add(frame)
            elif link.pc.remoteDescription is None:
                await link.pc.setRemoteDescription(RTCSessionDescription(frame["sdp"], "answer"))
                await link.candidates.flush()
                link.watchdog = asyncio.create_task(self._watch(viewer, link))
        elif kind == "ice_restart":
            await self.offer(frame["from"])

    async def _watch(self, viewer: str, link: _Link) -> None:
        misses = self._misses.get(viewer, 0)
        wait = min(self._watchdog * 2**misses, WATCHDOG_MAX_SECONDS)
        await asyncio.sleep(wait)
        if self._links.get(viewer) is not link:
            return
        if _connected(link.pc):
            self._misses.pop(viewer, None)
            return
        log.info("media not connected %.0f s after the answer; offering afresh", wait)
        self._misses[viewer] = misses + 1
        link.watchdog = None  # offer() closes this link: it must not cancel us
        try:
            await self.offer(viewer)
        except (SignalingClosed, ConnectionError, RuntimeError):
            log.info("could not offer afresh: signaling is down; the reconnect offers again")

    async def _close(self, viewer: str) -> None:
        link = self._links.pop(viewer, None)
        self._misses.pop(viewer, None)
        if link is not None:
            await link.close()

    async def close(self) -> None:
        for viewer in list(self._links):
            await self._close(viewer)


OnFrame = Callable[[VideoFrame], None]
"""Called with each decoded frame, on the event loop: must not block (the recorder queues it)."""


class FrameCounter:
    """Consumes a received video track: counts decoded frames, notes the first one."""

    def __init__(self, track: MediaStreamTrack, on_frame: OnFrame | None = None) -> None:
        self.track = track
        self._on_frame = on_frame
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
                self.frames += 1
                self.last_size = (frame.width, frame.height)
                if self.first_frame_at is None:
                    self.first_frame_at = time.perf_counter()
                    self.size = (frame.width, frame.height)
                    self.first.set()
                if self._on_frame is not None:
                    self._on_frame(frame)

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
    """A specialist's (or recorder's) side: answers the camera's offers, talking back
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
        self._candidates: _RemoteCandidates | None = None
        self.counters: list[FrameCounter] = []
        self.video = asyncio.Event()
        """Set when a video track arrives (again, after a fresh connection)."""

    on_frame: OnFrame | None = None
    """Given every decoded video frame (the recorder's encoder takes them this way)."""

    @property
    def counter(self) -> FrameCounter | None:
        return self.counters[-1] if self.counters else None

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        generation = frame.get("pc", 0)
        if kind == "offer":
            if self.pc is None or generation != self.generation:
                await self._replace(generation)
            assert self.pc is not None and self._candidates is not None
            pc, candidates = self.pc, self._candidates
            await pc.setRemoteDescription(RTCSessionDescription(frame["sdp"], "offer"))
            if self._microphone is not None and not any(s.track for s in pc.getSenders()):
                # After the offer, so that the offered audio transceiver carries it.
                pc.addTrack(self._relay.subscribe(self._microphone, buffered=False))
            await pc.setLocalDescription(await pc.createAnswer())
            await self._client.send(Answer(to=frame["from"], sdp=pc.localDescription.sdp, pc=generation))
            await self._client.send(EndOfCandidates(to=frame["from"], pc=generation))
            await candidates.flush()
        elif kind == "candidate" and self._candidates is not None and generation == self.generation:
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
        self.generation = generation
        self._candidates = _RemoteCandidates(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self.counters.append(FrameCounter(track, self.on_frame))
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


async def pump(
    client: SignalingClient,
    peer: Publisher | Viewer,
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


class EncoderFormatRelay(MediaRelay):
    """A ``MediaRelay`` whose subscribers get video frames already in yuv420p, converted once.

    The relay hands one frame object to every viewer's encoder, and aiortc runs encoders in
    threads; PyAV keeps one SwsContext per frame, so two encoders converting the same frame at
    once corrupt memory: the camera crashed with two viewers (a specialist and the recorder).
    Encoders pass a yuv420p frame through without converting it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._converted: dict[MediaStreamTrack, _EncoderFormat] = {}

    def subscribe(self, track: MediaStreamTrack, buffered: bool = True) -> MediaStreamTrack:
        if track.kind == "video":
            if track not in self._converted:
                self._converted[track] = _EncoderFormat(track)
            track = self._converted[track]
        return super().subscribe(track, buffered)


class _EncoderFormat(MediaStreamTrack):
    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source

    async def recv(self) -> Any:
        frame = await self._source.recv()
        if isinstance(frame, VideoFrame) and frame.format.name != "yuv420p":
            # In a thread, as the encoders did: a 1080p conversion would stall the event loop.
            return await asyncio.to_thread(frame.reformat, format="yuv420p")
        return frame
