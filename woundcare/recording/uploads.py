"""The recordings this server instance is receiving: made in the specialist's browser,
uploaded piece by piece, sealed as each piece arrives, finished in a worker process.

The browser that started a recording runs ``MediaRecorder`` on what it shows and plays (the
camera's video and sound, the specialist's own voice mixed in) and uploads a piece every
second or so; a reloaded page starts the next *part* and goes on. Each piece is sealed into
the recording's upload stream at once (the last, partly filled chunk waits in memory, never
on disk). A recording ends when it is stopped (by a specialist, because the consultation
ended or the consent was withdrawn, or because the server shuts down) or when no piece has
come for :data:`ABANDONED_SECONDS` (the browser is gone). It is then finished: the upload
made into one seekable WebM by :mod:`woundcare.recording.remux` in its own process, and the
row marked complete, or failed if no video arrived. Nothing of it is kept in this process.
A recording whose instance was killed is finished with what reached the disk (end reason
``interrupted``): by that instance when it starts again, else by any instance once the upload
has lain untouched for :data:`STALE_SECONDS` (:meth:`Recordings.cut_off`).

Everyone in the call is told when a recording starts and when it ends, however it ends
(a ``recording`` frame into the consultation's room on every instance, protocol §7.6): the
patient and the nurse see when the call is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field

from aiohttp import web

from signaling.handler import ROOMS
from signaling.protocol import recording_frame
from signaling.rooms import Rooms

from ..db.models import Recording, RecordingStatus
from ..errors import WoundcareError
from ..records.consultations import ConsultationView
from ..records.recordings import Capture, Recordings, RecordingView
from .remux import Remuxer, piece

log = logging.getLogger(__name__)

MAX_BYTES = 2 * 1024**3
"""What one recording may hold: about three hours at the standard profile. The finishing
worker holds a recording in memory (its upload and the WebM made from it), so without a
bound a page left recording could exhaust the server's memory."""
ABANDONED_SECONDS = 60.0
"""A recording no piece has reached for this long is finished with what it has."""
STALE_SECONDS = 600.0
"""Another instance's recording whose upload has not been written for this long is taken
for cut off: its instance is gone (a live upload is written at every 64 KiB sealed, and one
no piece reaches is finished by its own instance after :data:`ABANDONED_SECONDS`)."""
_WATCH_SECONDS = 5.0
_SETTLE_SECONDS = 60.0
"""How often other instances' recordings are looked at for ones cut off."""


class RecordingBusy(WoundcareError):
    """The consultation is being recorded already."""

    code = "recording"
    status = 409
    message = "this consultation is being recorded already"


class NotRecording(WoundcareError):
    code = "not_recording"
    status = 409
    message = "this recording has ended"


class OtherInstance(WoundcareError):
    code = "other_instance"
    status = 409
    message = "this recording is made by another server instance"


class NotTheRecorder(WoundcareError):
    code = "not_recorder"
    status = 403
    message = "only the specialist who started a recording sends its video"


class RecordingTooLong(WoundcareError):
    code = "recording_too_long"
    status = 413
    message = f"a recording holds at most {2 * 1024} MiB of video; it has been finished"


class OutOfOrder(WoundcareError):
    code = "chunk_order"
    status = 409
    message = "pieces of a recording are sent in order, in its current part"


@dataclass(slots=True)
class _Live:
    capture: Capture
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    part: int = -1
    """The part being uploaded; -1 before the first."""
    next_piece: int = 0
    pieces: int = 0
    size: int = 0
    last: float = field(default_factory=time.monotonic)
    task: asyncio.Task[RecordingView] | None = None
    """The finish, once begun: every stop awaits the same one."""


class RecordingUploads:
    """At most one recording per consultation, each received until it is finished."""

    def __init__(self, recordings: Recordings, remuxer: Remuxer) -> None:
        self._recordings = recordings
        self._remuxer = remuxer
        self._live: dict[str, _Live] = {}
        """By recording id."""
        self._starting: set[str] = set()
        """Consultations whose recording is being begun."""
        self._rooms: Rooms | None = None
        """The rooms told that a call records; set while the app runs (:meth:`running`)."""

    async def start(self, consultation: ConsultationView, started_by: str) -> RecordingView:
        """Start recording ``consultation``; the caller has checked consent and permission."""
        busy = any(e.capture.recording.consultation_id == consultation.id for e in self._live.values())
        if busy or consultation.id in self._starting:
            raise RecordingBusy()
        self._starting.add(consultation.id)  # held across the row's insert: a second start meanwhile is refused
        try:
            live = await self._recordings.begin(consultation, started_by)
        finally:
            self._starting.discard(consultation.id)
        self._live[live.recording.id] = _Live(live)
        log.info("recording %s of consultation %s started", live.recording.id, consultation.id)
        self._tell(consultation.id, on=True)
        return live.recording

    def _entry(self, recording: Recording, subject: str) -> _Live:
        entry = self._live.get(recording.id)
        if entry is None:
            # Its row says whether it ended or is received by another instance.
            raise OtherInstance() if recording.status is RecordingStatus.RECORDING else NotRecording()
        if entry.task is not None:
            raise NotRecording()
        if subject != recording.started_by:
            raise NotTheRecorder()
        return entry

    async def next_part(self, recording: Recording, subject: str) -> int:
        """Begin the next part (a new ``MediaRecorder``, e.g. after a reload); its number.
        After the piece being sealed: its count belongs to the part it was sent in."""
        entry = self._entry(recording, subject)
        async with entry.lock:
            if entry.task is not None:
                raise NotRecording()
            entry.part += 1
            entry.next_piece = 0
            entry.last = time.monotonic()
            return entry.part

    async def add(self, recording: Recording, subject: str, part: int, number: int, data: bytes) -> None:
        """Seal piece ``number`` of ``part``; a piece sent again (its answer was lost) is taken once."""
        entry = self._entry(recording, subject)
        async with entry.lock:
            if entry.task is not None:
                raise NotRecording()  # stopped while this piece waited for the one before
            if part == entry.part and number < entry.next_piece:
                return
            if part != entry.part or number != entry.next_piece:
                raise OutOfOrder()
            if entry.size + len(data) > MAX_BYTES:
                entry.task = asyncio.create_task(self._finish(entry, "limit"), name=f"finish-{recording.id}")
                raise RecordingTooLong()
            if data:
                await asyncio.to_thread(entry.capture.sink.write, piece(part, data))
                entry.size += len(data)
                entry.pieces += 1
            entry.next_piece += 1
            entry.last = time.monotonic()

    async def stop(self, recording_id: str, reason: str = "stopped") -> RecordingView | None:
        """Stop and finish a recording this instance receives; None if it receives no such one."""
        entry = self._live.get(recording_id)
        if entry is None:
            return None
        if entry.task is None:
            entry.task = asyncio.create_task(self._finish(entry, reason), name=f"finish-{recording_id}")
        # Shielded: a client hanging up must not leave the recording half finished.
        return await asyncio.shield(entry.task)

    async def stop_consultation(self, consultation_id: str, reason: str) -> RecordingView | None:
        found = next((r for r, e in self._live.items() if e.capture.recording.consultation_id == consultation_id), None)
        return await self.stop(found, reason) if found else None

    async def stop_all(self, reason: str) -> None:
        await asyncio.gather(*(self.stop(r, reason) for r in list(self._live)), return_exceptions=True)

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """For ``cleanup_ctx``: abandoned recordings finished as they are found, and at
        shutdown every recording finished before the database closes."""
        self._rooms = app[ROOMS]
        # Claimed before this instance begins a recording of its own; made into videos after.
        cut_off = await self._recordings.cut_off(STALE_SECONDS, own=True)
        watch = asyncio.create_task(self._watch(cut_off))
        yield
        watch.cancel()
        with suppress(asyncio.CancelledError):
            await watch
        await self.stop_all("shutdown")
        self._remuxer.close()

    async def _watch(self, cut_off: list[Recording]) -> None:
        try:
            await self._salvage(cut_off)
            await self._recordings.sweep()  # after the salvage: it removes stale upload files
        except Exception:  # left `recording` for the next start; the watch goes on
            log.exception("settling the recordings cut off failed")
        settled = time.monotonic()
        while True:
            await asyncio.sleep(_WATCH_SECONDS)
            now = time.monotonic()
            for entry in list(self._live.values()):
                if entry.task is None and now - entry.last > ABANDONED_SECONDS:
                    entry.task = asyncio.create_task(self._finish(entry, "abandoned"))
            if now - settled > _SETTLE_SECONDS:
                settled = now
                try:
                    await self._salvage(await self._recordings.cut_off(STALE_SECONDS, own=False))
                except Exception:  # the database away for a moment: the next round tries again
                    log.exception("looking for recordings cut off failed")

    async def _salvage(self, rows: list[Recording]) -> None:
        for row in rows:
            await self._ended(await self._recordings.salvage(row, self._remuxer.run))

    def _tell(self, consultation_id: str, *, on: bool) -> None:
        if self._rooms is not None:
            self._rooms.publish(consultation_id, recording_frame(on))

    async def _finish(self, entry: _Live, reason: str) -> RecordingView:
        capture = entry.capture
        try:
            async with entry.lock:  # a piece being sealed is sealed first
                pass
            view = await self._recordings.finish(capture, reason, self._remuxer.run if entry.pieces else None)
        finally:
            del self._live[capture.recording.id]
            self._tell(capture.recording.consultation_id, on=False)
        await self._ended(view, told=True)
        return view

    async def _ended(self, view: RecordingView, *, told: bool = False) -> None:
        """Logged, and the room told (unless it was); :class:`Recordings` audited it with its row."""
        if not told:
            self._tell(view.consultation_id, on=False)
        log.info("recording %s ended: %s (%s)", view.id, view.status.value, view.end_reason)
