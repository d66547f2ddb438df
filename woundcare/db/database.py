"""The database as an application resource: started and stopped by ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Unpack

from sqlalchemy import Engine, Row, Select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .engine import is_sqlite, make_engine, make_sync_engine
from .migrate import upgrade


Query = Select[Unpack[tuple[Any, ...]]]
"""A select of any columns (:meth:`Database.read`)."""
AnyRow = Row[Unpack[tuple[Any, ...]]]


class Database:
    """The session factory exists from app creation on, so services can hold it;
    it is bound to an engine only when the app starts."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._migrate = migrate
        self._engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self.writing: AbstractAsyncContextManager[object] = asyncio.Lock() if is_sqlite(url) else nullcontext()
        """Held around a write transaction that may run several at once (snapshot rows): SQLite
        has one writer, and a second one waits in its busy handler, which sleeps 1, 2, 5, 10,
        ... ms between tries; waiting here instead costs nothing. No lock on a database server."""
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(expire_on_commit=False)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("database not started")
        return self._engine

    async def start(self) -> None:
        self._engine = make_engine(self.url)
        self.sessions.configure(bind=self._engine)
        if self._migrate:
            await upgrade(self._engine)
        if is_sqlite(self.url):
            self._sync_engine = make_sync_engine(self.url)

    async def read(self, query: Query, params: Mapping[str, Any] | None = None) -> Sequence[AnyRow]:
        """The rows of one short read by key (a join's admission), at the least cost: on a
        database server one statement without a transaction around it; on SQLite on the
        event loop, through a synchronous engine on the same file. There such a read takes about 40 µs of CPU
        (of which SQLite 5), less than a hand-off to a worker thread and back costs (about
        100 µs measured, futex and GIL hand-overs included; aiosqlite makes some six per
        statement). A reader in WAL mode does not wait for the writer. Not for scans."""
        sync_engine = self._sync_engine
        if sync_engine is not None:
            return _read(sync_engine, query, params)
        async with self.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            return (await autocommit.execute(query, params)).all()

    async def ping(self) -> None:
        """One round trip to the database: raises if it cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        self._sync_engine = None


def _read(engine: Engine, query: Query, params: Mapping[str, Any] | None) -> Sequence[AnyRow]:
    with engine.connect() as connection:
        return connection.execute(query, params).all()
