"""The database as an application resource: started and stopped by ``cleanup_ctx``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, Unpack

from sqlalchemy import Connection, Dialect, Engine, Select, text
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .engine import make_engine, open_sqlite_reader, sqlite_file
from .migrate import upgrade
from .writer import LoopWriter, SQLiteWriter, Writer


Query = Select[Unpack[tuple[Any, ...]]]
"""A select of any columns (:meth:`Database.read`)."""
T = TypeVar("T")


class Database:
    """The session factory exists from app creation on, so services can hold it;
    it is bound to an engine only when the app starts."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._migrate = migrate
        self._engine: AsyncEngine | None = None
        self._reader: sqlite3.Connection | None = None
        self._prepared: dict[Query, _Prepared] = {}
        self._writer: Writer[Any] | None = None
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
        path = sqlite_file(self.url)
        if path is None:
            self._writer = LoopWriter(self._engine)
        else:
            self._reader = open_sqlite_reader(path)
            self._writer = SQLiteWriter(path)

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine a statement may run through (:meth:`write`'s own on SQLite), for
        listeners to SQLAlchemy's events."""
        engine = self.engine.sync_engine
        return (engine, self._writer.engine) if isinstance(self._writer, SQLiteWriter) else (engine,)

    async def read(self, query: Query, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows of one short read by key (a join's admission, an upload's session and
        consultation), at the least cost: on a database server one statement without a
        transaction around it, on a pooled connection; on SQLite on the event loop, through a
        driver connection of its own to the same file. A reader in WAL mode does not wait for
        the writer. Not for scans.

        The statement is compiled once, and each read is the driver's own call and the
        columns' conversions. On SQLite the driver's ``execute`` (whose prepared-statement
        cache keeps SQLite's plan): about 10 µs of CPU, where SQLAlchemy's execution (cache
        key, pool checkout, result set-up) had cost about 50, and a hand-off to a worker
        thread and back (aiosqlite makes some six per statement) 100 more. On PostgreSQL
        asyncpg's ``fetch`` (whose statement cache keeps the prepared statement on each
        connection): about 230 µs of the event loop's CPU with the pool's checkout, where
        SQLAlchemy's execution on an autocommit connection had cost about 350 (two reads of
        every upload)."""
        reader = self._reader
        if reader is None and self.engine.dialect.name != "postgresql":
            # SQLite in memory, which only the async engine's connection sees.
            async with self.engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                return (await autocommit.execute(query, params)).all()
        prepared = self._prepared.get(query)
        if prepared is None:
            dialect = _SQLITE if reader is not None else self.engine.dialect
            prepared = self._prepared[query] = _Prepared.of(query, dialect)
        values = prepared.values(params)
        if reader is not None:
            return prepared.rows(reader.execute(prepared.sql, values).fetchall())
        async with self.engine.connect() as connection:
            pooled = await connection.get_raw_connection()
            try:
                found = await pooled.driver_connection.fetch(prepared.sql, *values)  # type: ignore[union-attr]
            except BaseException:
                # Failed or cancelled midway, the driver's connection may be broken or still
                # busy with the statement: it is closed at once (outside a greenlet, without
                # waiting on the server), not handed out again.
                pooled.invalidate()
                raise
        return prepared.rows(found)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction and commit it; roll back what it did if it raises.

        Every write goes through the database's one writer (:mod:`woundcare.db.writer`), in
        order, and the writes that queued together commit together, each in a savepoint. So
        ``work`` runs after every write asked for before it, and sees what they wrote.

        On SQLite it runs in the writer thread, on a plain (synchronous) engine of its own to
        the same file, in ``BEGIN IMMEDIATE`` (the write lock before the first read, so no
        reader-turned-writer waits on another): the whole transaction is one hand-off from the
        event loop. Through the async engine each statement had been some six hand-offs
        between the event loop and aiosqlite's thread, a commit with an audit entry and its
        record about forty, each a wake-up of the loop. One writer also means writes queue
        in memory, in order, instead of in SQLite's busy handler, which sleeps 1, 2, 5, 10, ...
        ms between tries, or on a database server's locks, each holding a connection. On a
        database server ``work`` runs in the writer task, on an async connection
        (``run_sync``), a round trip per statement.

        A write under way ends whole even if its caller is cancelled."""
        if self._writer is None:
            raise RuntimeError("database not started")
        return await self._writer.write(work)

    async def ping(self) -> None:
        """One round trip to the database: raises if it cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def stop(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        self._writer = None
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._prepared.clear()


_SQLITE = SQLiteDialect_pysqlite()
"""The dialect of :meth:`Database.read`'s plain SQLite driver."""
Convert = Callable[[Any], Any]


class _Prepared:
    """A select compiled for a driver: its SQL, its parameters in order, and what turns each
    column's stored value into the Python value SQLAlchemy would give (enums, booleans,
    datetimes), as SQLAlchemy's own types define it for the dialect. Not for a ``Numeric``
    column on PostgreSQL: asyncpg's processor for it needs the column's type from a result,
    which is not known when the statement is compiled."""

    __slots__ = ("sql", "_binds", "_fixed", "_columns")

    def __init__(
        self,
        sql: str,
        binds: tuple[tuple[str, Convert | None], ...],
        fixed: Mapping[str, Any],
        columns: tuple[Convert | None, ...],
    ):
        self.sql = sql
        self._binds = binds
        self._fixed = fixed
        """The values the query itself binds (``Recording.status == RecordingStatus.RECORDING``)."""
        self._columns = columns if any(columns) else ()

    @classmethod
    def of(cls, query: Query, dialect: Dialect) -> _Prepared:
        compiled = query.compile(dialect=dialect)
        binds = tuple(
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup or ()
        )
        columns = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in query.selected_columns
        )
        fixed = {name: bound.value for name, bound in compiled.binds.items() if not bound.required}
        return cls(compiled.string, binds, fixed, columns)

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        """The statement's parameters, in order, as the driver takes them."""
        values = []
        for name, bind in self._binds:
            value = params[name] if name in params else self._fixed[name]
            values.append(value if bind is None else bind(value))
        return values

    def rows(self, found: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """The driver's rows ``found``, their columns as SQLAlchemy gives them."""
        columns = self._columns
        if not columns:
            return found
        return [
            tuple(value if convert is None or value is None else convert(value) for value, convert in zip(row, columns))
            for row in found
        ]
