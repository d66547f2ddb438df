"""The database as an application resource: started and stopped by ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .engine import is_sqlite, make_engine
from .migrate import upgrade


class Database:
    """The session factory exists from app creation on, so services can hold it;
    it is bound to an engine only when the app starts."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._migrate = migrate
        self._engine: AsyncEngine | None = None
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

    async def ping(self) -> None:
        """One round trip to the database: raises if it cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
