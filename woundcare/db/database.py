"""The database as an application resource: started and stopped by ``cleanup_ctx``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from sqlalchemy import Engine, Row, Select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .engine import is_sqlite, make_engine, make_thread_engine
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
        self._thread_engine: Engine | None = None
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(expire_on_commit=False)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("database not started")
        return self._engine

    @property
    def thread_engine(self) -> Engine | None:
        """On SQLite, a synchronous autocommit engine on the same file, for a worker thread
        that writes a row right after its own blocking work (a blob's fsyncs): the row costs
        no hand-off to the event loop and on to aiosqlite's thread and back. ``None`` on a
        database server, which is reached from the event loop (asyncpg), and before start."""
        return self._thread_engine

    async def start(self) -> None:
        self._engine = make_engine(self.url)
        self.sessions.configure(bind=self._engine)
        if self._migrate:
            await upgrade(self._engine)
        if is_sqlite(self.url):
            self._thread_engine = make_thread_engine(self.url)

    async def read(self, query: Query, params: Mapping[str, Any] | None = None) -> Sequence[AnyRow]:
        """The rows of one short read by key (a join's admission), at the least cost: on a
        database server one statement without a transaction around it; on SQLite on the
        event loop, through the thread engine. There such a read takes about 40 µs of CPU
        (of which SQLite 5), less than a hand-off to a worker thread and back costs (about
        100 µs measured, futex and GIL hand-overs included; aiosqlite makes some six per
        statement). A reader in WAL mode does not wait for the writer. Not for scans."""
        thread_engine = self._thread_engine
        if thread_engine is not None:
            return _read(thread_engine, query, params)
        async with self.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            return (await autocommit.execute(query, params)).all()

    async def ping(self) -> None:
        """One round trip to the database: raises if it cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def stop(self) -> None:
        if self._thread_engine is not None:
            self._thread_engine.dispose()
        self._thread_engine = None
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None


def _read(engine: Engine, query: Query, params: Mapping[str, Any] | None) -> Sequence[AnyRow]:
    with engine.connect() as connection:
        return connection.execute(query, params).all()
