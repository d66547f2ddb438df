"""``Database``: the async engine everywhere, and on SQLite a synchronous one for worker threads."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, insert, select, text

from woundcare.db.database import Database
from woundcare.db.engine import is_sqlite
from woundcare.db.models import Region


async def test_thread_engine_writes_the_same_database_in_autocommit_on_sqlite_only(db_url: str) -> None:
    database = Database(db_url)
    assert database.thread_engine is None  # not started
    await database.start()
    try:
        engine = database.thread_engine
        if not is_sqlite(db_url):
            assert engine is None
            return
        assert engine is not None

        def write() -> tuple[int, int]:
            with engine.connect() as connection:
                # No commit: the statement is its own transaction, and nothing is left open
                # for the pool to roll back.
                connection.execute(insert(Region), {"code": "thread", "name": "Thread"})
                foreign_keys = connection.execute(text("PRAGMA foreign_keys")).scalar_one()
                busy_timeout = connection.execute(text("PRAGMA busy_timeout")).scalar_one()
            return foreign_keys, busy_timeout

        assert await asyncio.to_thread(write) == (1, 5000)  # the same pragmas as the async engine
        async with database.sessions() as session:
            assert await session.scalar(select(func.count()).where(Region.code == "thread")) == 1
    finally:
        await database.stop()
    assert database.thread_engine is None
