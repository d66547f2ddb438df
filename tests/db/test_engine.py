"""The engines' round trips: none spent where it does nothing, none saved at a cost in safety."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.services import postgres_database
from woundcare.db import engine as engine_module
from woundcare.db.engine import make_engine


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def postgres_engine() -> AsyncIterator[AsyncEngine]:
    async for url in postgres_database():
        engine = make_engine(url)
        yield engine
        await engine.dispose()


@pytest.fixture
def sqlite_trips(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The calls each connection's aiosqlite thread runs, by name: one hand-off each."""
    trips: Counter[str] = Counter()
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips[getattr(fn, "__name__", "?")] += 1
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return trips


async def test_sqlite_commits_survive_a_power_cut(sqlite_engine: AsyncEngine, tmp_path: Path) -> None:
    # synchronous=FULL (2): each commit syncs the write-ahead log; NORMAL (1) does not.
    async with sqlite_engine.connect() as connection:
        assert await connection.scalar(text("PRAGMA synchronous")) == 2
    reader = engine_module.open_sqlite_reader(tmp_path / "engine.db")
    try:
        assert reader.execute("PRAGMA synchronous").fetchone() == (2,)
    finally:
        reader.close()


async def test_sqlite_commit_hands_its_connection_back_without_a_rollback(
    sqlite_engine: AsyncEngine, sqlite_trips: Counter[str]
) -> None:
    async with sqlite_engine.begin() as connection:
        await connection.execute(text("INSERT INTO t VALUES (1)"))
    assert sqlite_trips["commit"] == 1
    assert sqlite_trips["rollback"] == 0


async def test_sqlite_connection_handed_back_inside_a_transaction_is_rolled_back(
    sqlite_engine: AsyncEngine, sqlite_trips: Counter[str]
) -> None:
    async with sqlite_engine.connect() as connection:
        # Behind SQLAlchemy's back, which thus has no transaction of its own to end.
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.execute("INSERT INTO t VALUES (1)")
        assert driver.in_transaction
    assert sqlite_trips["rollback"] == 1
    # The write lock is free and the insert undone.
    async with sqlite_engine.begin() as connection:
        await connection.execute(text("INSERT INTO t VALUES (2)"))
        assert (await connection.execute(text("SELECT x FROM t"))).scalars().all() == [2]


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    made: list[None] = []
    ping = AsyncAdapt_asyncpg_connection.ping

    def counted(self: AsyncAdapt_asyncpg_connection) -> None:
        made.append(None)
        ping(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counted)
    return made


async def _backend(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def test_postgres_connection_just_used_is_handed_out_without_a_ping(
    postgres_engine: AsyncEngine, pings: list[None]
) -> None:
    first = await _backend(postgres_engine)
    assert await _backend(postgres_engine) == first  # the same connection, again
    assert pings == []


async def test_postgres_connection_dead_after_lying_idle_is_replaced(
    postgres_engine: AsyncEngine, pings: list[None], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with postgres_engine.connect() as other:
        dead = await _backend(postgres_engine)  # a second connection, handed back to lie idle
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
    monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", 0.0)
    alive = {await _backend(postgres_engine), await _backend(postgres_engine)}
    assert dead not in alive
    assert pings
