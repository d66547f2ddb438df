"""The database as an application resource: started and stopped by ``cleanup_ctx``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .engine import create_schema, make_engine, make_sessionmaker


class Database:
    """Holds the engine once started; services keep a reference from app creation on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("database not started")
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError("database not started")
        return self._sessions

    async def start(self) -> None:
        self._engine = make_engine(self.url)
        self._sessions = make_sessionmaker(self._engine)
        await create_schema(self._engine)

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
        self._sessions = None
