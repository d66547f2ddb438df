"""Wound snapshots: checked, stripped of metadata, sealed, stored as blobs with a row.

An upload is stored in three steps: a ``pending_blobs`` row naming its two blobs (committed
first), the sealed blobs (atomic writes), then the snapshot row in the same transaction that
deletes the pending row. A crash at any point leaves either a complete snapshot or pending
blobs of this instance, which :meth:`Snapshots.recover` removes at the next start.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..crypto import Binding, Keyring, key_id_of
from ..db.database import Database
from ..db.models import PendingBlob, Snapshot
from ..storage.blobs import BlobStore
from .images import CleanImage, clean_image
from .measurement import Annotations

IMAGE_KIND = "snapshot_image"
THUMB_KIND = "snapshot_thumbnail"
ANNOTATIONS_KIND = "snapshot_annotations"

_STALE = timedelta(hours=1)
"""Pending blobs of another instance older than this are its crash leftovers."""


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
        self, db: Database, keyring: Keyring, blobs: BlobStore, instance: str, *, max_bytes: int, max_pixels: int
    ) -> None:
        self._db = db
        self._keyring = keyring
        self._blobs = blobs
        self._instance = instance
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
        row = Snapshot(
            id=secrets.token_urlsafe(12),
            consultation_id=consultation_id,
            region_id=region_id,
            patient_id=patient_id,
            taken_at=datetime.now(UTC),
            taken_by=taken_by,
            request_id=request_id,
            media_type=clean.media_type.value,
            width=clean.width,
            height=clean.height,
            size=len(clean.data),
            blob_key=_blob_key(),
            thumb_key=_blob_key(),
        )
        image = await self._keyring.seal(Binding(region_id, IMAGE_KIND, row.id), clean.data)
        thumb = await self._keyring.seal(Binding(region_id, THUMB_KIND, row.id), clean.thumbnail)
        row.key_id = key_id_of(image)

        async def insert(session: AsyncSession) -> None:
            session.add(row)

        await self._write_blobs({row.blob_key: image, row.thumb_key: thumb}, insert)
        return _view(row, None)

    async def reseal_blobs(self, snapshot_id: str) -> None:
        """Move a snapshot's image and thumbnail under the region's current key, as new
        blobs; the old ones are deleted once the row points at the new."""
        row = await self.get(snapshot_id)
        if row is None:
            return
        old = (row.blob_key, row.thumb_key)
        image, thumb = await asyncio.to_thread(lambda: [self._blobs.get(key) for key in old])
        image = await self._keyring.reseal(Binding(row.region_id, IMAGE_KIND, row.id), image)
        thumb = await self._keyring.reseal(Binding(row.region_id, THUMB_KIND, row.id), thumb)
        new = (_blob_key(), _blob_key())

        async def repoint(session: AsyncSession) -> None:
            result = await session.execute(
                update(Snapshot)
                .where(Snapshot.id == row.id, Snapshot.blob_key == old[0])
                .values(blob_key=new[0], thumb_key=new[1], key_id=key_id_of(image))
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise RuntimeError("snapshot changed during re-encryption")

        await self._write_blobs({new[0]: image, new[1]: thumb}, repoint)
        await asyncio.to_thread(self._delete_blobs, old)

    async def _write_blobs(
        self, blobs: dict[str, bytes], commit: Callable[[AsyncSession], Awaitable[None]]
    ) -> None:
        """Write sealed blobs and commit the row that refers to them, crash-safely: pending
        rows first, then the blobs, then the row with the pending rows deleted."""
        keys = tuple(blobs)
        async with self._db.sessions() as session, session.begin():
            session.add_all(PendingBlob(key=key, owner=self._instance) for key in keys)
        try:
            await asyncio.to_thread(self._put_all, blobs)
            async with self._db.sessions() as session, session.begin():
                await commit(session)
                await session.execute(delete(PendingBlob).where(PendingBlob.key.in_(keys)))
        except BaseException:
            await asyncio.shield(self._discard(keys))
            raise

    def _put_all(self, blobs: dict[str, bytes]) -> None:
        for key, sealed in blobs.items():
            self._blobs.put(key, sealed)

    def _delete_blobs(self, keys: Sequence[str]) -> int:
        return sum(self._blobs.delete(key) for key in keys)

    async def _discard(self, keys: tuple[str, ...]) -> None:
        await asyncio.to_thread(self._delete_blobs, keys)
        async with self._db.sessions() as session, session.begin():
            await session.execute(delete(PendingBlob).where(PendingBlob.key.in_(keys)))

    async def recover(self) -> int:
        """At start-up: remove this instance's unfinished uploads, and any instance's stale
        ones; then sweep blobs no row knows. Returns the number of blobs removed."""
        cutoff = datetime.now(UTC) - _STALE
        async with self._db.sessions() as session, session.begin():
            pending = (
                await session.scalars(
                    select(PendingBlob.key).where(
                        (PendingBlob.owner == self._instance) | (PendingBlob.created_at < cutoff)
                    )
                )
            ).all()
        removed = await asyncio.to_thread(self._delete_blobs, pending)
        async with self._db.sessions() as session, session.begin():
            await session.execute(delete(PendingBlob).where(PendingBlob.key.in_(pending)))
            known = set((await session.scalars(select(Snapshot.blob_key))).all())
            known |= set((await session.scalars(select(Snapshot.thumb_key))).all())
            known |= set((await session.scalars(select(PendingBlob.key))).all())
        swept = await asyncio.to_thread(self._blobs.sweep, known, older_than=_STALE.total_seconds())
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
        key, kind = (row.thumb_key, THUMB_KIND) if thumbnail else (row.blob_key, IMAGE_KIND)
        sealed = await asyncio.to_thread(self._blobs.get, key)
        return await self._keyring.open(Binding(row.region_id, kind, row.id), sealed)

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
