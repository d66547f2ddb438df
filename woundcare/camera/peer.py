"""The head camera's aiortc peer, negotiated over the /ws protocol.

The camera (:class:`Publisher`) offers one RTCPeerConnection per viewer, all fed from one
source through a ``MediaRelay``; a :class:`~woundcare.webrtc.peer.Viewer` answers. aiortc has
no ICE restart (aiortc#211), so media recovers by a *fresh* peer connection: the publisher
offers with the next ``pc`` generation and the viewer replaces its connection when it sees one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.exceptions import InvalidStateError
from av import VideoFrame

from signaling.protocol import EndOfCandidates, Offer, Role

from ..webrtc.client import SignalingClient, SignalingClosed
from ..webrtc.peer import RemoteCandidates, connected, telestration_channel
from .profile import LinkSample

log = logging.getLogger(__name__)


WATCHDOG_SECONDS = 4.0
"""How long media may take to connect after an answer before the camera offers afresh."""
WATCHDOG_MAX_SECONDS = 30.0


READY_SECONDS = 60.0
"""How old a connection made ahead may be when a viewer takes it: its candidates are no older
(a phone that changed networks meanwhile would offer addresses it no longer has)."""


class _Ready(NamedTuple):
    pc: RTCPeerConnection
    configuration: RTCConfiguration
    made_at: float

    def fits(self, configuration: RTCConfiguration) -> bool:
        """Made with these ICE servers, and no older than :data:`READY_SECONDS`."""
        return self.configuration is configuration and time.monotonic() - self.made_at < READY_SECONDS


class _Link:
    """The connection to one viewer, of one ``pc`` generation."""

    def __init__(self, generation: int, pc: RTCPeerConnection) -> None:
        self.generation = generation
        self.pc = pc
        self.candidates = RemoteCandidates(pc)
        self.watchdog: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        await self.pc.close()


OnChannelMessage = Callable[[str, str | bytes], None]
"""Given a viewer's id and each message on its telestration channel."""


class Publisher:
    """The head camera's side: offers its video (and the nurse's voice, if there is a
    microphone) to every viewer in the room, hands each viewer's voice to ``on_voice`` and
    each message on its telestration channel to ``on_telestration``.

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
        on_telestration: OnChannelMessage | None = None,
        watchdog: float = WATCHDOG_SECONDS,
    ) -> None:
        self._client = client
        self._relay = EncoderFormatRelay()
        self._source = source
        self._microphone = microphone
        self._on_voice = on_voice
        self._on_telestration = on_telestration
        self._watchdog = watchdog
        self._configuration = configuration
        self._wake = asyncio.Event()
        self._links: dict[str, _Link] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._misses: dict[str, int] = {}
        """Watchdog replacements in a row, per viewer."""
        self._ready: _Ready | None = None
        """The next viewer's connection, made ahead (:meth:`_make_ready`)."""
        self._keeper: asyncio.Task[None] | None = None
        self._roles: dict[str, str] = {}
        """Each participant's role in the room, by id (from the join and ``presence``)."""
        self._stopped = False

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
        connections of those who left meanwhile: their watchdogs would offer to nobody. A
        connection for the next viewer is then made ready (:meth:`_make_ready`)."""
        self._roles = {peer["id"]: peer["role"] for peer in self._client.peers}
        viewers = [peer["id"] for peer in self._client.peers if peer["role"] != Role.NURSE.value]
        for viewer in set(self._links) - set(viewers):
            self._close(viewer)
        for viewer in viewers:
            await self.offer(viewer)
        self._make_ready()

    async def offer(self, viewer: str) -> None:
        """(Re)negotiate with ``viewer`` on a fresh peer connection of the next generation.

        The new connection is registered before anything is awaited, so frames of its
        generation always find it, and a second offer made meanwhile takes the generation after.
        A viewer's first connection is the one made ready, if it is: its offer goes at once."""
        previous = self._links.get(viewer)
        ready = self._take_ready() if previous is None else None
        pc = ready or self._connection(self.configuration)
        link = _Link(previous.generation + 1 if previous else 0, pc)
        self._links[viewer] = link
        if previous is not None:
            self._retire(previous)
        log.debug("offering %s a connection %s", viewer, "made ahead" if ready is not None else "made now")
        if ready is None:
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

    def _connection(self, configuration: RTCConfiguration) -> RTCPeerConnection:
        """A peer connection with the camera's tracks, not yet offered."""
        pc = RTCPeerConnection(configuration)
        channel = telestration_channel(pc)  # before the offer, which then carries it
        pc.addTrack(self._relay.subscribe(self._source, buffered=False))
        if self._microphone is not None:
            pc.addTrack(self._relay.subscribe(self._microphone, buffered=False))
        else:
            pc.addTransceiver("audio", direction="recvonly")  # to hear the specialist

        @pc.on("track")
        async def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self._on_voice is not None:
                await self._on_voice(track)

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            # The viewer is looked up when a message comes: a connection made ahead has none yet.
            viewer = next((v for v, link in self._links.items() if link.pc is pc), None)
            if viewer is None or self._on_telestration is None:
                return
            # Only a specialist draws (protocol §6.11), as the server rules for the signaling
            # copy: an observer's channel is not heard.
            if self._roles.get(viewer) != Role.SPECIALIST.value:
                log.warning("telestration message ignored: only a specialist draws")
                return
            self._on_telestration(viewer, data)

        return pc

    def _make_ready(self) -> None:
        """Keep the next viewer's connection made, offer included: aiortc gathers every
        candidate (a TURN allocation among them) inside ``setLocalDescription``, 50-100 ms
        that a viewer's join would otherwise wait for. An offer names no viewer, so any may
        take it."""
        if self._keeper is None and not self._stopped:
            self._keeper = asyncio.create_task(self._keep_ready())

    async def _keep_ready(self) -> None:
        """Make a connection ready whenever there is none, it was made with other ICE servers,
        or it is older than :data:`READY_SECONDS`."""
        while True:
            ready = self._ready
            if ready is not None and ready.fits(self._configuration):
                self._wake.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), READY_SECONDS - (time.monotonic() - ready.made_at))
                continue
            configuration = self._configuration
            pc: RTCPeerConnection | None = None
            try:
                pc = self._connection(configuration)
                await pc.setLocalDescription(await pc.createOffer())
            except Exception:
                if pc is not None:
                    self._retire_pc(pc)
                log.warning("could not make a connection ahead; the next viewer waits for one", exc_info=True)
                await asyncio.sleep(READY_SECONDS)
                continue
            except asyncio.CancelledError:
                if pc is not None:
                    self._retire_pc(pc)
                raise
            stale, self._ready = self._ready, _Ready(pc, configuration, time.monotonic())
            if stale is not None:
                self._retire_pc(stale.pc)

    def _take_ready(self) -> RTCPeerConnection | None:
        """The connection made ready, if there is one fit to offer now; another is then made."""
        ready, self._ready = self._ready, None
        self._wake.set()
        if ready is None:
            return None
        if not ready.fits(self._configuration):
            self._retire_pc(ready.pc)
            return None
        return ready.pc

    @property
    def configuration(self) -> RTCConfiguration:
        """For the next peer connections; the camera renews it after a reconnect and before
        TURN credentials expire."""
        return self._configuration

    @configuration.setter
    def configuration(self, configuration: RTCConfiguration) -> None:
        self._configuration = configuration
        self._wake.set()  # the connection made ahead has the old servers: make it again

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "presence":
            peer = frame["participant"]
            if peer["role"] == Role.NURSE.value:
                return
            if frame["state"] == "joined":
                self._roles[peer["id"]] = peer["role"]
                await self.offer(peer["id"])
            elif frame["state"] == "left":
                self._roles.pop(peer["id"], None)
                self._close(peer["id"])
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
        if connected(link.pc):
            self._misses.pop(viewer, None)
            return
        log.info("media not connected %.0f s after the answer; offering afresh", wait)
        self._misses[viewer] = misses + 1
        link.watchdog = None  # offer() closes this link: it must not cancel us
        try:
            await self.offer(viewer)
        except (SignalingClosed, ConnectionError, RuntimeError):
            log.info("could not offer afresh: signaling is down; the reconnect offers again")

    def _close(self, viewer: str) -> None:
        link = self._links.pop(viewer, None)
        self._misses.pop(viewer, None)
        if link is not None:
            self._retire(link)

    def _retire(self, link: _Link) -> None:
        """Close a replaced connection in the background. Closing waits for TURN to confirm the
        relay's release, half a minute when TURN no longer knows it (after a freeze or a network
        change): meanwhile the viewer must get its new offer, and the socket must be read, or
        the server's heartbeat drops the camera for missing pongs."""
        self._background(link.close())

    def _retire_pc(self, pc: RTCPeerConnection) -> None:
        self._background(pc.close())

    def _background(self, closing: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(closing)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self, timeout: float = 5.0) -> None:
        """Close every connection; those still closing after ``timeout`` are left behind (TURN
        frees a relay it was not told about when its lifetime ends)."""
        self._stopped = True
        if self._keeper is not None:
            keeper, self._keeper = self._keeper, None
            keeper.cancel()
            with suppress(asyncio.CancelledError):
                await keeper  # a connection it was making is closed with the others below
        if self._ready is not None:
            self._retire_pc(self._ready.pc)
            self._ready = None
        for viewer in list(self._links):
            self._close(viewer)
        if self._closing:
            _, pending = await asyncio.wait(self._closing, timeout=timeout)
            if pending:
                log.warning("%d peer connection(s) did not close within %.0f s", len(pending), timeout)


class EncoderFormatRelay(MediaRelay):
    """A ``MediaRelay`` whose subscribers get video frames already in yuv420p, converted once.

    The relay hands one frame object to every viewer's encoder, and aiortc runs encoders in
    threads; PyAV keeps one SwsContext per frame, so two encoders converting the same frame at
    once corrupt memory: the camera crashed with two viewers (a specialist and a second one).
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
