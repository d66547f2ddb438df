"""Indexing the patients registered before the blind index (``woundcare patients index``).

The pass needs no bookkeeping of its own: it picks rows whose index is still NULL, in batches
in id order, computes each index from the sealed identity and commits the batch. Stopped
anywhere (even by SIGKILL), the next run finds only what is left; a row's index is only ever
set where it is NULL, so no row is indexed twice, and a registration made meanwhile by the
running server is never overwritten.

Patients registered twice with one number before the index existed cannot both be indexed
(one index per number and region): the first is, the others are reported as duplicates and
left NULL, for someone to merge by hand. Rows of shredded regions are skipped: their
identities and their index key are gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError

from ..crypto import Keyring
from ..db.database import Database
from ..db.models import Patient, Region
from .patients import BadNationalId, Patients, normalize_national_id

T = TypeVar("T")

Progress = Callable[[int, int], None]
"""Called with (done, total) after each batch."""

_BATCH_ATTEMPTS = 3
"""A batch lost to a concurrent registration of one of its numbers is read again this often."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A patient left unindexed: its region has another patient of the same number."""

    pseudonym: str
    of: str
    """The pseudonym of the patient that holds the number's index."""


@dataclass(slots=True)
class IndexRun:
    indexed: int = 0
    duplicates: list[Duplicate] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Pseudonyms whose stored number is not a valid one: they cannot be indexed."""


class PatientIndexer:
    def __init__(self, db: Database, keyring: Keyring, patients: Patients) -> None:
        self._db = db
        self._keyring = keyring
        self._patients = patients

    async def pending(self) -> int:
        """How many patients of live regions have no index yet (duplicates included)."""
        async with self._db.sessions() as session:
            count = await session.scalar(self._unindexed(select(func.count(Patient.id)), after_id=0))
        return int(count or 0)

    async def run(
        self, batch_size: int = 200, progress: Progress | None = None, pause: float = 0.0
    ) -> IndexRun:
        """Index every patient left; one transaction per batch of ``batch_size`` rows.

        ``pause`` seconds are waited after each commit: an operator's brake on a busy
        database (and how the tests stop a run half way).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        total = await self.pending()
        run = IndexRun()
        done = after_id = 0
        attempts = 0
        while True:
            async with self._db.sessions() as session:
                query = self._unindexed(select(Patient), after_id).order_by(Patient.id).limit(batch_size)
                batch = list((await session.scalars(query)).all())
            if not batch:
                return run
            try:
                indexed, duplicates, unreadable = await self._index(batch)
            except IntegrityError:
                # A registration of one of these numbers committed meanwhile: read the batch
                # again, and that patient is then seen as the number's holder.
                attempts += 1
                if attempts == _BATCH_ATTEMPTS:
                    raise
                continue
            attempts = 0
            run.indexed += indexed
            run.duplicates.extend(duplicates)
            run.unreadable.extend(unreadable)
            after_id = batch[-1].id
            done += len(batch)
            if progress is not None:
                progress(min(done, total), total)
            if pause:
                await asyncio.sleep(pause)

    async def _index(self, batch: list[Patient]) -> tuple[int, list[Duplicate], list[str]]:
        computed: dict[int, bytes] = {}
        unreadable: list[str] = []
        for patient in batch:
            identity = await self._patients.identity(patient)
            if identity is None:
                continue
            try:
                number = normalize_national_id(identity.national_id)
            except BadNationalId:
                unreadable.append(patient.pseudonym)
                continue
            computed[patient.id] = (await self._keyring.index_key(patient.region_id)).index(number)
        duplicates: list[Duplicate] = []
        indexed = 0
        async with self._db.sessions() as session, session.begin():
            holders = {
                (region_id, index): pseudonym
                for region_id, index, pseudonym in (
                    await session.execute(
                        select(Patient.region_id, Patient.national_id_index, Patient.pseudonym).where(
                            Patient.national_id_index.in_(list(computed.values()))
                        )
                    )
                ).all()
            }
            for patient in batch:
                index = computed.get(patient.id)
                if index is None:
                    continue
                holder = holders.get((patient.region_id, index))
                if holder is not None:
                    duplicates.append(Duplicate(patient.pseudonym, holder))
                    continue
                holders[(patient.region_id, index)] = patient.pseudonym
                result = await session.execute(
                    update(Patient)
                    .where(Patient.id == patient.id, Patient.national_id_index.is_(None))
                    .values(national_id_index=index)
                    .returning(Patient.id)
                    .execution_options(synchronize_session=False)
                )
                indexed += len(result.all())
        return indexed, duplicates, unreadable

    @staticmethod
    def _unindexed(query: Select[T], after_id: int) -> Select[T]:
        return query.join(Region, Region.id == Patient.region_id).where(
            Patient.national_id_index.is_(None),
            Patient.identity_sealed.is_not(None),
            Region.shredded_at.is_(None),
            Patient.id > after_id,
        )
