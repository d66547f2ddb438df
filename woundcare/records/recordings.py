"""Recordings of consultations: a row per recording, the video a blob sealed as it is written.

Each recording has a stream key of its own (``woundcare.crypto.stream``); the row keeps it
sealed with the region's data key (kind ``recording_key``), and every chunk of the video is
bound to the recording, its region and its place in the stream (kind ``recording_video``).
So the region's key is needed to read a recording, region shredding makes it unreadable, and
key rotation re-seals the small stream key, not the video.

A recording is written into the blob's temporary file, which holds only ciphertext, and is
published when it ends (fsync, link). A server that dies mid-recording leaves a row marked
``recording`` with this instance's name and a temporary file: :meth:`Recordings.recover`
marks the row failed and removes the file at the next start.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..crypto import Binding, Keyring, key_id_of
from ..crypto.stream import StreamSealer, open_stream
from ..db.database import Database
from ..db.models import Recording, RecordingStatus, new_public_id
from ..crypto.sealed_sink import SealedSink
from ..storage.blobs import BlobStore, BlobWriter
from .consultations import ConsultationView
from .events import Events, EventType

KEY_KIND = "recording_key"
VIDEO_KIND = "recording_video"
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
    """A recording's decrypted video, to stream."""

    size: int
    """Bytes in all, known from checking every chunk."""
    chunks: AsyncGenerator[bytes, None]
    """A generator, so the reader can close it (and the file) when the player goes away."""


@dataclass(slots=True)
class Capture:
    """A recording being written: the muxer writes into ``sink``."""

    recording: RecordingView
    sink: SealedSink
    writer: BlobWriter


class Recordings:
    def __init__(self, db: Database, keyring: Keyring, blobs: BlobStore, instance: str, events: Events) -> None:
        self._db = db
        self._events = events
        self._keyring = keyring
        self._blobs = blobs
        self._instance = instance

    async def begin(self, consultation: ConsultationView, started_by: str) -> Capture:
        """A new recording of ``consultation``: its row, its sealed key, its blob being written."""
        recording_id = new_public_id()
        region_id = consultation.region_id
        sealer = StreamSealer(Binding(region_id, VIDEO_KIND, recording_id))
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
            writer = await asyncio.to_thread(self._blobs.writer, row.blob_key)
        except BaseException:
            await asyncio.shield(self._end(recording_id, RecordingStatus.FAILED, "error"))
            raise
        return Capture(_view(row), SealedSink(sealer, writer), writer)

    async def finish(
        self, capture: Capture, *, frames: int, size: tuple[int, int] | None, reason: str
    ) -> RecordingView:
        """Seal the last chunk, publish the blob durably, and mark the recording complete."""
        if frames == 0:
            return await self.fail(capture, "no_video")

        def publish() -> None:
            capture.sink.close()
            capture.writer.commit()

        try:
            await asyncio.to_thread(publish)
        except BaseException:
            await asyncio.shield(self.fail(capture, "error"))
            raise
        width, height = size if size is not None else (None, None)
        return await self._end(
            capture.recording.id, RecordingStatus.COMPLETE, reason,
            size=capture.writer.size, frames=frames, width=width, height=height,
        )

    async def fail(self, capture: Capture, reason: str) -> RecordingView:
        """Drop what was written (only ciphertext) and mark the recording failed."""
        await asyncio.to_thread(capture.writer.abort)
        return await self._end(capture.recording.id, RecordingStatus.FAILED, reason)

    async def _end(self, recording_id: str, status: RecordingStatus, reason: str, **values: object) -> RecordingView:
        async with self._db.sessions() as session, session.begin():
            row = await session.get_one(Recording, recording_id)
            row.status = status
            row.ended_at = datetime.now(UTC)
            row.end_reason = reason
            for name, value in values.items():
                setattr(row, name, value)
            self._finished(session, row)
        return _view(row)

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

    async def recover(self) -> int:
        """At start-up: fail this instance's recordings cut off by its end, remove their
        partial blobs, and sweep leftovers no row knows. Returns how many were cut off."""
        async with self._db.sessions() as session, session.begin():
            rows = (
                await session.scalars(
                    select(Recording).where(
                        Recording.instance == self._instance, Recording.status == RecordingStatus.RECORDING
                    )
                )
            ).all()
            now = datetime.now(UTC)
            for row in rows:
                row.status, row.ended_at, row.end_reason = RecordingStatus.FAILED, now, "interrupted"
                self._finished(session, row)
            known = set((await session.scalars(select(Recording.blob_key))).all())
        return await asyncio.to_thread(self._recover, [row.blob_key for row in rows], known)

    def _finished(self, session: AsyncSession, row: Recording) -> None:
        self._events.emit(
            session, EventType.RECORDING_FINISHED, consultation_id=row.consultation_id, region_id=row.region_id,
            at=row.ended_at or datetime.now(UTC), subject_id=row.id, status=row.status.value,
        )

    def _recover(self, cut_off: list[str], known: set[str]) -> int:
        # delete() also removes the temporary file a write cut off by a crash left.
        for key in cut_off:
            self._blobs.delete(key)
        self._blobs.sweep(known, older_than=_STALE.total_seconds())
        return len(cut_off)


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
