"""The silent recorder: a server-side aiortc peer in the consultation's room.

It joins the room over the server's own ``/ws`` as role ``recorder``, with a token the server
mints for it (valid for a minute: it is only needed to join), and answers the camera's offer
like any viewer: the camera offers to every participant who is not the nurse. It sends
nothing else (signaling refuses a recorder's chat, snapshot requests and offers). Each decoded
frame goes to an encoder thread of its own, which writes WebM into a
:class:`~woundcare.crypto.sealed_sink.SealedSink`, so only ciphertext ever reaches the disk.

A recording ends when it is stopped (by a specialist, because the consultation ended or the
consent was withdrawn, or because the server shuts down), when its socket is closed (the room
was closed), or when nobody else is left in the room. It is then finished: the blob published
and the row marked complete, or failed if no video arrived.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from signaling.protocol import Leave, Role
from signaling.turn import ice_servers

from ..audit.log import AuditEntry, AuditLog, Outcome
from ..auth.invitations import Invitations
from ..config import Settings
from ..db.models import RecordingStatus
from ..errors import WoundcareError
from ..records.consultations import ConsultationView
from ..records.recordings import Capture, Recordings, RecordingView
from ..refs import recorder_ref
from ..webrtc.client import SignalingClient, SignalingClosed

if TYPE_CHECKING:
    # aiortc and PyAV (with their codecs and crypto, tens of MB resident) are imported when the
    # first recording starts, not by every server that might record (tests/test_imports.py).
    from aiortc import RTCConfiguration
    from av import VideoFrame

log = logging.getLogger(__name__)

FRAME_QUEUE = 30
"""Frames waiting for the encoder; when it falls behind, frames are dropped, the call never stalls."""
TOKEN_SECONDS = 60
JOIN_SECONDS = 10.0
DISPLAY_NAME = "recorder"
"""What the others see as the recorder's name; pages show the role's own label instead."""

IceFor = Callable[[str], "RTCConfiguration"]
"""The ICE configuration (TURN credentials made out to the given subject)."""


class RecordingBusy(WoundcareError):
    """The consultation is being recorded already."""

    code = "recording"
    status = 409
    message = "this consultation is being recorded already"


class Recorder:
    """One recording's peer: joins, answers, encodes in its own thread, finishes."""

    def __init__(
        self, recordings: Recordings, capture: Capture, client: SignalingClient, configuration: RTCConfiguration
    ) -> None:
        self.capture = capture
        self.dropped = 0
        self._recordings = recordings
        self._client = client
        from ..webrtc.peer import Viewer
        from .encoder import WebmEncoder

        self._viewer = Viewer(client, configuration)
        self._viewer.on_frame = self._on_frame
        self._encoder = WebmEncoder(capture.sink)
        self._frames: queue.Queue[tuple[VideoFrame, float] | None] = queue.Queue(FRAME_QUEUE)
        self._stop = asyncio.Event()
        self._reason = "stopped"
        self._encoded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._encoded.add_done_callback(self._encoder_ended)

    @property
    def recording(self) -> RecordingView:
        return self.capture.recording

    @property
    def frames(self) -> int:
        """Frames encoded so far."""
        return self._encoder.frames

    def stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self._reason = reason
            self._stop.set()

    async def run(self, consultation: str, token: str) -> RecordingView:
        """Record until stopped or the room is gone; returns the finished recording."""
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._encode, args=(loop,), name="recorder-encoder", daemon=True).start()
        try:
            reason = await self._attend(consultation, token)
        except Exception:
            log.exception("recorder of recording %s failed", self.recording.id)
            reason = "error"
        finally:
            await self._viewer.close()
            await self._client.close()
        return await self._finish(reason)

    async def _attend(self, consultation: str, token: str) -> str:
        joined = await asyncio.wait_for(self._client.join(consultation, Role.RECORDER, token), JOIN_SECONDS)
        listening = asyncio.create_task(self._listen({p["id"] for p in joined["peers"]}))
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({listening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if listening.done():
            return listening.result()
        listening.cancel()
        with suppress(asyncio.CancelledError):
            await listening
        with suppress(Exception):
            await self._client.send(Leave())
        return self._reason

    async def _listen(self, others: set[str]) -> str:
        """Answer offers until the socket closes or the recorder is alone; returns why it ended."""
        try:
            while True:
                frame = await self._client.recv()
                await self._viewer.handle(frame)
                if frame["type"] == "presence":
                    peer = frame["participant"]["id"]
                    if frame["state"] == "left":
                        others.discard(peer)
                    else:
                        others.add(peer)
                    if not others:
                        return "left"
        except SignalingClosed as closed:
            code = (closed.error or {}).get("code")
            return {"ended": "ended", "going_away": "shutdown"}.get(str(code), "disconnected")

    def _on_frame(self, frame: VideoFrame) -> None:
        try:
            self._frames.put_nowait((frame, time.monotonic()))
        except queue.Full:
            self.dropped += 1

    def _encode(self, loop: asyncio.AbstractEventLoop) -> None:
        """The encoder thread: frames to WebM into the sealed sink, until the end marker."""
        error: BaseException | None = None
        try:
            while (item := self._frames.get()) is not None:
                self._encoder.add(*item)
            self._encoder.close()
        except BaseException as exc:  # noqa: BLE001  (reported to the loop, which fails the recording)
            error = exc
        loop.call_soon_threadsafe(_settle, self._encoded, error)

    def _encoder_ended(self, done: asyncio.Future[None]) -> None:
        if done.exception() is not None:
            self.stop("error")

    async def _finish(self, reason: str) -> RecordingView:
        while not self._encoded.done():
            try:
                self._frames.put_nowait(None)
                break
            except queue.Full:
                await asyncio.sleep(0.01)
        try:
            await self._encoded
        except Exception:
            log.exception("encoder of recording %s failed", self.recording.id)
            return await self._recordings.fail(self.capture, "error")
        if self.dropped:
            log.warning("recording %s: %d frames dropped (encoder behind)", self.recording.id, self.dropped)
        return await self._recordings.finish(
            self.capture, frames=self._encoder.frames, size=self._encoder.size, reason=reason
        )


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


@dataclass(slots=True)
class _Live:
    recorder: Recorder
    task: asyncio.Task[RecordingView]


class Recorders:
    """The recordings this server instance is making, at most one per consultation."""

    def __init__(
        self, recordings: Recordings, invitations: Invitations, audit: AuditLog, server_url: str, ice: IceFor
    ) -> None:
        self._recordings = recordings
        self._invitations = invitations
        self._audit = audit
        self._url = server_url
        self._ice = ice
        self._busy: set[str] = set()
        self._live: dict[str, _Live] = {}

    @classmethod
    def for_server(cls, settings: Settings, recordings: Recordings, invitations: Invitations, audit: AuditLog) -> Recorders:
        return cls(recordings, invitations, audit, local_url(settings), server_ice(settings))

    def recorder(self, consultation_id: str) -> Recorder | None:
        entry = self._live.get(consultation_id)
        return entry.recorder if entry else None

    async def start(self, consultation: ConsultationView, started_by: str) -> RecordingView:
        """Start recording ``consultation``; the caller has checked consent and permission."""
        if consultation.id in self._busy:
            raise RecordingBusy()
        self._busy.add(consultation.id)
        try:
            capture = await self._recordings.begin(consultation, started_by)
            try:
                subject = recorder_ref(capture.recording.id)
                token = self._invitations.issue(
                    consultation.id, Role.RECORDER, subject, DISPLAY_NAME, consultation.region, TOKEN_SECONDS
                )
                recorder = Recorder(self._recordings, capture, SignalingClient(self._url), self._ice(subject))
            except BaseException:
                await asyncio.shield(self._recordings.fail(capture, "error"))
                raise
        except BaseException:
            self._busy.discard(consultation.id)
            raise
        task = asyncio.create_task(self._run(consultation.id, recorder, token), name=f"recorder-{capture.recording.id}")
        self._live[consultation.id] = _Live(recorder, task)
        log.info("recording %s of consultation %s started", capture.recording.id, consultation.id)
        return capture.recording

    async def stop(self, recording_id: str, reason: str = "stopped") -> RecordingView | None:
        """Stop and finish a recording this instance is making; None if it makes no such one."""
        entry = next((e for e in self._live.values() if e.recorder.recording.id == recording_id), None)
        if entry is None:
            return None
        entry.recorder.stop(reason)
        # Shielded: a client hanging up must not leave the recording half finished.
        return await asyncio.shield(entry.task)

    async def stop_consultation(self, consultation_id: str, reason: str) -> RecordingView | None:
        entry = self._live.get(consultation_id)
        return await self.stop(entry.recorder.recording.id, reason) if entry else None

    async def stop_all(self, reason: str) -> None:
        for entry in list(self._live.values()):
            entry.recorder.stop(reason)
        await asyncio.gather(*(e.task for e in list(self._live.values())), return_exceptions=True)

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """For ``cleanup_ctx``: at shutdown, every recording is finished before the database closes."""
        yield
        await self.stop_all("shutdown")

    async def _run(self, consultation_id: str, recorder: Recorder, token: str) -> RecordingView:
        try:
            view = await recorder.run(consultation_id, token)
        finally:
            del self._live[consultation_id]
            self._busy.discard(consultation_id)
        log.info("recording %s ended: %s (%s)", view.id, view.status.value, view.end_reason)
        await self._audit.record(
            AuditEntry(
                f"recording.end.{view.end_reason}",
                Outcome.OK if view.status is RecordingStatus.COMPLETE else Outcome.FAILED,
                actor=recorder_ref(view.id),
                role=Role.RECORDER.value,
                region_id=view.region_id,
                resource=f"recording:{view.id}",
            )
        )
        return view


def local_url(settings: Settings) -> str:
    """This server as the recorder reaches it: its own listening socket, never the public URL."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def server_ice(settings: Settings) -> IceFor:
    """The recorder's ICE configuration: the servers clients get, TURN credentials its own."""
    secret = settings.turn_secret.get_secret_value().encode() if settings.turn_secret else None

    def configuration(subject: str) -> RTCConfiguration:
        from ..webrtc.peer import ice_configuration


        servers = ice_servers(settings.stun_urls, settings.turn_urls, secret, subject, settings.turn_ttl_seconds)
        return ice_configuration(servers, relay_only=settings.ice_transport_policy == "relay")

    return configuration
