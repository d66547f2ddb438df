"""Wound snapshots: checked, stripped of metadata, sealed, stored as a blob with a row.

An upload is stored in three steps: an intent naming its blob (``woundcare.storage.intents``),
the sealed blob (an atomic, fsynced write), then the snapshot row (one transaction; the
thumbnail is sealed into the row). A crash at any point leaves either a complete snapshot or
an intent of this instance, whose blob :meth:`Snapshots.recover` removes at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import ColumnElement, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..crypto import Binding, Keyring, key_id_of
from ..db.database import Database
from ..db.models import Snapshot
from ..storage.blobs import BlobStore
from ..storage.intents import Intents
from .images import CleanImage, clean_image
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


def _blob_key() -> str:
    return secrets.token_urlsafe(24)


class Snapshots:
    def __init__(
        self, db: Database, keyring: Keyring, blobs: BlobStore, intents: Intents, *, max_bytes: int, max_pixels: int
    ) -> None:
        self._db = db
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
        data: bytes,
        taken_by: str,
        request_id: str | None = None,
    ) -> SnapshotView:
        """Check and store one upload; raises ``ImageRejected`` before anything is written."""
        clean: CleanImage = await asyncio.to_thread(
            clean_image, data, max_bytes=self._max_bytes, max_pixels=self._max_pixels
        )
        snapshot_id = secrets.token_urlsafe(12)
        image = await self._keyring.seal(Binding(region_id, IMAGE_KIND, snapshot_id), clean.data)
        row = {
            "id": snapshot_id,
            "consultation_id": consultation_id,
            "region_id": region_id,
            "patient_id": patient_id,
            "taken_at": datetime.now(UTC),
            "taken_by": taken_by,
            "request_id": request_id,
            "media_type": clean.media_type.value,
            "width": clean.width,
            "height": clean.height,
            "size": len(clean.data),
            "blob_key": _blob_key(),
            "thumb_sealed": await self._keyring.seal(Binding(region_id, THUMB_KIND, snapshot_id), clean.thumbnail),
            "key_id": key_id_of(image),
        }

        async def insert(connection: AsyncConnection) -> None:
            # Core, not the ORM: this is the hot path of every upload.
            await connection.execute(sa_insert(Snapshot).values(row))

        await self._write_blob(row["blob_key"], image, insert)
        return SnapshotView(
            snapshot_id, consultation_id, row["taken_at"], taken_by, request_id,
            row["media_type"], clean.width, clean.height, None,
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

        async def repoint(connection: AsyncConnection) -> None:
            result = await connection.execute(
                update(Snapshot)
                .where(Snapshot.id == row.id, Snapshot.blob_key == old)
                .values(blob_key=new, thumb_sealed=thumb, key_id=key_id_of(image))
            )
            if result.rowcount != 1:
                raise RuntimeError("snapshot changed during re-encryption")

        await self._write_blob(new, image, repoint)
        await asyncio.to_thread(self._blobs.delete, old)

    async def _write_blob(
        self, key: str, sealed: bytes, commit: Callable[[AsyncConnection], Awaitable[None]]
    ) -> None:
        """Write a sealed blob and commit the row that refers to it, crash-safely."""
        put = asyncio.ensure_future(asyncio.to_thread(self._intend_and_put, key, sealed))
        try:
            await asyncio.shield(put)
            async with self._db.engine.begin() as connection:
                await commit(connection)
        except BaseException:
            await asyncio.shield(self._abandon(put, key))
            raise
        self._intents.remove((key,))

    async def _abandon(self, put: asyncio.Future[None], key: str) -> None:
        # A cancelled request does not stop its thread: let the write end, then undo it.
        with contextlib.suppress(Exception):
            await put
        await asyncio.to_thread(self._discard, key)

    def _intend_and_put(self, key: str, sealed: bytes) -> None:
        self._intents.add((key,))
        try:
            self._blobs.put(key, sealed)
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
        return _view(row, annotations)

    async def _annotations(self, row: Snapshot) -> Annotations | None:
        if row.annotations_sealed is None:
            return None
        plain = await self._keyring.open(Binding(row.region_id, ANNOTATIONS_KIND, row.id), row.annotations_sealed)
        return Annotations.from_json(orjson.loads(plain))


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
