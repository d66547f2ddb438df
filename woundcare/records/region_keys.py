"""The ``region_keys`` and ``region_index_keys`` tables as the keyring's
:class:`~woundcare.crypto.keystore.KeyStore`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..crypto.keystore import INDEX_KEY_VERSION, KeyKind, KeyWrite, WrappedKey
from ..db.models import Patient, Region, RegionIndexKey, RegionKey, utcnow

T = TypeVar("T")
K = TypeVar("K", RegionKey, RegionIndexKey)

_WRITE_ATTEMPTS = 3


def _key(row: RegionKey) -> WrappedKey:
    return WrappedKey(row.id, row.region_id, row.version, row.wrapped, row.master_key_id, row.retired_at is not None)


def _index_key(row: RegionIndexKey) -> WrappedKey:
    return WrappedKey(row.id, row.region_id, INDEX_KEY_VERSION, row.wrapped, row.master_key_id, kind=KeyKind.INDEX)


class _Write:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def region_shredded(self, region_id: int) -> bool:
        return await _lock_region(self._session, region_id)

    async def newest(self, region_id: int) -> WrappedKey | None:
        row = await self._session.scalar(
            select(RegionKey).where(RegionKey.region_id == region_id).order_by(RegionKey.version.desc()).limit(1)
        )
        return None if row is None else _key(row)

    async def add(self, key: WrappedKey) -> None:
        # The version comes from what this transaction read: if another writer took it
        # meanwhile, the unique (region_id, version) constraint fails here and write() retries.
        self._session.add(
            RegionKey(
                id=key.id,
                region_id=key.region_id,
                version=key.version,
                wrapped=key.wrapped,
                master_key_id=key.master_key_id,
            )
        )
        await self._session.flush()

    async def index_key(self, region_id: int) -> WrappedKey | None:
        row = await self._session.get(RegionIndexKey, region_id)
        return None if row is None else _index_key(row)

    async def add_index_key(self, key: WrappedKey) -> None:
        if key.kind is not KeyKind.INDEX or key.version != INDEX_KEY_VERSION:
            raise ValueError("not an index key")
        # The region is the primary key: a second writer's row fails here and write() retries.
        self._session.add(
            RegionIndexKey(region_id=key.region_id, id=key.id, wrapped=key.wrapped, master_key_id=key.master_key_id)
        )
        await self._session.flush()


async def _lock_region(session: AsyncSession, region_id: int) -> bool:
    """Whether the region is shredded, its row locked (on PostgreSQL) until the transaction ends.

    SQLite ignores the lock; there a key made in the same instant as a shred is still refused,
    as the keyring checks the region's shredding before it unwraps a key it loads.
    """
    found = (
        await session.execute(select(Region.shredded_at).where(Region.id == region_id).with_for_update())
    ).one_or_none()
    if found is None:
        raise LookupError(f"no region {region_id}")
    return found[0] is not None


async def _rewrap_rows(
    session: AsyncSession,
    model: type[K],
    as_key: Callable[[K], WrappedKey],
    master_key_id: str,
    rewrap: Callable[[WrappedKey], bytes],
) -> int:
    """Wrap every live key of ``model``'s table not under ``master_key_id`` anew."""
    rows = await session.scalars(select(model).where(model.wrapped.is_not(None), model.master_key_id != master_key_id))
    changed = 0
    for row in rows.all():
        rewrapped = rewrap(as_key(row))
        # Only if untouched since read: a shred committed meanwhile must stay shredded.
        result = await session.execute(
            update(model)
            .where(model.id == row.id, model.wrapped == row.wrapped)
            .values(wrapped=rewrapped, master_key_id=master_key_id)
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
        changed += len(result.all())
    return changed


class RegionKeys:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def write(self, work: Callable[[KeyWrite], Awaitable[T]]) -> T:
        attempt = 1
        while True:
            try:
                async with self._sessions.begin() as session:
                    return await work(_Write(session))
            except IntegrityError:
                if attempt == _WRITE_ATTEMPTS:
                    raise
                attempt += 1

    async def find(self, key_id: str) -> tuple[WrappedKey, bool] | None:
        return await self._find(RegionKey, RegionKey.id == key_id, _key)

    async def find_index_key(self, region_id: int) -> tuple[WrappedKey, bool] | None:
        return await self._find(RegionIndexKey, RegionIndexKey.region_id == region_id, _index_key)

    async def _find(
        self, model: type[K], where: ColumnElement[bool], as_key: Callable[[K], WrappedKey]
    ) -> tuple[WrappedKey, bool] | None:
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(model, Region.shredded_at).join(Region, Region.id == model.region_id).where(where)
                )
            ).one_or_none()
        if found is None:
            return None
        row, shredded_at = found
        return as_key(row), shredded_at is not None

    async def newest_live(self) -> WrappedKey | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(RegionKey).where(RegionKey.wrapped.is_not(None)).order_by(RegionKey.created_at.desc()).limit(1)
            )
        return None if row is None else _key(row)

    async def rewrap(self, master_key_id: str, rewrap: Callable[[WrappedKey], bytes]) -> int:
        async with self._sessions.begin() as session:
            return await _rewrap_rows(session, RegionKey, _key, master_key_id, rewrap) + await _rewrap_rows(
                session, RegionIndexKey, _index_key, master_key_id, rewrap
            )

    async def shred(self, region_id: int) -> None:
        async with self._sessions.begin() as session:
            shredded = await _lock_region(session, region_id)
            await session.execute(update(RegionKey).where(RegionKey.region_id == region_id).values(wrapped=None))
            await session.execute(
                update(RegionIndexKey).where(RegionIndexKey.region_id == region_id).values(wrapped=None)
            )
            # Useless without the key already; cleared so nothing of the index outlives it.
            await session.execute(
                update(Patient).where(Patient.region_id == region_id).values(national_id_index=None)
            )
            if not shredded:
                await session.execute(update(Region).where(Region.id == region_id).values(shredded_at=utcnow()))
