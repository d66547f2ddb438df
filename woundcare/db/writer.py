"""SQLite's one writer: the thread that runs :meth:`Database.write`'s transactions, and commits
the ones that queued together as one.

SQLite lets one transaction write at a time, and under ``synchronous=FULL`` each commit syncs
the write-ahead log: a disk flush of a millisecond to tens of them, while the next writers wait.
So the writes that queued meanwhile run next in one transaction, each in a savepoint of its own
(one that raises is rolled back to its savepoint and fails alone), and one commit, one flush,
makes them all durable: group commit, as the session log does for room events. No write waits
for company: a batch is what had queued when the thread got to it, so a lone write commits at
once. A caller hears of its write once the batch's commit has returned; if the commit fails,
every write of the batch fails with it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from .engine import make_sqlite_writer

T = TypeVar("T")

MAX_BATCH = 64
"""Writes committed together at most: a bound on one transaction's size and on how long the
first of them waits for the others' work."""


@dataclass(slots=True)
class _Write(Generic[T]):
    work: Callable[[Connection], T]
    done: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop


_Outcome = tuple[_Write[Any], Any, BaseException | None]


class SQLiteWriter:
    def __init__(self, path: Path) -> None:
        self.engine = make_sqlite_writer(path)
        self._writes: queue.SimpleQueue[_Write[Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="db-write", daemon=True)
        self._thread.start()

    async def write(self, work: Callable[[Connection], T]) -> T:
        if self._closed:
            # Queued behind the thread's last batch, it would wait for ever.
            raise RuntimeError("the database's writer has stopped")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._writes.put(_Write(work, done, loop))
        return await done

    async def close(self) -> None:
        """Stop once the writes queued so far have ended, and close the connection."""
        self._closed = True
        self._writes.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                batch: list[_Write[Any]] = []
                first = self._writes.get()
                while first is not None:
                    batch.append(first)
                    if len(batch) == MAX_BATCH or self._writes.empty():
                        break
                    first = self._writes.get_nowait()
                stopping = first is None
                if batch:
                    # A checkout per batch (the pool keeps the one connection): one that
                    # broke is replaced at the next.
                    try:
                        with self.engine.connect() as connection:
                            outcomes = _commit(connection, batch)
                    except Exception as error:
                        # No connection, or no commit (the pool rolled it back): all fail.
                        outcomes = [(write, None, error) for write in batch]
                    _settle(outcomes)
        finally:
            # In this thread: a SQLite connection is closed where it was opened.
            self.engine.dispose()


def _commit(connection: Connection, batch: Sequence[_Write[Any]]) -> list[_Outcome]:
    """Run ``batch`` in one transaction, each write in a savepoint, and commit it."""
    outcomes: list[_Outcome] = []
    # The driver begins lazily, before the first write; a transaction that reads and then
    # writes (the audit chain's head) takes the write lock first instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    driver = connection.connection.driver_connection
    assert driver is not None
    for write in batch:
        driver.execute("SAVEPOINT write")
        try:
            outcomes.append((write, write.work(connection), None))
        except BaseException as error:
            driver.execute("ROLLBACK TO write")
            outcomes.append((write, None, error))
        driver.execute("RELEASE write")
    connection.commit()
    return outcomes


def _settle(outcomes: list[_Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, settled in by_loop.items():
        try:
            # One wake-up of the loop for the batch.
            loop.call_soon_threadsafe(_resolve, settled)
        except RuntimeError:
            pass  # the loop has closed: nobody is left to hear


def _resolve(outcomes: list[_Outcome]) -> None:
    for write, result, error in outcomes:
        if write.done.cancelled():
            continue  # the caller stopped waiting; the write itself has ended all the same
        if error is None:
            write.done.set_result(result)
        else:
            write.done.set_exception(error)
