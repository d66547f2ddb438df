"""``Database.read`` on PostgreSQL: one statement compiled once, run by asyncpg on a connection
of the pool. A read that fails or is cancelled midway must not hand a broken or busy
connection to the next read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from asyncpg.exceptions import InvalidTextRepresentationError
from sqlalchemy import Integer, String, bindparam, cast, func, select
from sqlalchemy.exc import DBAPIError

from tests.services import postgres_database
from woundcare.db.database import Database

_SLEEP = select(func.pg_sleep(bindparam("seconds")))
_NUMBER = select(cast(bindparam("text", type_=String), Integer))


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    async for url in postgres_database():
        db = Database(url, migrate=False)
        await db.start()
        yield db
        await db.stop()


async def test_reads_after_failed_and_cancelled_ones_answer_on_a_clean_pool(database: Database) -> None:
    assert await database.read(_NUMBER, {"text": "12"}) == [(12,)]
    with pytest.raises((InvalidTextRepresentationError, DBAPIError)):
        await database.read(_NUMBER, {"text": "twelve"})
    # Cancelled while the server still runs the statement: that connection is not reused.
    sleepers = [asyncio.create_task(database.read(_SLEEP, {"seconds": 5})) for _ in range(5)]
    await asyncio.sleep(0.3)
    for sleeper in sleepers:
        sleeper.cancel()
    await asyncio.gather(*sleepers, return_exceptions=True)
    assert all(sleeper.cancelled() for sleeper in sleepers)
    # More reads at once than the pool keeps (10, and 10 more): each gets its own answer.
    answers = await asyncio.wait_for(
        asyncio.gather(*(database.read(_NUMBER, {"text": str(n)}) for n in range(30))), 10
    )
    assert [rows[0][0] for rows in answers] == list(range(30))
    assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
