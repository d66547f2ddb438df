"""Wound snapshots: checked, stripped of metadata, sealed, stored as a blob with a row.

An upload is stored in three steps: an intent naming its blob (``woundcare.storage.intents``),
the sealed blob (an atomic, fsynced write), then one transaction with the snapshot row (the
thumbnail sealed into it), its ``snapshot_stored`` session-log event and, for an API upload,
its audit entry (in the audit chain's transaction, :meth:`AuditLog.record_with`). A crash at
any point leaves either a complete, audited snapshot or an intent of this instance, whose blob
:meth:`Snapshots.recover` removes at the next start.

The check (decode, metadata strip, thumbnail) runs in an image thread; sealing and writing
the blob in a writer thread (``ImageWork.writers``), so an image thread never waits on the
disk and several blobs are written at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    ColumnElement, Connection, CursorResult, Executable, FromClause, Insert, String, bindparam, literal, select, update,
)
from sqlalchemy import insert as sa_insert

from signaling.sink import EventKind

from ..audit.log import AuditEntry, AuditLog
from ..crypto import Binding, Keyring, key_id_of
from ..db.database import Database
from ..db.models import ConsentKind, Consultation, ConsultationEvent, Snapshot
from ..storage.blobs import BlobStore
from ..storage.intents import Intents
from .consents import consented
from .images import CleanImage, ImageData, clean_image
from .imagework import ImageWork
from .measurement import Annotations

IMAGE_KIND = "snapshot_image"
THUMB_KIND = "snapshot_thumbnail"
ANNOTATIONS_KIND = "snapshot_annotations"

_STALE = timedelta(hours=1)
"""A blob without a row older than this is no write in flight, but a leftover."""


@dataclass(frozen=True, slots=True)
class SnapshotView:
    id: str
    consultation_id: str
    taken_at: datetime
    taken_by: str
    request_id: str | None
    media_type: str
    width: int
    height: int
    annotations: Annotations | None

    def json(self) -> dict[str, object]:
        measurement = self.annotations.measurement() if self.annotations else None
        return {
            "id": self.id,
            "consultation": self.consultation_id,
            "takenAt": self.taken_at.isoformat(),
            "takenBy": self.taken_by,
            "request": self.request_id,
            "mediaType": self.media_type,
            "width": self.width,
            "height": self.height,
            "annotations": self.annotations.to_json() if self.annotations else None,
            "measurement": measurement.to_json() if measurement else None,
        }


_SNAPSHOTS = Snapshot.metadata.tables[Snapshot.__tablename__]
"""The metadata names the Table; ``__table__`` is typed as any FromClause."""
_EVENTS = ConsultationEvent.metadata.tables[ConsultationEvent.__tablename__]
_ANNOTATION = ("annotations_sealed", "annotated_at", "area_cm2")
"""The columns an annotation writes, empty in an upload's row; it gives all the others."""


def _stored_event(stored: FromClause) -> Insert:
    """The ``snapshot_stored`` session-log event of the snapshot row in ``stored``."""
    return sa_insert(_EVENTS).from_select(
        ["consultation_id", "at", "kind", "subject", "detail"],
        select(
            stored.c.consultation_id,
            stored.c.taken_at,
            literal(EventKind.SNAPSHOT_STORED.value, String),
            stored.c.taken_by,
            stored.c.id,
        ),
    )


_EVENT_SOURCE = (_SNAPSHOTS.c.id, _SNAPSHOTS.c.consultation_id, _SNAPSHOTS.c.taken_at, _SNAPSHOTS.c.taken_by)
"""What of the row its event names."""
_INSERT = sa_insert(_SNAPSHOTS).values({c.name: bindparam(c.name) for c in _SNAPSHOTS.c if c.name not in _ANNOTATION})
"""Core on the table, the row given as parameters: compiled once, not per upload."""
_ROW_AND_EVENT = _stored_event(_INSERT.returning(*_EVENT_SOURCE).cte("stored"))
"""The row and its event in one statement, one round trip: on PostgreSQL, whose writer runs
the uploads' transactions one after another, a statement is a round trip of that queue."""
_EVENT_OF_ROW = _stored_event(select(*_EVENT_SOURCE).where(_SNAPSHOTS.c.id == bindparam("id")).subquery())
"""The same event after the row, for SQLite, which has no INSERT inside WITH (there the two
statements are calls in its writer thread, not round trips)."""

_TARGET = select(
    Consultation.id, Consultation.region_id, Consultation.patient_id, consented(ConsentKind.SNAPSHOTS)
).where(Consultation.id == bindparam("consultation"))


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """The consultation a photo is uploaded to, with whether its patient lets it be stored."""

    id: str
    region_id: int
    patient_id: int
    consented: bool

_SCRATCH_KEPT = 32 * 1024 * 1024
"""A worker thread keeps a sealing buffer up to this size for its next upload."""
_scratch = threading.local()

T = TypeVar("T")
RowStatement = tuple[Executable, Mapping[str, Any]]
"""A statement and its parameters that must change exactly one row."""


def _sealing_buffer(size: int) -> memoryview:
    """This thread's buffer of at least ``size`` bytes: sealing a photo into a reused buffer
    spares the page faults of a fresh multi-megabyte allocation per upload."""
    buffer: bytearray | None = getattr(_scratch, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = bytearray(size)
        if size <= _SCRATCH_KEPT:
            _scratch.buffer = buffer
    return memoryview(buffer)


def _blob_key() -> str:
    return secrets.token_urlsafe(24)


@dataclass(slots=True)
class _Stored:
    """A checked photo on its way to the disk."""

    media_type: str
    width: int
    height: int
    size: int
    thumb_sealed: bytes
    data: bytes | bytearray | None
    """The photo, until the writer thread takes it (:meth:`take`)."""

    @classmethod
    def of(cls, clean: CleanImage, thumb_sealed: bytes) -> _Stored:
        return cls(clean.media_type.value, clean.width, clean.height, len(clean.data), thumb_sealed, clean.data)

    def take(self) -> bytes | bytearray:
        """The photo, let go of here: its megabytes are freed in the thread that took it when
        it is done with them. Freed on the event loop's thread, where the upload ends, they
        had held it for half a millisecond or more (the allocator giving the pages back)."""
        data, self.data = self.data, None
        if data is None:
            raise RuntimeError("the photo was taken already")
        return data


class Snapshots:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        blobs: BlobStore,
        intents: Intents,
        *,
        max_bytes: int,
        max_pixels: int,
        images: ImageWork,
        audit: AuditLog,
    ) -> None:
        self._db = db
        self._audit = audit
        self._images = images
        self._keyring = keyring
        self._blobs = blobs
        self._intents = intents
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels

    async def store(
        self,
        consultation_id: str,
        region_id: int,
        patient_id: int,
        data: ImageData,
        taken_by: str,
        request_id: str | None = None,
        *,
        audit: Callable[[str], AuditEntry] | None = None,
    ) -> SnapshotView:
        """Check and store one upload; raises ``ImageRejected`` before anything is written.

        ``audit(resource)``, if given, is the upload's audit entry for the snapshot named
        ``resource``, committed with the row."""
        snapshot_id = secrets.token_urlsafe(12)
        key = _blob_key()
        taken_at = datetime.now(UTC)
        sealer = await self._keyring.sealer(region_id)
        image = Binding(region_id, IMAGE_KIND, snapshot_id)
        hold_pixels = functools.partial(self._images.budget.hold, since=time.monotonic())

        def check() -> _Stored:
            # The decode and its copies (pixels held in the budget) in an image thread.
            clean = clean_image(data, max_bytes=self._max_bytes, max_pixels=self._max_pixels, hold_pixels=hold_pixels)
            return _Stored.of(clean, sealer.seal(Binding(region_id, THUMB_KIND, snapshot_id), clean.thumbnail))

        stored = await _submitted(self._images.executor, check)

        def seal_put(key: str) -> None:
            # Sealing (megabytes of AES-GCM into this thread's buffer), the blob's write and
            # its fsyncs in one call of a writer thread, which waits on the disk.
            data = stored.take()
            buffer = _sealing_buffer(sealer.sealed_size(len(data)))
            with self._intent(key):
                self._blobs.put(key, buffer[: sealer.seal_into(image, data, buffer)])

        row = {
            "id": snapshot_id,
            "consultation_id": consultation_id,
            "region_id": region_id,
            "patient_id": patient_id,
            "taken_at": taken_at,
            "taken_by": taken_by,
            "request_id": request_id,
            "media_type": stored.media_type,
            "width": stored.width,
            "height": stored.height,
            "size": stored.size,
            "blob_key": key,
            "thumb_sealed": stored.thumb_sealed,
            "key_id": sealer.key_id,
        }
        rows: list[RowStatement] = (
            [(_ROW_AND_EVENT, row)] if self._db.engine.dialect.name == "postgresql"
            else [(_INSERT, row), (_EVENT_OF_ROW, {"id": snapshot_id})]
        )

        entry = None if audit is None else audit(f"snapshot:{snapshot_id}")
        await self._write_blob(key, seal_put, rows, entry, self._images.writers)
        return SnapshotView(
            snapshot_id, consultation_id, taken_at, taken_by, request_id,
            stored.media_type, stored.width, stored.height, None,
        )

    async def reseal_blobs(self, snapshot_id: str) -> None:
        """Move a snapshot's image and thumbnail under the region's current key, as new
        blobs; the old ones are deleted once the row points at the new."""
        row = await self.get(snapshot_id)
        if row is None:
            return
        old = row.blob_key
        image = await self._keyring.reseal(
            Binding(row.region_id, IMAGE_KIND, row.id), await asyncio.to_thread(self._blobs.get, old)
        )
        thumb = await self._keyring.reseal(Binding(row.region_id, THUMB_KIND, row.id), row.thumb_sealed)
        new = _blob_key()

        def put(key: str) -> None:
            with self._intent(key):
                self._blobs.put(key, image)

        repoint = (
            update(Snapshot)
            .where(Snapshot.id == row.id, Snapshot.blob_key == old)
            .values(blob_key=new, thumb_sealed=thumb, key_id=key_id_of(image))
        )
        await self._write_blob(new, put, [(repoint, {})])
        await asyncio.to_thread(self._blobs.delete, old)

    async def _write_blob(
        self,
        key: str,
        put: Callable[[str], None],
        rows: list[RowStatement],
        entry: AuditEntry | None = None,
        executor: Executor | None = None,
    ) -> None:
        """Write a blob with ``put`` (in a thread of ``executor``, default the event loop's; it
        records the intent), then, in one transaction, the ``rows`` that refer to it (each must
        change one row) and the audit ``entry`` if any, crash-safely: after a crash there are
        the rows and their durable blob, or an intent that names the blob for recovery.

        Runs to its end even if the caller is cancelled, so a row is never left without its blob.
        """
        await asyncio.shield(self._put_then_commit(key, put, rows, entry, executor))

    async def _put_then_commit(
        self,
        key: str,
        put: Callable[[str], None],
        rows: list[RowStatement],
        entry: AuditEntry | None,
        executor: Executor | None,
    ) -> None:
        written = _submitted(executor, put, key)
        try:
            await written
            if entry is not None:
                # The audit log holds its own lock around the chain's transaction.
                await self._audit.record_with(entry, rows)
            else:

                def write(connection: Connection) -> None:
                    for statement, params in rows:
                        _one_row(connection.execute(statement, dict(params)))

                await self._db.write(write)
        except BaseException:
            await asyncio.shield(self._undo(written, key))
            raise
        self._intents.remove((key,))

    async def _undo(self, written: asyncio.Future[Any], key: str) -> None:
        # A write still running (a failed checkout does not stop it) ends first; one that
        # failed has removed what it wrote.
        await asyncio.wait([written])
        if written.cancelled() or written.exception() is None:
            await asyncio.to_thread(self._discard, key)

    @contextlib.contextmanager
    def _intent(self, key: str) -> Iterator[None]:
        """Around a blob's write: the intent that names it until its row is committed."""
        self._intents.add((key,))
        try:
            yield
        except BaseException:
            self._intents.remove((key,))
            raise

    def _discard(self, key: str) -> None:
        self._blobs.delete(key)
        self._intents.remove((key,))

    async def recover(self) -> int:
        """At start-up: remove the blobs of this instance's unfinished writes, then sweep
        blobs that no row knows and that are old enough not to be anyone's write in flight.
        Returns the number of blobs removed."""
        async with self._db.sessions() as session:
            known = set((await session.scalars(select(Snapshot.blob_key))).all())
        return await asyncio.to_thread(self._recover, known)

    def _recover(self, known: set[str]) -> int:
        unfinished = self._intents.list()
        removed = sum(self._blobs.delete(key) for key in unfinished if key not in known)
        self._intents.remove(unfinished)
        swept = self._blobs.sweep(known, older_than=_STALE.total_seconds())
        return removed + len(swept.removed_blobs)

    async def target(self, consultation_id: str) -> UploadTarget | None:
        """The consultation and its snapshot consent, in one query (:meth:`Database.read`)."""
        rows = await self._db.read(_TARGET, {"consultation": consultation_id})
        if not rows:
            return None
        found = rows[0]
        return UploadTarget(found[0], found[1], found[2], bool(found[3]))

    async def get(self, snapshot_id: str) -> Snapshot | None:
        async with self._db.sessions() as session:
            return await session.get(Snapshot, snapshot_id)

    async def of_consultation(self, consultation_id: str) -> list[SnapshotView]:
        return await self._views(Snapshot.consultation_id == consultation_id)

    async def of_patient(self, patient_id: int) -> list[SnapshotView]:
        return await self._views(Snapshot.patient_id == patient_id)

    async def _views(self, where: ColumnElement[bool]) -> list[SnapshotView]:
        async with self._db.sessions() as session:
            rows = (await session.scalars(select(Snapshot).where(where).order_by(Snapshot.taken_at))).all()
        return [_view(row, await self._annotations(row)) for row in rows]

    async def image(self, row: Snapshot, thumbnail: bool = False) -> bytes:
        if thumbnail:
            return await self._keyring.open(Binding(row.region_id, THUMB_KIND, row.id), row.thumb_sealed)
        sealed = await asyncio.to_thread(self._blobs.get, row.blob_key)
        return await self._keyring.open(Binding(row.region_id, IMAGE_KIND, row.id), sealed)

    async def annotate(self, row: Snapshot, annotations: Annotations) -> SnapshotView:
        sealed = await self._keyring.seal(
            Binding(row.region_id, ANNOTATIONS_KIND, row.id), orjson.dumps(annotations.to_json())
        )
        async with self._db.sessions() as session, session.begin():
            stored = await session.get_one(Snapshot, row.id)
            stored.annotations_sealed = sealed
            stored.annotated_at = datetime.now(UTC)
            measurement = annotations.measurement()
            stored.area_cm2 = measurement.area_cm2 if measurement else None
        return _view(row, annotations)

    async def fill_areas(self, batch: int = 200) -> int:
        """Write the plain area (migration 0007) of snapshots measured before it, from their
        sealed annotations; returns how many got one. Resumable: each batch commits, and rows
        already filled are not read again (annotated ones without an outline are, and stay None)."""
        filled, after = 0, ""
        while True:
            async with self._db.sessions() as session:
                rows = (
                    await session.scalars(
                        select(Snapshot)
                        .where(Snapshot.annotations_sealed.is_not(None), Snapshot.area_cm2.is_(None), Snapshot.id > after)
                        .order_by(Snapshot.id)
                        .limit(batch)
                    )
                ).all()
            if not rows:
                return filled
            areas: dict[str, float] = {}
            for row in rows:
                annotations = await self._annotations(row)
                measurement = annotations.measurement() if annotations else None
                if measurement is not None:
                    areas[row.id] = measurement.area_cm2
            async with self._db.sessions() as session, session.begin():
                for snapshot_id, area in areas.items():
                    # Only where still empty: an annotate since the read wrote the newer area.
                    await session.execute(
                        update(Snapshot)
                        .where(Snapshot.id == snapshot_id, Snapshot.area_cm2.is_(None))
                        .values(area_cm2=area)
                    )
            filled += len(areas)
            after = rows[-1].id

    async def _annotations(self, row: Snapshot) -> Annotations | None:
        if row.annotations_sealed is None:
            return None
        plain = await self._keyring.open(Binding(row.region_id, ANNOTATIONS_KIND, row.id), row.annotations_sealed)
        return Annotations.from_json(orjson.loads(plain))


def _submitted(executor: Executor | None, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``asyncio.to_thread`` in ``executor``, submitted now rather than when the event loop next
    runs the task (after whatever the caller does next), with the caller's context (request id)."""
    context = contextvars.copy_context()
    return asyncio.get_running_loop().run_in_executor(executor, context.run, function, *args)


def _one_row(result: CursorResult[Any]) -> None:
    if result.rowcount != 1:
        raise RuntimeError(f"expected to change one snapshot row, changed {result.rowcount}")


def _view(row: Snapshot, annotations: Annotations | None) -> SnapshotView:
    return SnapshotView(
        row.id,
        row.consultation_id,
        row.taken_at,
        row.taken_by,
        row.request_id,
        row.media_type,
        row.width,
        row.height,
        annotations,
    )
