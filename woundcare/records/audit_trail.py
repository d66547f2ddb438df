"""The ``audit_events`` and ``audit_checkpoints`` tables as the audit chain's
:class:`~woundcare.audit.store.ChainStore`.

An append is one :meth:`~woundcare.db.database.Database.write` that holds the chain's lock,
reads the last entry's seq and hash, and inserts the next one. This process's appends queue in
the database's one writer, in order; those that queued together run one after another in one
transaction, so each reads the head the one before it wrote (one that fails is undone alone).
Other processes wait on the lock:

- PostgreSQL: ``pg_advisory_xact_lock(CHAIN_LOCK_ID)``, released at commit or rollback, so
  every server instance and CLI process queues on it; a transaction may take it again for
  each append (a savepoint rolled back lets go of it only if it was taken there first);
- SQLite: ``BEGIN IMMEDIATE``, with which every write transaction begins: it takes the
  database's write lock before the read (other processes wait up to ``busy_timeout``).

``seq`` is unique as well, so even a writer that skipped the lock could not fork the chain: its
insert fails and is retried.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Executable, and_, func, insert, or_, select, text
from sqlalchemy.exc import IntegrityError

from ..audit.chain import SignedCheckpoint
from ..audit.store import ChainWrite, StoredCheckpoint, StoredEntry
from ..db.database import Database
from ..db.models import AuditCheckpoint, AuditEvent

T = TypeVar("T")

CHAIN_LOCK_ID = int.from_bytes(hashlib.sha256(b"woundcare.audit.chain").digest()[:8], "big", signed=True)
"""The PostgreSQL advisory lock that serialises appends (any fixed 64-bit number)."""
_APPEND_ATTEMPTS = 3

_LAST = select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
_ENTRY_COLUMNS = (
    AuditEvent.id,
    AuditEvent.seq,
    AuditEvent.at,
    AuditEvent.actor,
    AuditEvent.role,
    AuditEvent.region_id,
    AuditEvent.action,
    AuditEvent.resource,
    AuditEvent.outcome,
    AuditEvent.address,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)
_CHECKPOINT_COLUMNS = (
    AuditCheckpoint.id,
    AuditCheckpoint.seq,
    AuditCheckpoint.hash,
    AuditCheckpoint.signed_at,
    AuditCheckpoint.key_id,
    AuditCheckpoint.signature,
)


def lock_chain(conn: Connection) -> None:
    """Hold the chain's write lock in ``conn``'s transaction (see the module docstring)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": CHAIN_LOCK_ID})
    elif dialect != "sqlite":
        # SQLite's transactions (Database.write) begin with the write lock already.
        raise RuntimeError(f"audit chain: no append lock for the {dialect} dialect")


class _Write:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def connection(self) -> Connection:
        return self._conn

    def last(self) -> tuple[int, bytes] | None:
        found = self._conn.execute(_LAST).one_or_none()
        return None if found is None else (found[0], found[1])

    def checkpoint_at(self, seq: int) -> SignedCheckpoint | None:
        found = self._conn.execute(select(*_CHECKPOINT_COLUMNS).where(AuditCheckpoint.seq == seq)).one_or_none()
        if found is None:
            return None
        return SignedCheckpoint(found.seq, found.hash, found.signed_at, found.key_id, found.signature)

    def add_entries(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._conn.execute(insert(AuditEvent), [dict(fields) for fields in rows])

    def add_row(self, statement: object, params: Mapping[str, Any]) -> int:
        if not isinstance(statement, Executable):
            raise TypeError(f"an audited record's row must be a SQLAlchemy statement, not {type(statement).__name__}")
        return self._conn.execute(statement, dict(params)).rowcount

    def add_checkpoint(self, signed: SignedCheckpoint) -> None:
        self._conn.execute(
            insert(AuditCheckpoint),
            {
                "seq": signed.seq,
                "hash": signed.hash,
                "signed_at": signed.signed_at,
                "key_id": signed.key_id,
                "signature": signed.signature,
            },
        )


def connection_of(write: ChainWrite) -> Connection:
    """The connection of an append's transaction, for rows written in it beside the chain's
    (the session log's, :meth:`woundcare.audit.log.AuditLog.append_with`)."""
    if not isinstance(write, _Write):
        raise TypeError("not a write of this store")
    return write.connection


class AuditTrail:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, work: Callable[[ChainWrite], T]) -> T:
        def locked(conn: Connection) -> T:
            lock_chain(conn)
            return work(_Write(conn))

        attempt = 1
        while True:
            try:
                return await self._db.write(locked)
            except IntegrityError:
                # Only a writer that bypassed the chain lock can take our seq; read it again.
                if attempt == _APPEND_ATTEMPTS:
                    raise
                attempt += 1

    async def heads(self) -> tuple[int | None, int]:
        async with self._db.engine.connect() as conn:
            last_checkpoint = await conn.scalar(select(func.max(AuditCheckpoint.seq)))
            head = await conn.scalar(select(func.max(AuditEvent.seq))) or 0
        return last_checkpoint, head

    async def entries(self, up_to: int, after: tuple[int, int] | None, limit: int) -> Sequence[StoredEntry]:
        query = select(*_ENTRY_COLUMNS).where(AuditEvent.seq <= up_to)
        if after is not None:
            seq, id_ = after
            query = query.where(or_(AuditEvent.seq > seq, and_(AuditEvent.seq == seq, AuditEvent.id > id_)))
        query = query.order_by(AuditEvent.seq, AuditEvent.id).limit(limit)
        async with self._db.engine.connect() as conn:
            return [
                StoredEntry(
                    r.id, r.seq, r.at, r.actor, r.role, r.region_id, r.action, r.resource, r.outcome, r.address,
                    r.prev_hash, r.hash,
                )
                for r in await conn.execute(query)
            ]

    async def checkpoints(self, above: int | None, up_to: int) -> Sequence[StoredCheckpoint]:
        query = select(*_CHECKPOINT_COLUMNS).where(AuditCheckpoint.seq <= up_to)
        if above is not None:
            query = query.where(AuditCheckpoint.seq > above)
        query = query.order_by(AuditCheckpoint.seq, AuditCheckpoint.id)
        async with self._db.engine.connect() as conn:
            return [
                StoredCheckpoint(r.id, r.seq, r.hash, r.signed_at, r.key_id, r.signature)
                for r in await conn.execute(query)
            ]
