"""``Database.write``: one transaction, committed or rolled back whole, in order, the writes
that queued together committed together (each in a savepoint); on SQLite in one writer thread,
holding the write lock from its first statement, elsewhere in one task of the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from tests.services import postgres_database
from woundcare.db.database import Database
from woundcare.db.engine import open_sqlite_reader

WAIT_SECONDS = 10
HOLD_LOCK = 20_2012
"""The PostgreSQL advisory lock on which a test keeps the writer busy (:func:`_writer_busy`)."""


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


def _nothing(connection: Connection) -> None:
    pass


@asynccontextmanager
async def _writer_busy(
    database: Database, first: Callable[[Connection], object] = _nothing
) -> AsyncIterator[asyncio.Task[None]]:
    """The writer in the middle of a write, which ran ``first`` and waits until the block
    ends; yields the task that waits for that write. On SQLite the write waits in the writer
    thread; on PostgreSQL, whose writer runs on the event loop, on an advisory lock that the
    test holds meanwhile."""
    inside, release = threading.Event(), threading.Event()
    async with database.engine.connect() as holder:
        server = holder.dialect.name != "sqlite"

        def waits(connection: Connection) -> None:
            first(connection)
            inside.set()
            if server:
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": HOLD_LOCK})
            else:
                release.wait(WAIT_SECONDS)

        if server:
            await holder.execute(text("SELECT pg_advisory_lock(:id)"), {"id": HOLD_LOCK})
        writing = asyncio.create_task(database.write(waits))
        try:
            assert await asyncio.to_thread(inside.wait, WAIT_SECONDS)
            yield writing
        finally:
            release.set()
            if server:
                await holder.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": HOLD_LOCK})


def _commits(database: Database) -> list[None]:
    """Every commit from now on, by any engine of ``database``."""
    commits: list[None] = []
    for engine in database.engines:
        event.listen(engine, "commit", lambda connection: commits.append(None))
    return commits


def _runner() -> str:
    """Where a write runs: the task on the event loop's thread, else the thread."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return threading.current_thread().name
    assert task is not None
    return task.get_name()


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


async def test_writes_run_in_order_in_the_one_writer(database: Database) -> None:
    """Concurrent read-then-write transactions never interleave: each sees the one before,
    also inside one batch. On SQLite they run in the writer thread beside the loop."""
    runners: set[str] = set()

    def next_value(connection: Connection) -> int:
        runners.add(_runner())
        last = connection.execute(text("SELECT coalesce(max(x), 0) FROM t")).scalar_one()
        connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": last + 1})
        return last + 1

    got = await asyncio.gather(*(database.write(next_value) for _ in range(50)))
    assert got == list(range(1, 51))
    assert await _values(database) == list(range(1, 51))
    assert runners == {"db-write"}


async def test_sqlite_write_holds_the_write_lock_from_its_start(sqlite_database: Database, tmp_path: Path) -> None:
    """``BEGIN IMMEDIATE``: even before its first statement, no other writer gets in."""
    async with _writer_busy(sqlite_database) as writing:
        other = open_sqlite_reader(tmp_path / "write.db")
        try:
            other.execute("PRAGMA busy_timeout=0")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
    await writing


async def test_sqlite_writer_syncs_each_commit(sqlite_database: Database) -> None:
    # synchronous=FULL (2), as on the engine's and the reader's connections (test_engine).
    assert await sqlite_database.write(lambda c: c.exec_driver_sql("PRAGMA synchronous").scalar()) == 2


async def test_a_write_whose_caller_is_cancelled_still_ends_whole(database: Database) -> None:
    """A transaction under way in the writer is not cut off by the caller's cancellation: it
    commits (or rolls back) by itself, and the writer goes on to the next."""
    async with _writer_busy(database, _insert(1)) as writing:
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
    assert await database.write(_insert(2)) == 2
    assert await _values(database) == [1, 2]


async def test_writes_queued_together_commit_together_and_fail_alone(database: Database) -> None:
    """Group commit: the writes that queued while one ran share one commit (one flush of the
    log); one that raises, or whose statement the database refuses, is undone alone, and the
    others stand: the first of the batch with the transaction, which begins anew, a later one
    to its savepoint."""

    def fails(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (100)"))
        raise LookupError("this write alone fails")

    def refused(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (101)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))  # the unique x refuses it

    commits = _commits(database)
    async with _writer_busy(database) as first:
        works = (fails, _insert(1), refused, _insert(2), fails, _insert(3))
        queued = [asyncio.create_task(database.write(work)) for work in works]
        await asyncio.sleep(0)  # all queued behind the first
    await first
    ones = await asyncio.gather(*queued, return_exceptions=True)
    assert [ones[1], ones[3], ones[5]] == [1, 2, 3], ones
    assert isinstance(ones[0], LookupError) and isinstance(ones[4], LookupError), ones
    assert isinstance(ones[2], IntegrityError), ones
    assert len(commits) == 2  # the first write's, then the batch's
    assert await _values(database) == [1, 2, 3]


async def test_a_batch_whose_commit_fails_fails_whole_and_the_next_commits(database: Database) -> None:
    """A foreign key checked at the commit: the batch that breaks it is rolled back, every
    write of it fails, and the writer begins the next batch on a clean connection."""
    async with database.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE parent (x INTEGER PRIMARY KEY)"))
        await connection.execute(
            text("CREATE TABLE child (x INTEGER REFERENCES parent (x) DEFERRABLE INITIALLY DEFERRED)")
        )

    def orphan(connection: Connection) -> None:
        connection.execute(text("INSERT INTO child VALUES (7)"))

    async with _writer_busy(database) as first:
        queued = [asyncio.create_task(database.write(work)) for work in (_insert(1), orphan, _insert(2))]
        await asyncio.sleep(0)
    await first
    failed = await asyncio.gather(*queued, return_exceptions=True)
    assert all(isinstance(error, IntegrityError) for error in failed), failed
    assert await database.write(_insert(3)) == 3
    assert await _values(database) == [3]


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


async def test_stop_ends_the_writes_queued_before_it_and_refuses_later_ones_at_once(database: Database) -> None:
    queued = [asyncio.create_task(database.write(_insert(x))) for x in range(3)]
    await asyncio.sleep(0)  # queued before the stop
    stopping = asyncio.create_task(database.stop())
    await asyncio.sleep(0)  # the writer is stopping
    with pytest.raises(RuntimeError, match="stopped"):
        await database.write(_insert(3))
    await stopping
    assert [await task for task in queued] == [0, 1, 2]


async def test_a_database_in_memory_writes_through_a_task_of_the_loop() -> None:
    """SQLite in memory: only the async engine's connection sees the database, so its writer
    is a task on it, as for a database server; ``BEGIN IMMEDIATE`` and savepoints alike."""
    db = Database("sqlite+aiosqlite:///:memory:", migrate=False)
    await db.start()
    try:
        await db.write(lambda connection: connection.execute(text("CREATE TABLE t (x INTEGER UNIQUE)")))
        ones = await asyncio.gather(*(db.write(_insert(x % 3)) for x in range(5)), return_exceptions=True)
        assert ones[:3] == [0, 1, 2] and all(isinstance(error, IntegrityError) for error in ones[3:]), ones
        assert await _values(db) == [0, 1, 2]
        assert await db.write(lambda connection: _runner()) == "db-write"
    finally:
        await db.stop()
