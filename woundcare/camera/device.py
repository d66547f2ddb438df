"""The head camera as a program: ``woundcare camera``.

Logs in with its device token, starts (or joins) a consultation, joins ``/ws`` as the
nurse, publishes video to every viewer, answers ``snapshot_request`` with a full-resolution
still uploaded through the on-disk queue (:mod:`.snapshots`), shows the specialist's strokes
on the device's display (:mod:`.telestration`, :mod:`.overlay`), and reconnects by itself:
the socket is resumed with backoff and every viewer gets a fresh peer connection, since
aiortc has no ICE restart. Runs until SIGINT/SIGTERM or until the consultation ends.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import signal
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer
from av import VideoFrame
from av.video.reformatter import VideoReformatter

from aiortc import RTCConfiguration

from signaling.protocol import ErrorCode, Leave, Role, VideoMode, recording_frame

from ..webrtc.client import SignalingClient, SignalingClosed
from ..webrtc.peer import ice_configuration
from . import audio
from ..errors import WoundcareError
from .adaptation import Adaptation
from .overlay import EventLines, OverlayFile
from .peer import Publisher
from .profile import ProfileTrack
from .snapshots import SnapshotQueue, SnapshotUploader
from .synthetic import SyntheticVideoTrack
from .telestration import Telestration
from .turn import TurnTransport, prefer

log = logging.getLogger(__name__)

TOKEN_ENV = "WOUNDCARE_DEVICE_TOKEN"
CONSENT_KINDS = frozenset({"video", "snapshots", "recording"})
ROLE_TAKEN_WAIT_SECONDS = 180.0
"""How long a restarted camera waits for its earlier run's place: well past the server's
grace window (60 s by default), after which the place is another device's in use."""
_FINAL = frozenset({ErrorCode.ENDED.value, ErrorCode.REVOKED.value})
"""Error codes after which reconnecting is pointless."""


class DeviceError(WoundcareError):
    """The camera cannot go on (bad token, unknown patient, consultation ended...)."""

    def __init__(self, message: str, code: str | None = None, consultation: str | None = None) -> None:
        super().__init__(message)
        # The server's error code when it gave one.
        self.code = code or "device_error"
        self.consultation = consultation
        """The consultation the server named in its answer (``consultation_live``)."""


@dataclass(frozen=True)
class DeviceOptions:
    server: str
    token: str = field(repr=False)
    consultation: str | None = None
    """Join this consultation; else start one for :attr:`patient`."""
    patient: str | None = None
    """A patient pseudonym to start a consultation for."""
    source: str = "synthetic"
    """``synthetic``, a media file, or a V4L2 device such as ``/dev/video0``."""
    width: int = 1920
    height: int = 1080
    consent: frozenset[str] = frozenset()
    """Consent kinds the patient gave, to record before joining."""
    queue_dir: Path = Path("var/camera-queue")
    """Where stills wait for upload; survives restarts."""
    video_mode: VideoMode = VideoMode.AUTO
    """The video profile at start; a specialist may change it during the call."""
    turn_transport: TurnTransport = TurnTransport.AUTO
    """How to reach TURN; ``auto`` probes UDP before each connection and falls back to TCP/TLS."""
    speaker: str | None = None
    """Where the specialist's voice plays (``alsa:default``...); ``None``: not played."""
    microphone: str | None = None
    """The nurse's microphone (``alsa:default``...); ``None``: video only."""
    overlay: Path | None = None
    """A PNG of the frame's size that shows the specialist's strokes, replaced at each change."""
    overlay_events: bool = False
    """Print each applied telestration message, and each start and end of a recording, as a JSON
    line on stdout."""

    def __post_init__(self) -> None:
        if (self.consultation is None) == (self.patient is None):
            raise ValueError("give exactly one of 'consultation' and 'patient'")
        if not self.token.startswith("wcd_"):
            raise ValueError("'token' must be a device token (wcd_...)")
        if unknown := self.consent - CONSENT_KINDS:
            raise ValueError(f"'consent' must be in {sorted(CONSENT_KINDS)} (got {sorted(unknown)})")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"size too small (got {self.width}x{self.height})")
        audio.check(self.speaker)
        audio.check(self.microphone)


class DeviceApi:
    """The few HTTP calls the camera makes, with its bearer token."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._session.request(
            method, self._base_url + path, json=body, headers=self._headers
        ) as response:
            data = await response.json(content_type=None) if response.content_length != 0 else None
            if response.status >= 400:
                error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
                raise DeviceError(
                    f"{method} {path.split('/')[2]}: {response.status} {error.get('code')}",
                    error.get("code"),
                    error.get("consultation"),
                )
            return data

    async def start(self, patient: str) -> str:
        """A new consultation for ``patient``, or the one this nurse has open for them already:
        a camera restarted mid-call goes back into its call instead of splitting the record."""
        try:
            return str((await self.json("POST", "/api/consultations", {"patient": patient}))["id"])
        except DeviceError as error:
            if error.code == "consultation_live" and error.consultation:
                return error.consultation
            raise

    async def record_consent(self, consultation: str, kinds: frozenset[str]) -> None:
        await self.json("POST", f"/api/consultations/{consultation}/consents", {k: True for k in sorted(kinds)})

    async def join_token(self, consultation: str) -> str:
        return str((await self.json("POST", f"/api/consultations/{consultation}/join-token"))["token"])

    async def ice_servers(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.json("GET", "/api/ice-servers")
        return answer


class StillTap(MediaStreamTrack):
    """Passes a video source through unchanged and keeps its last frame, at the source's
    full resolution (the encoder scales what it sends; the still is never scaled)."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source
        self.last: VideoFrame | None = None
        self._fresh = asyncio.Event()

    async def recv(self) -> VideoFrame:
        frame = await self._source.recv()
        if isinstance(frame, VideoFrame):
            self.last = frame
            self._fresh.set()
        return frame  # type: ignore[return-value]

    async def still(self, timeout: float = 5.0) -> bytes:
        """The last frame as JPEG; waits for a first frame if none has passed yet."""
        if self.last is None:
            async with asyncio.timeout(timeout):
                await self._fresh.wait()
        assert self.last is not None
        return await asyncio.to_thread(_jpeg, self.last)

    def stop(self) -> None:
        super().stop()
        self._source.stop()


def _jpeg(frame: VideoFrame) -> bytes:
    # Converted by a reformatter of its own: ``frame.to_image()`` would use the frame's, the
    # one the encoders' thread may be converting that very frame with (when the profile does
    # not scale it), and two threads in one SwsContext corrupt memory (EncoderFormatRelay).
    # Seen: at 640x360 (not scaled) a still asked for sometimes never reached the queue.
    rgb = VideoReformatter().reformat(frame, format="rgb24")
    out = io.BytesIO()
    rgb.to_image().save(out, format="JPEG", quality=92)
    return out.getvalue()


def open_source(spec: str, width: int, height: int) -> tuple[MediaStreamTrack, MediaPlayer | None]:
    """The video track for ``spec``, and the player that owns it (``None`` for synthetic)."""
    if spec == "synthetic":
        return SyntheticVideoTrack(width, height), None
    if spec.startswith("/dev/video"):
        player = MediaPlayer(spec, format="v4l2", options={"video_size": f"{width}x{height}"})
    else:
        if not Path(spec).is_file():
            raise DeviceError(f"no such source: {spec}")
        player = MediaPlayer(spec, loop=True)
    if player.video is None:
        raise DeviceError(f"source has no video: {spec}")
    return player.video, player


class Camera:
    """One run of the device: setup, the signaling loop, reconnects, shutdown."""

    def __init__(
        self,
        options: DeviceOptions,
        session: aiohttp.ClientSession,
        *,
        first_backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> None:
        self.options = options
        self._api = DeviceApi(session, options.server, options.token)
        self._session = session
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self.uploader = SnapshotUploader(session, options.server, options.token, SnapshotQueue(options.queue_dir))
        self.consultation: str | None = options.consultation
        self.stop = asyncio.Event()
        self._ice_ttl = 3600.0
        self._tasks: set[asyncio.Task[None]] = set()
        self.telestration = Telestration()
        self._events: EventLines | None = None
        """With ``--overlay-events``: the JSON lines for the device's display program."""

    async def run(self) -> int:
        """Exit code: 0 when stopped or the consultation ended, 1 when the device was refused."""
        track: ProfileTrack | None = None
        player: MediaPlayer | None = None
        microphone: MediaPlayer | None = None
        speaker = audio.Speaker(self.options.speaker) if self.options.speaker else None
        client = SignalingClient(self.options.server)  # its own session: no request timeouts on /ws
        publisher: Publisher | None = None
        uploading = asyncio.create_task(self.uploader.run())
        # Asked at once, so that the TURN probe overlaps the setup instead of delaying the join.
        ice = asyncio.create_task(self._ice())
        try:
            if self.consultation is None:
                assert self.options.patient is not None
                self.consultation = await self._api.start(self.options.patient)
            log.info("consultation %s", self.consultation)
            if self.options.consent:
                await self._api.record_consent(self.consultation, self.options.consent)
            source, player = open_source(self.options.source, self.options.width, self.options.height)
            tap = StillTap(source)
            track = ProfileTrack(tap)
            voice = None
            if self.options.microphone:
                voice, microphone = audio.open_microphone(self.options.microphone)
            self._show_telestration()
            publisher = Publisher(
                client, track, await ice, microphone=voice, on_voice=speaker.play if speaker else None,
                on_telestration=self.telestration.from_channel,
            )
            adaptation = Adaptation(client, publisher, track, mode=self.options.video_mode)
            if not await self._join(client):
                return 0
            await publisher.start()
            await adaptation.joined()
            self._spawn(adaptation.run())
            self._spawn(self._renew_ice(publisher))
            log.info("joined as nurse; %d viewer(s) waiting", len(client.peers))
            return await self._serve(client, publisher, adaptation, tap)
        except DeviceError as exc:
            log.error("camera stopped: %s", exc)
            return 0 if exc.code == ErrorCode.ENDED.value else 1
        finally:
            for task in [*self._tasks, uploading, ice]:
                task.cancel()
            await asyncio.gather(*self._tasks, uploading, ice, return_exceptions=True)
            if client.connected and self.stop.is_set():
                with suppress(Exception):
                    await client.send(Leave())
            if publisher is not None:
                await publisher.close()
            if track is not None:
                track.stop()
            if player is not None and player.audio is not None:
                player.audio.stop()
            if microphone is not None and microphone.audio is not None:
                microphone.audio.stop()
            if speaker is not None:
                await speaker.stop()
            await client.close()

    def _show_telestration(self) -> None:
        """Start what shows the specialist's strokes on the device, as the options ask."""
        if self.options.overlay is not None:
            overlay = OverlayFile(self.options.overlay, (self.options.width, self.options.height), self.telestration.board)
            self.telestration.on_change.append(overlay.changed)
            self._spawn(overlay.run())
        if self.options.overlay_events:
            events = self._events = EventLines(sys.stdout)
            self.telestration.listeners.append(events)
            self._spawn(events.run())

    async def _join(self, client: SignalingClient) -> bool:
        """Join as the nurse; False if stopped meanwhile. A camera restarted after a crash or a
        power cut finds its place still held for the run that died, whose resume token died
        with it: it tries again until the server's grace window frees the place. A place held
        longer is someone's in use (the nurse's phone page in the same consultation): stop."""
        assert self.consultation is not None
        backoff = self._first_backoff
        deadline = asyncio.get_running_loop().time() + ROLE_TAKEN_WAIT_SECONDS
        while not self.stop.is_set():
            try:
                await client.join(self.consultation, Role.NURSE, await self._api.join_token(self.consultation))
                return True
            except SignalingClosed as exc:
                code = (exc.error or {}).get("code")
                if code != ErrorCode.ROLE_TAKEN.value or asyncio.get_running_loop().time() > deadline:
                    raise DeviceError(f"join refused: {code}", code) from exc
            await client.drop()
            log.warning("the camera's place is still held (an earlier run?); next try in %.1f s", backoff)
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), backoff)
            backoff = min(backoff * 2, self._max_backoff)
        return False

    async def _ice(self) -> RTCConfiguration:
        """Fresh TURN credentials, with the TURN transport that gets through from here."""
        ice = await self._api.ice_servers()
        self._ice_ttl = float(ice.get("ttlSeconds") or self._ice_ttl)
        servers = await prefer(ice["iceServers"], self.options.turn_transport)
        return ice_configuration(servers, ice.get("iceTransportPolicy") == "relay")

    async def _renew_ice(self, publisher: Publisher) -> None:
        """New credentials at half their lifetime (as the web pages do), so that a viewer who
        joins late in a long call gets a connection TURN still accepts."""
        while True:
            await asyncio.sleep(self._ice_ttl / 2)
            try:
                publisher.configuration = await self._ice()
                log.info("TURN credentials renewed")
            except (aiohttp.ClientError, OSError, DeviceError) as exc:
                log.warning("could not renew TURN credentials (%s); trying again soon", type(exc).__name__)
                await asyncio.sleep(min(30.0, self._ice_ttl / 10))

    async def _serve(
        self, client: SignalingClient, publisher: Publisher, adaptation: Adaptation, tap: StillTap
    ) -> int:
        stopping = asyncio.create_task(self.stop.wait())
        try:
            while True:
                reading = asyncio.create_task(self._read(client, publisher, adaptation, tap))
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    reading.cancel()
                    with suppress(asyncio.CancelledError, SignalingClosed):
                        await reading
                    log.info("camera stopping on signal")
                    return 0
                try:
                    reading.result()
                except SignalingClosed as exc:
                    code = (exc.error or {}).get("code")
                    if code == ErrorCode.ENDED.value:
                        log.info("consultation ended")
                        return 0
                    if code in _FINAL:
                        log.error("camera refused: %s", code)
                        return 1
                    log.warning("signaling lost (close %s); reconnecting", exc.close_code)
                if not await self._reconnect(client, publisher, adaptation, stopping):
                    return 0
        finally:
            stopping.cancel()

    async def _read(
        self, client: SignalingClient, publisher: Publisher, adaptation: Adaptation, tap: StillTap
    ) -> None:
        while True:
            frame = await client.recv()
            kind = frame.get("type")
            if kind in ("video_profile", "presence"):
                await adaptation.handle(frame)
            if kind == "video_profile":
                continue
            if kind in ("annotation", "freeze"):
                self.telestration.from_signaling(frame)
            elif kind == "recording":
                self._recorded(frame.get("state") == "on")
            elif kind == "snapshot_request":
                log.info("snapshot requested (%s)", frame["id"])
                self._spawn(self._snapshot(tap, frame["id"]))
            elif kind == "error":
                log.warning("signaling error %s", frame.get("code"))
                if frame.get("code") in _FINAL:
                    continue  # the server closes the socket next; SignalingClosed carries it
            else:
                await publisher.handle(frame)

    def _recorded(self, on: bool) -> None:
        """The call is (no longer) recorded (protocol §7.6): the nurse must be able to tell the
        patient, so it is logged and, for the display program, an event line."""
        log.info("the call is being recorded" if on else "the call is no longer recorded")
        if self._events is not None:
            self._events(recording_frame(on))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _snapshot(self, tap: StillTap, request: str) -> None:
        try:
            jpeg = await tap.still()
        except TimeoutError:
            log.warning("no frame for snapshot request %s", request)
            return
        assert self.consultation is not None
        self.uploader.submit(self.consultation, request, jpeg)
        self.telestration.keep_still(request, jpeg)  # what a freeze on this request shows

    async def _reconnect(
        self, client: SignalingClient, publisher: Publisher, adaptation: Adaptation, stopping: asyncio.Task[Any]
    ) -> bool:
        """Take our place back (resume, else a fresh join), then offer every viewer a fresh
        peer connection. False if stopped meanwhile; raises DeviceError when refused."""
        assert self.consultation is not None
        backoff = self._first_backoff
        while not stopping.done():
            await client.drop()
            try:
                try:
                    await client.resume()
                except SignalingClosed as exc:
                    if (exc.error or {}).get("code") != ErrorCode.RESUME_INVALID.value:
                        raise
                    log.info("resume refused; joining afresh")
                    await client.drop()
                    await client.join(self.consultation, Role.NURSE, await self._api.join_token(self.consultation))
                # The network may have changed (and credentials expired): ask again.
                publisher.configuration = await self._ice()
            except (aiohttp.ClientError, OSError, SignalingClosed, DeviceError) as exc:
                code = (exc.error or {}).get("code") if isinstance(exc, SignalingClosed) else getattr(exc, "code", None)
                if code in _FINAL:
                    raise DeviceError(f"rejoin refused: {code}", code) from exc
                delay = backoff * random.uniform(0.8, 1.2)
                log.warning("reconnect failed (%s); next try in %.1f s", code or type(exc).__name__, delay)
                with suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), delay)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            log.info("signaling back; offering fresh peer connections")
            await publisher.start()
            await adaptation.joined()
            return True
        return False


def loopback_only() -> None:
    """TEST ONLY: make aioice gather a 127.0.0.1 host candidate and nothing else, so that
    peers on one machine meet without a network (aioice offers no loopback candidate)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


async def run_camera(options: DeviceOptions) -> int:
    """Run until SIGINT/SIGTERM or the consultation ends."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        camera = Camera(options, session)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, camera.stop.set)
        try:
            return await camera.run()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
