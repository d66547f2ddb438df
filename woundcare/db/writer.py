""":meth:`Database.write`'s one writer per database: it runs the write transactions in order,
and commits the ones that queued together as one.

A commit is durable once its log is flushed to the disk (SQLite under ``synchronous=FULL``,
PostgreSQL under ``synchronous_commit``): a millisecond to tens of them, while the next writers
wait. So the writes that queued meanwhile run next, one after another, in one transaction, and
one commit, one flush, makes them all durable: group commit, as the session log does for room
events. A write that raises is undone alone and fails alone (a savepoint before each write but
the first, whose failure rolls back the transaction: :func:`_commit`). No write waits for
company: a batch is what had queued when the writer got to it, so a lone write commits at
once, and without a savepoint (on a database server a round trip). A caller hears of its write
once the batch's commit has returned; if the begin or the commit fails, every write of the
batch fails with it, and the next batch begins anew.

Two drivers of the same batches (:class:`Writer`):

- :class:`SQLiteWriter`, for a SQLite file: a thread on a plain (synchronous) engine of its
  own, so a whole transaction is one hand-off from the event loop, and the thread takes the
  next batch as soon as one has committed, however busy the loop is;
- :class:`LoopWriter`, for a database server (and SQLite in memory, which only the async
  engine's connection sees): a task of the event loop on the async engine, the batch run
  through ``run_sync`` (a round trip per statement, as without batches).

A write under way ends whole even if its caller is cancelled: the writer, not the caller, runs it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import begin_write, make_sqlite_writer

T = TypeVar("T")

MAX_BATCH = 64
"""Writes committed together at most: a bound on one transaction's size and on how long the
first of them waits for the others' work. (So at most 63 savepoints: PostgreSQL keeps the ids
of up to 64 subtransactions of a transaction in shared memory, and past that every snapshot
taken meanwhile looks them up on disk.)"""


@dataclass(slots=True)
class _Write(Generic[T]):
    work: Callable[[Connection], T]
    done: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop


_Queued = _Write[Any] | None
"""A write, or ``None``: the end of the writes."""
_Outcome = tuple[_Write[Any], Any, BaseException | None]


class _Writes(Protocol):
    """The queue of writes: ``queue.SimpleQueue`` and ``asyncio.Queue`` alike."""

    def put_nowait(self, item: _Queued, /) -> None: ...

    def get_nowait(self) -> _Queued: ...

    def empty(self) -> bool: ...


Q = TypeVar("Q", bound=_Writes)


class Writer(ABC, Generic[Q]):
    """What both drivers share: writes taken in, in order, and taken out in batches."""

    def __init__(self, writes: Q) -> None:
        self._writes = writes
        self._closed = False

    async def write(self, work: Callable[[Connection], T]) -> T:
        if self._closed:
            # Queued behind the writer's last batch, it would wait for ever.
            raise RuntimeError("the database's writer has stopped")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._writes.put_nowait(_Write(work, done, loop))
        return await done

    async def close(self) -> None:
        """Stop once the writes queued so far have ended."""
        self._closed = True
        self._writes.put_nowait(None)
        await self._stopped()

    @abstractmethod
    async def _stopped(self) -> None:
        """Return once the writer has ended its last batch."""

    def _batch(self, first: _Queued) -> tuple[list[_Write[Any]], bool]:
        """The batch that begins with ``first`` (taken from the queue as it came): what else
        has queued, up to :data:`MAX_BATCH`; and whether the writer is to stop after it."""
        batch: list[_Write[Any]] = []
        while first is not None:
            batch.append(first)
            if len(batch) == MAX_BATCH or self._writes.empty():
                return batch, False
            first = self._writes.get_nowait()
        return batch, True


class SQLiteWriter(Writer[queue.SimpleQueue[_Queued]]):
    def __init__(self, path: Path) -> None:
        super().__init__(queue.SimpleQueue())
        self.engine = make_sqlite_writer(path)
        self._thread = threading.Thread(target=self._run, name="db-write", daemon=True)
        self._thread.start()

    async def _stopped(self) -> None:
        await asyncio.to_thread(self._thread.join)  # which closes the connection

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._batch(self._writes.get())
                if not batch:
                    continue
                # A checkout per batch (the pool keeps the one connection): one that broke
                # is replaced at the next.
                try:
                    with self.engine.connect() as connection:
                        outcomes = _commit(connection, batch)
                except BaseException as error:
                    # Whatever it was, the thread lives on: every later write waits on it.
                    outcomes = _failed(batch, error)
                _settle(outcomes)
        finally:
            # In this thread: a SQLite connection is closed where it was opened.
            self.engine.dispose()


class LoopWriter(Writer[asyncio.Queue[_Queued]]):
    def __init__(self, engine: AsyncEngine) -> None:
        """Start writing; in the event loop that the writes will come from."""
        super().__init__(asyncio.Queue())
        self._engine = engine
        self._task = asyncio.create_task(self._run(), name="db-write")

    async def _stopped(self) -> None:
        await self._task

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._batch(await self._writes.get())
            if not batch:
                continue
            try:
                # A checkout per batch, as on SQLite; others use the pool meanwhile.
                async with self._engine.connect() as connection:
                    outcomes = await connection.run_sync(_commit, batch)
            except Exception as error:
                # Not CancelledError: the task itself cancelled (the loop closing) ends.
                outcomes = _failed(batch, error)
            _resolve(outcomes)


def _commit(connection: Connection, batch: Sequence[_Write[Any]]) -> list[_Outcome]:
    """Run ``batch`` in one transaction and commit it. Raises if the transaction cannot begin
    or commit; closing the connection rolls back what was not committed.

    A write that raises is undone alone: rolled back to the savepoint taken before it, or,
    while no write of the transaction has ended well (a lone write, the first of a batch),
    with the transaction, which begins anew for the next. So a write costs a savepoint (on a
    database server a round trip) only where there is something to keep."""
    outcomes: list[_Outcome] = []
    began = kept = False
    # The driver's own cursor: the savepoints are no statements of SQLAlchemy's to compile.
    cursor = connection.connection.cursor()
    for write in batch:
        if kept:
            # Not released: each stays to the commit, nested in the one before, and ROLLBACK
            # TO undoes to the latest. A release would be one more round trip a write.
            cursor.execute("SAVEPOINT write")
        elif not began:
            begin_write(connection)
            began = True
        try:
            outcomes.append((write, write.work(connection), None))
        except Exception as error:
            outcomes.append((write, None, error))
            if kept:
                cursor.execute("ROLLBACK TO write")
            else:
                connection.rollback()
                began = False
        else:
            kept = True
    if kept:
        try:
            connection.commit()
        except Exception:
            # SQLAlchemy counts the transaction ended and would hand the connection back as
            # it is, but SQLite keeps a transaction whose commit failed (a deferred foreign
            # key) open.
            connection.connection.rollback()
            raise
    return outcomes


def _failed(batch: Sequence[_Write[Any]], error: BaseException) -> list[_Outcome]:
    """No connection, or no begin or commit (the pool rolled back): every write fails."""
    return [(write, None, error) for write in batch]


def _settle(outcomes: list[_Outcome]) -> None:
    """Hand ``outcomes`` from the writer thread to their callers' event loops."""
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
