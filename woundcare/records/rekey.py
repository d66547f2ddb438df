"""The re-encryption pass after a region key rotation.

Every sealed value names its key, so the pass needs no bookkeeping of its own: it finds what
is not under the region's current key and reseals it, one record per transaction. Stopped
anywhere (even by SIGKILL), the next run simply finds less to do. Each update is made only if
the stored value is still the one that was read, so a concurrent edit is never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from ..crypto import Binding, Keyring, key_id_of
from ..db.database import Database
from ..db.models import Assessment, Consultation, Patient, Recording, Snapshot
from .assessments import KIND as ASSESSMENT_KIND
from .consultations import QUESTION_KIND
from .patients import IDENTITY_KIND
from .recordings import KEY_KIND as RECORDING_KEY_KIND
from .snapshots import ANNOTATIONS_KIND, Snapshots

Progress = Callable[[int, int], None]
"""Called with (done, total) after each record."""


@dataclass(frozen=True, slots=True)
class _Sealed:
    """One sealed column of one table: how to find its rows and bind its values."""

    model: type[Patient] | type[Assessment] | type[Snapshot] | type[Recording] | type[Consultation]
    column: str
    kind: str
    record_id: str
    key_column: str | None = None
    """Where the row names the key sealing ``column``, kept up to date with it."""


_COLUMNS = (
    _Sealed(Patient, "identity_sealed", IDENTITY_KIND, "pseudonym"),
    _Sealed(Assessment, "content_sealed", ASSESSMENT_KIND, "consultation_id"),
    _Sealed(Consultation, "question_sealed", QUESTION_KIND, "id"),
    _Sealed(Snapshot, "annotations_sealed", ANNOTATIONS_KIND, "id"),
    # A recording's video stays as it is: re-sealing its stream key moves it to the new key.
    _Sealed(Recording, "key_sealed", RECORDING_KEY_KIND, "id", key_column="key_id"),
)


class Reencryption:
    def __init__(self, db: Database, keyring: Keyring, snapshots: Snapshots) -> None:
        self._db = db
        self._keyring = keyring
        self._snapshots = snapshots

    async def pending(self, region_id: int) -> int:
        """How many sealed values of the region are not under its current key."""
        current = await self._keyring.ensure_region_key(region_id)
        count = 0
        for sealed in _COLUMNS:
            count += sum(1 for _, _, envelope in await self._values(sealed, region_id) if key_id_of(envelope) != current)
        return count + len(await self._old_snapshots(region_id, current))

    async def run(self, region_id: int, progress: Progress | None = None) -> int:
        """Reseal everything of the region under its current key; returns how many records moved."""
        current = await self._keyring.ensure_region_key(region_id)
        total = await self.pending(region_id)
        done = 0
        for sealed in _COLUMNS:
            for pk, record_id, envelope in await self._values(sealed, region_id):
                if key_id_of(envelope) == current:
                    continue
                fresh = await self._keyring.reseal(Binding(region_id, sealed.kind, record_id), envelope)
                column = getattr(sealed.model, sealed.column)
                values: dict[str, bytes | str] = {sealed.column: fresh}
                if sealed.key_column is not None:
                    values[sealed.key_column] = key_id_of(fresh)
                async with self._db.sessions() as session, session.begin():
                    await session.execute(
                        update(sealed.model)
                        .where(sealed.model.id == pk, column == envelope)
                        .values(values)
                    )
                done += 1
                if progress is not None:
                    progress(done, total)
        for snapshot_id in await self._old_snapshots(region_id, current):
            await self._snapshots.reseal_blobs(snapshot_id)
            done += 1
            if progress is not None:
                progress(done, total)
        return done

    async def _values(self, sealed: _Sealed, region_id: int) -> list[tuple[object, str, bytes]]:
        model = sealed.model
        column = getattr(model, sealed.column)
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    select(model.id, getattr(model, sealed.record_id), column).where(
                        model.region_id == region_id, column.is_not(None)
                    )
                )
            ).all()
        return [(pk, str(record_id), bytes(envelope)) for pk, record_id, envelope in rows]

    async def _old_snapshots(self, region_id: int, current: str) -> list[str]:
        async with self._db.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(Snapshot.id).where(Snapshot.region_id == region_id, Snapshot.key_id != current)
                    )
                ).all()
            )
