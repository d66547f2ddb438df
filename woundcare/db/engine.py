"""The engines, made when the app starts (``Database.start`` in ``cleanup_ctx``).

A transaction costs round trips, each a hand-off between the event loop and the driver (a
worker thread for aiosqlite, the socket for asyncpg), and a snapshot's commit is made of
little else. Two that SQLAlchemy makes by default are left out where they do nothing:

- The pool's rollback when a connection comes back: after a commit there is no transaction
  to roll back, yet the rollback is one more trip to aiosqlite's thread (a quarter of a
  snapshot row's own eight). A connection handed back inside a transaction is still rolled
  back (:func:`_sqlite_reset`).
- The liveness ping on every checkout (``pool_pre_ping``), which on asyncpg is three round
  trips (a transaction around the ping, for pgbouncer): as many as the snapshot row's own
  INSERTs. A connection that was in use moments ago is alive; one idle for longer than
  :data:`PING_IDLE_SECONDS` (a database restart, a dropped socket) is pinged as before and
  replaced if dead (:func:`_ping_if_idle`).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, PoolResetState, SingletonThreadPool

PING_IDLE_SECONDS = 1.0
"""A database-server connection idle for longer than this is pinged before it is handed out."""
_IDLE_SINCE = "woundcare_idle_since"


def _sqlite_pragmas(dbapi_connection: object, _record: ConnectionPoolEntry | None) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL lets readers work beside the single writer; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: in WAL mode each commit syncs the log, so a commit survives a power cut, not only
    # a crash of the process (NORMAL's promise). A snapshot's row is committed after its blob
    # is durable and before the camera hears it is stored and drops its copy: with NORMAL a
    # power cut could roll the row back, and the blob's recovery would then remove the photo.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_reset(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry, state: PoolResetState) -> None:
    """Roll back a connection coming back to the pool only if a transaction is open on it
    (SQLite's own flag, read without a trip to the driver's thread). Not while the pool is
    being torn down outside the event loop (``asyncio_safe``), where no I/O may run."""
    if state.asyncio_safe and not state.terminate_only and dbapi_connection.driver_connection.in_transaction:
        dbapi_connection.rollback()


def _mark_idle(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _ping_if_idle(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
    """Ping a connection that lay idle in the pool; a dead one makes the pool connect anew
    (``DisconnectionError`` from a checkout listener). A new connection is not pinged."""
    since = record.info.get(_IDLE_SINCE)
    if since is None or time.monotonic() - since <= PING_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        raise exc.DisconnectionError(f"connection idle for {time.monotonic() - since:.0f} s is gone") from error


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database ``url``; None for a database server or one in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def make_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, pool_reset_on_return=None)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _sqlite_reset)
        return engine
    engine = create_async_engine(url, pool_size=10, max_overflow=10)
    event.listen(engine.sync_engine, "checkin", _mark_idle)
    event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    return engine


def begin_write(connection: Connection) -> None:
    """Begin a write transaction on ``connection``. On SQLite ``BEGIN IMMEDIATE``: the driver
    would begin lazily, before the first write, and a transaction that reads and then writes
    (the audit chain's head) would meet another's write lock halfway instead of taking it first.
    A database server begins with the first statement."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sqlite_writer(path: Path) -> Engine:
    """A plain (synchronous) engine to the SQLite file, for :meth:`Database.write`'s one
    writer thread: one connection, opened, used and closed in that thread."""
    # The pool's rollback on return stays: on the plain driver it is a call, not a hand-off.
    engine = create_engine(f"sqlite:///{path}", poolclass=SingletonThreadPool)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def open_sqlite_reader(path: Path) -> sqlite3.Connection:
    """A plain driver connection to the SQLite file (:func:`sqlite_file`), in autocommit
    (each statement its own transaction, so nothing is left open between reads), for the
    short reads :meth:`Database.read` runs on the event loop, from the thread that opened it."""
    connection = sqlite3.connect(path, isolation_level=None)
    _sqlite_pragmas(connection, None)
    return connection
