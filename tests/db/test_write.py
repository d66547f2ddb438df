"""``Database.write``: one transaction, committed or rolled back whole; on SQLite in one writer
thread, in order, holding the write lock from its first statement."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import OperationalError

from tests.services import postgres_database
from woundcare.db.database import Database
from woundcare.db.engine import open_sqlite_reader
from woundcare.db.writer import SQLiteWriter

WAIT_SECONDS = 10


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async def started(url: str) -> Database:
        db = Database(url, migrate=False)
        await db.start()
        async with db.engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER UNIQUE)"))
        return db

    if request.param == "sqlite":
        db = await started(f"sqlite+aiosqlite:///{tmp_path / 'write.db'}")
        yield db
        await db.stop()
        return
    async for url in postgres_database():
        db = await started(url)
        yield db
        await db.stop()


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'write.db'}", migrate=False)
    await db.start()
    await db.write(lambda connection: connection.execute(text("CREATE TABLE t (x INTEGER UNIQUE)")))
    yield db
    await db.stop()


def _insert(x: int) -> Callable[[Connection], int]:
    def work(connection: Connection) -> int:
        connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": x})
        return x

    return work


async def _values(db: Database) -> list[int]:
    async with db.engine.connect() as connection:
        return list((await connection.execute(text("SELECT x FROM t ORDER BY x"))).scalars())


async def test_a_write_commits_its_work_and_returns_its_value(database: Database) -> None:
    assert await database.write(_insert(1)) == 1
    assert await _values(database) == [1]


async def test_a_write_that_raises_leaves_nothing_behind(database: Database) -> None:
    def fails_halfway(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))  # the unique x refuses it

    with pytest.raises(Exception, match="(?i)unique"):
        await database.write(fails_halfway)
    assert await _values(database) == []
    assert await database.write(_insert(2)) == 2  # the connection came back clean
    assert await _values(database) == [2]


async def test_sqlite_writes_run_in_order_in_one_thread_beside_the_loop(sqlite_database: Database) -> None:
    """Concurrent read-then-write transactions never interleave: each sees the one before."""
    threads: set[str] = set()

    def next_value(connection: Connection) -> int:
        threads.add(threading.current_thread().name)
        last = connection.execute(text("SELECT coalesce(max(x), 0) FROM t")).scalar_one()
        connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": last + 1})
        return last + 1

    got = await asyncio.gather(*(sqlite_database.write(next_value) for _ in range(50)))
    assert sorted(got) == list(range(1, 51))
    assert await _values(sqlite_database) == list(range(1, 51))
    [thread] = threads
    assert thread.startswith("db-write") and thread != threading.main_thread().name


async def test_sqlite_write_holds_the_write_lock_from_its_start(sqlite_database: Database, tmp_path: Path) -> None:
    """``BEGIN IMMEDIATE``: even before its first statement, no other writer gets in."""
    inside, release = threading.Event(), threading.Event()

    def waits(connection: Connection) -> None:
        inside.set()
        release.wait(WAIT_SECONDS)

    writing = asyncio.create_task(sqlite_database.write(waits))
    assert await asyncio.to_thread(inside.wait, WAIT_SECONDS)
    other = open_sqlite_reader(tmp_path / "write.db")
    try:
        other.execute("PRAGMA busy_timeout=0")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        release.set()
        await writing


async def test_sqlite_writer_syncs_each_commit(sqlite_database: Database) -> None:
    # synchronous=FULL (2), as on the engine's and the reader's connections (test_engine).
    assert await sqlite_database.write(lambda c: c.exec_driver_sql("PRAGMA synchronous").scalar()) == 2


async def test_a_write_whose_caller_is_cancelled_still_ends_whole(sqlite_database: Database) -> None:
    """A transaction under way in the writer thread is not cut off by the caller's
    cancellation: it commits (or rolls back) by itself, and the thread goes on to the next."""
    inside, release = threading.Event(), threading.Event()

    def slow(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        inside.set()
        release.wait(WAIT_SECONDS)

    writing = asyncio.create_task(sqlite_database.write(slow))
    assert await asyncio.to_thread(inside.wait, WAIT_SECONDS)
    writing.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert await sqlite_database.write(_insert(2)) == 2
    assert await _values(sqlite_database) == [1, 2]


async def test_sqlite_writes_queued_together_commit_together_and_fail_alone(sqlite_database: Database) -> None:
    """Group commit: the writes that queued while one ran share one commit (one flush of the
    log); one that raises is undone alone, and the others stand."""
    commits: list[None] = []
    [_, writer] = sqlite_database.engines
    event.listen(writer, "commit", lambda connection: commits.append(None))
    inside, release = threading.Event(), threading.Event()

    def holds_the_thread(connection: Connection) -> None:
        inside.set()
        release.wait(WAIT_SECONDS)

    def fails(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (100)"))
        raise LookupError("this write alone fails")

    first = asyncio.create_task(sqlite_database.write(holds_the_thread))
    assert await asyncio.to_thread(inside.wait, WAIT_SECONDS)
    queued = [asyncio.create_task(sqlite_database.write(work)) for work in (_insert(1), fails, _insert(2), _insert(3))]
    await asyncio.sleep(0)  # all four queued behind the first
    release.set()
    await first
    ones = await asyncio.gather(*queued, return_exceptions=True)
    assert ones[0] == 1 and ones[2:] == [2, 3]
    assert isinstance(ones[1], LookupError)
    assert await _values(sqlite_database) == [1, 2, 3]
    assert len(commits) == 2  # the first write's, then the four's


async def test_sqlite_write_fails_when_another_process_keeps_the_lock_and_the_writer_goes_on(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """Another process holding the write lock past the busy timeout (5 s) fails the write
    that waited for it, with the reason; the writer thread goes on with the next one."""
    other = open_sqlite_reader(tmp_path / "write.db")
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"):
            await sqlite_database.write(_insert(1))
    finally:
        other.rollback()
        other.close()
    assert await sqlite_database.write(_insert(2)) == 2
    assert await _values(sqlite_database) == [2]


async def test_sqlite_writer_ends_the_writes_queued_before_it_stops_and_refuses_later_ones(tmp_path: Path) -> None:
    writer = SQLiteWriter(tmp_path / "stop.db")
    await writer.write(lambda connection: connection.execute(text("CREATE TABLE t (x INTEGER)")))
    queued = [asyncio.create_task(writer.write(_insert(x))) for x in range(3)]
    await asyncio.sleep(0)  # queued before the stop
    await writer.close()
    assert [await task for task in queued] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="stopped"):
        await writer.write(_insert(3))
