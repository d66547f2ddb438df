"""Recordings of consultations: a row per recording, the video a blob sealed as it is written.

Each recording has a stream key of its own (``woundcare.crypto.stream``); the row keeps it
sealed with the region's data key (kind ``recording_key``), and every chunk of the video is
bound to the recording, its region and its place in the stream (kind ``recording_video``).
So the region's key is needed to read a recording, region shredding makes it unreadable, and
key rotation re-seals the small stream key, not the video.

While a recording is made, what the browser uploads is sealed into an upload stream (kind
``recording_upload``, its key the one the row holds until the end) in a blob's temporary
file, which holds only ciphertext. :meth:`Recordings.finish` publishes it, has it made into
the finished video (sealed under a new stream key, whose sealed form then replaces the
row's) and removes it.

A server killed mid-recording leaves a row marked ``recording`` with its instance's name,
and the upload's temporary file: the header and every whole chunk sealed before the kill
(the chunk being filled, at most 64 KiB, was only in memory). :meth:`Recordings.cut_off`
finds such rows (the instance's own at its next start; another instance's once its upload
has not been written for a while, so a crashed instance that never comes back leaves none
behind) and claims each for one instance; :meth:`Recordings.salvage` makes what the upload
holds into the finished recording, ``complete`` with the end reason ``interrupted`` (or
``failed`` when nothing in it plays).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

from sqlalchemy import CursorResult, select, update

from ..audit.log import AuditEntry, AuditLog, Outcome
from ..crypto import Binding, Keyring, key_id_of
from ..crypto.stream import StreamSealer, open_range, open_stream, plaintext_size
from ..db.database import Database
from ..db.models import Recording, RecordingStatus, StaffRole, new_public_id
from ..crypto.sealed_sink import SealedSink
from ..storage.blobs import BlobStore, BlobWriter
from .consultations import ConsultationView
from .events import Events, EventType, outbox_statement

log = logging.getLogger(__name__)

KEY_KIND = "recording_key"
VIDEO_KIND = "recording_video"
UPLOAD_KIND = "recording_upload"
MEDIA_TYPE = "video/webm"

_STALE = timedelta(hours=1)
"""An unknown blob older than this is no recording in progress but a leftover."""


@dataclass(frozen=True, slots=True)
class RecordingView:
    id: str
    consultation_id: str
    region_id: int
    status: RecordingStatus
    started_at: datetime
    started_by: str
    ended_at: datetime | None
    end_reason: str | None
    size: int
    frames: int
    width: int | None
    height: int | None
    key_id: str

    def json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "consultation": self.consultation_id,
            "status": self.status.value,
            "startedAt": self.started_at.isoformat(),
            "startedBy": self.started_by,
            "endedAt": self.ended_at.isoformat() if self.ended_at else None,
            "endReason": self.end_reason,
            "size": self.size,
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            "mediaType": MEDIA_TYPE,
        }


@dataclass(frozen=True, slots=True)
class Media:
    """A recording's decrypted video, or a range of it, to stream."""

    size: int
    """Bytes in all (not only the range's)."""
    chunks: AsyncGenerator[bytes, None]
    """A generator, so the reader can close it (and the file) when the player goes away."""


@dataclass(slots=True)
class Capture:
    """A recording being made: the browser's pieces are written into ``sink``."""

    recording: RecordingView
    sink: SealedSink
    sealer: StreamSealer
    writer: BlobWriter
    """The upload's blob."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A published upload to be made into the finished recording (picklable: it goes to a
    worker process)."""

    root: Path
    """The recordings' blob store."""
    upload: str
    """The upload's blob key."""
    upload_key: bytes
    upload_binding: Binding
    out: str
    """The blob key the finished recording is written under."""
    out_binding: Binding
    cut_short: bool = False
    """The upload was cut off by a crash: it ends without its final chunk, maybe inside one."""


@dataclass(frozen=True, slots=True)
class Finished:
    """What the finished recording holds, and the new key its stream is sealed under."""

    key: bytes
    size: int
    """Sealed bytes stored."""
    frames: int
    audio_packets: int
    width: int | None
    height: int | None
    seconds: float


Finisher = Callable[[Upload], Awaitable[Finished]]


class Recordings:
    def __init__(
        self, db: Database, keyring: Keyring, blobs: BlobStore, instance: str, events: Events, audit: AuditLog
    ) -> None:
        self._db = db
        self._events = events
        self._audit = audit
        self._keyring = keyring
        self._blobs = blobs
        self._instance = instance

    async def begin(self, consultation: ConsultationView, started_by: str) -> Capture:
        """A new recording of ``consultation``: its row, its sealed key, its blob being written."""
        recording_id = new_public_id()
        region_id = consultation.region_id
        sealer = StreamSealer(Binding(region_id, UPLOAD_KIND, recording_id))
        key_sealed = await self._keyring.seal(Binding(region_id, KEY_KIND, recording_id), sealer.key)
        row = Recording(
            id=recording_id,
            consultation_id=consultation.id,
            region_id=region_id,
            status=RecordingStatus.RECORDING,
            started_at=datetime.now(UTC),
            started_by=started_by,
            instance=self._instance,
            blob_key=secrets.token_urlsafe(24),
            key_sealed=key_sealed,
            key_id=key_id_of(key_sealed),
            size=0,
            frames=0,
        )
        # The row first: a crash after it leaves a row recover() finds, never an unknown file.
        async with self._db.sessions() as session, session.begin():
            session.add(row)
        try:
            writer = await asyncio.to_thread(self._blobs.writer, _upload_key(row.blob_key))
        except BaseException:
            await asyncio.shield(self._end(_view(row), RecordingStatus.FAILED, "error"))
            raise
        return Capture(_view(row), SealedSink(sealer, writer), sealer, writer)

    async def finish(self, capture: Capture, reason: str, finisher: Finisher | None) -> RecordingView:
        """The one place a recording is finished: the upload sealed to its end and published,
        made into the finished recording by ``finisher`` (None: nothing was uploaded), the
        upload removed, and the row marked complete with the new stream key, or failed."""
        if finisher is None:
            return await self.fail(capture, "no_video")
        recording = capture.recording
        row_blob = await self._blob_key(recording.id)

        def publish() -> None:
            capture.sink.close()
            capture.writer.commit()

        try:
            await asyncio.to_thread(publish)
            done = await finisher(self._job(recording.id, recording.region_id, capture.sealer.key, row_blob))
        except Exception:
            log.exception("recording %s could not be finished", recording.id)
            return await self.fail(capture, "error")
        except BaseException:
            await asyncio.shield(self.fail(capture, "error"))
            raise
        return await self._made(recording, row_blob, reason, done)

    async def fail(self, capture: Capture, reason: str) -> RecordingView:
        """Drop what was written (only ciphertext) and mark the recording failed."""
        row_blob = await self._blob_key(capture.recording.id)
        await asyncio.to_thread(capture.writer.abort)
        return await self._failed(capture.recording, row_blob, reason)

    async def cut_off(self, stale_after: float, *, own: bool) -> list[Recording]:
        """Recordings no instance receives any more, each claimed for this instance to
        :meth:`salvage`: with ``own``, this instance's own left ``recording`` by its end (only
        before it receives any: at its start); and another instance's whose upload has not
        been written for ``stale_after`` seconds, or that has had no upload file that long (a
        live upload is written at every 64 KiB, and one no piece reaches is finished by its
        own instance within a minute: that instance is gone)."""
        async with self._db.sessions() as session:
            rows = (
                await session.scalars(select(Recording).where(Recording.status == RecordingStatus.RECORDING))
            ).all()
        now = datetime.now(UTC)
        claimed: list[Recording] = []
        for row in rows:
            if row.instance == self._instance:
                if not own:
                    continue
            else:
                idle = await asyncio.to_thread(self._blobs.written_ago, _upload_key(row.blob_key))
                if (idle if idle is not None else (now - row.started_at).total_seconds()) < stale_after:
                    continue
            if await self._claim(row):
                claimed.append(row)
        return claimed

    async def _claim(self, row: Recording) -> bool:
        """Take ``row`` over for this instance; False if another instance settled or took it first."""
        async with self._db.sessions() as session, session.begin():
            taken = await session.execute(
                update(Recording)
                .where(
                    Recording.id == row.id,
                    Recording.status == RecordingStatus.RECORDING,
                    Recording.instance == row.instance,
                )
                .values(instance=self._instance)
            )
        return cast(CursorResult[Any], taken).rowcount == 1

    async def salvage(self, row: Recording, finisher: Finisher) -> RecordingView:
        """A recording its instance's end cut off (claimed by :meth:`cut_off`): the whole
        chunks its upload had on disk made into the finished recording, ``complete`` and
        ``interrupted`` (the last second or so is lost); ``failed`` when none of it plays.
        Repeatable: a crash meanwhile leaves the row ``recording`` for the next start."""
        upload = _upload_key(row.blob_key)
        recording = _view(row)
        done: Finished | None = None
        try:
            # A finished video an earlier try of this left unrecorded is made again.
            await asyncio.to_thread(self._blobs.delete, row.blob_key)
            if await asyncio.to_thread(self._blobs.adopt, upload):
                key = await self._keyring.open(Binding(row.region_id, KEY_KIND, row.id), row.key_sealed)
                done = await finisher(self._job(row.id, row.region_id, key, row.blob_key, cut_short=True))
        except Exception:
            log.exception("recording %s could not be salvaged", row.id)
        if done is None or done.frames == 0:
            return await self._failed(recording, row.blob_key, "interrupted")
        return await self._made(recording, row.blob_key, "interrupted", done)

    def _job(
        self, recording_id: str, region_id: int, upload_key: bytes, out: str, *, cut_short: bool = False
    ) -> Upload:
        return Upload(
            self._blobs.root, _upload_key(out), upload_key, Binding(region_id, UPLOAD_KIND, recording_id),
            out, Binding(region_id, VIDEO_KIND, recording_id), cut_short,
        )

    async def _made(self, recording: RecordingView, row_blob: str, reason: str, done: Finished) -> RecordingView:
        """The end of a recording the finisher made: its upload removed and the row complete
        under the new stream key, or failed when it holds no video."""
        if done.frames == 0:
            return await self._failed(recording, row_blob, "no_video")
        key_sealed = await self._keyring.seal(Binding(recording.region_id, KEY_KIND, recording.id), done.key)
        ended = await self._end(recording, RecordingStatus.COMPLETE, reason, (done, key_sealed))
        # After the row names the video's new key: until then a crash leaves the upload for
        # :meth:`salvage` to make again; after it, one no row names, for :meth:`sweep`.
        await asyncio.to_thread(self._blobs.delete, _upload_key(row_blob))
        return ended

    async def _failed(self, recording: RecordingView, row_blob: str, reason: str) -> RecordingView:
        """Drop the upload and any video made of it (only ciphertext) and mark the row failed."""

        def discard() -> None:
            self._blobs.delete(_upload_key(row_blob))
            self._blobs.delete(row_blob)

        await asyncio.to_thread(discard)
        return await self._end(recording, RecordingStatus.FAILED, reason)

    async def _blob_key(self, recording_id: str) -> str:
        async with self._db.sessions() as session:
            return (await session.get_one(Recording, recording_id)).blob_key

    async def _end(
        self,
        recording: RecordingView,
        status: RecordingStatus,
        reason: str,
        made: tuple[Finished, bytes] | None = None,
    ) -> RecordingView:
        """The row's end (with the video ``made`` and its sealed stream key, if any), its
        outbox event and its audit entry, in one transaction: a crash leaves all three or none
        (and the row ``recording``, for :meth:`cut_off`)."""
        values: dict[str, Any] = {"status": status, "ended_at": datetime.now(UTC), "end_reason": reason}
        if made is not None:
            done, key_sealed = made
            values |= {
                "size": done.size, "frames": done.frames, "width": done.width, "height": done.height,
                "key_sealed": key_sealed, "key_id": key_id_of(key_sealed),
            }
        change = update(Recording).where(Recording.id == recording.id).values(**values)
        ended = replace(recording, **{name: value for name, value in values.items() if name != "key_sealed"})
        event = outbox_statement(
            EventType.RECORDING_FINISHED, consultation_id=ended.consultation_id, region_id=ended.region_id,
            at=ended.ended_at, subject_id=ended.id, status=status.value,
        )
        entry = AuditEntry(
            f"recording.end.{reason}",
            Outcome.OK if status is RecordingStatus.COMPLETE else Outcome.FAILED,
            # The specialist who started it: whoever stopped it (or nobody) is in the session log.
            actor=ended.started_by,
            role=StaffRole.SPECIALIST.value,
            region_id=ended.region_id,
            resource=f"recording:{ended.id}",
        )
        await self._audit.record_with(entry, [(change, {}), event])
        self._events.committed()
        return ended

    async def get(self, recording_id: str) -> Recording | None:
        async with self._db.sessions() as session:
            return await session.get(Recording, recording_id)

    async def of_consultation(self, consultation_id: str) -> list[RecordingView]:
        async with self._db.sessions() as session:
            rows = (
                await session.scalars(
                    select(Recording).where(Recording.consultation_id == consultation_id).order_by(Recording.started_at)
                )
            ).all()
        return [_view(row) for row in rows]

    async def media(self, row: Recording) -> Media:
        """The decrypted video of a complete recording, chunk by chunk.

        The whole stream is checked before the first byte is given out, so a damaged,
        truncated or foreign recording raises ``RecordIntegrityError`` (and a shredded region
        ``KeyShreddedError``) here, while an HTTP response can still say so. The chunks are
        checked again as they are given out, in case the file changed in between.
        """
        key = await self._keyring.open(Binding(row.region_id, KEY_KIND, row.id), row.key_sealed)
        binding = Binding(row.region_id, VIDEO_KIND, row.id)
        size = await asyncio.to_thread(self._check, row.blob_key, key, binding)
        return Media(size, self._chunks(row.blob_key, key, binding))

    async def size(self, row: Recording) -> int:
        """The decrypted video's bytes, from the stored size alone (for a range's answer)."""
        binding = Binding(row.region_id, VIDEO_KIND, row.id)

        def measure() -> int:
            with self._blobs.reader(row.blob_key) as file:
                return plaintext_size(file.seek(0, 2), binding)

        return await asyncio.to_thread(measure)

    async def media_range(self, row: Recording, start: int, stop: int) -> Media:
        """Bytes ``start`` to ``stop`` (exclusive) of a complete recording's video, opening
        only the chunks that hold them (a player seeks with such ranges). The first chunk is
        opened before this returns, so a damaged one is still answered as an error; the
        others are checked as they are given out."""
        key = await self._keyring.open(Binding(row.region_id, KEY_KIND, row.id), row.key_sealed)
        binding = Binding(row.region_id, VIDEO_KIND, row.id)
        file = await asyncio.to_thread(self._blobs.reader, row.blob_key)
        try:
            pieces = open_range(key, binding, file, start, stop)
            first = await asyncio.to_thread(next, pieces)
            size = plaintext_size(file.seek(0, 2), binding)
        except BaseException:
            file.close()
            raise
        return Media(size, self._range(file, first, pieces))

    @staticmethod
    async def _range(file: BinaryIO, first: bytes, pieces: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
        try:
            yield first
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                yield piece
        finally:
            file.close()

    def _check(self, blob_key: str, key: bytes, binding: Binding) -> int:
        with self._blobs.reader(blob_key) as file:
            return sum(len(chunk) for chunk in open_stream(key, binding, file.read))

    async def _chunks(self, blob_key: str, key: bytes, binding: Binding) -> AsyncGenerator[bytes, None]:
        file = await asyncio.to_thread(self._blobs.reader, blob_key)
        try:
            chunks: Iterator[bytes] = open_stream(key, binding, file.read)
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            file.close()

    async def sweep(self) -> int:
        """Remove leftover blobs no row knows (and stale temporary files); after
        :meth:`cut_off` and :meth:`salvage` had their turn at the uploads that crashes left.
        Returns how many files were removed."""
        async with self._db.sessions() as session:
            known = set((await session.scalars(select(Recording.blob_key))).all())
        swept = await asyncio.to_thread(self._blobs.sweep, known, older_than=_STALE.total_seconds())
        return len(swept.removed_blobs) + swept.removed_temp


def _upload_key(blob_key: str) -> str:
    """The blob key of a recording's upload, beside the finished recording's own."""
    return f"{blob_key}-up"


def _view(row: Recording) -> RecordingView:
    return RecordingView(
        row.id,
        row.consultation_id,
        row.region_id,
        row.status,
        row.started_at,
        row.started_by,
        row.ended_at,
        row.end_reason,
        row.size,
        row.frames,
        row.width,
        row.height,
        row.key_id,
    )
