"""Writing audit events. Callers pass pseudonymous ids only (``u12``, ``d3``,
``patient:<pseudonym>``, ``consultation:<id>``), never names or national ids.

Every entry is a link in one hash chain (format: :mod:`woundcare.audit.chain`), whichever
process or instance writes it. An append is one short transaction that holds the chain's
lock, reads the last entry's seq and hash, and inserts the next one:

- PostgreSQL: ``pg_advisory_xact_lock(CHAIN_LOCK_ID)``, released at commit or rollback, so
  every server instance and CLI process queues on it;
- SQLite: ``BEGIN IMMEDIATE``, which takes the database's write lock before the read (other
  processes wait up to ``busy_timeout``), plus an ``asyncio.Lock`` so this process's own
  requests queue in memory instead of on the file lock.

``seq`` is unique as well, so even a writer that skipped the lock could not fork the chain: its
insert fails and is retried. Every ``checkpoint_every`` entries, the same transaction also
writes a signed checkpoint; :meth:`AuditLog.checkpoint` writes one on demand.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..db.database import Database
from ..db.models import AuditCheckpoint, AuditEvent, utcnow
from .chain import GENESIS, CheckpointSigner, SignedCheckpoint, encode_entry, link

CHAIN_LOCK_ID = int.from_bytes(hashlib.sha256(b"woundcare.audit.chain").digest()[:8], "big", signed=True)
"""The PostgreSQL advisory lock that serialises appends (any fixed 64-bit number)."""
DEFAULT_CHECKPOINT_EVERY = 1000
_APPEND_ATTEMPTS = 3


class Outcome(str, enum.Enum):
    OK = "ok"
    DENIED = "denied"
    FAILED = "failed"
    LOCKED = "locked"
    THROTTLED = "throttled"
    INTEGRITY = "integrity_error"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    action: str
    outcome: Outcome
    actor: str | None = None
    role: str | None = None
    region_id: int | None = None
    resource: str | None = None
    address: str | None = None


class AuditLog:
    """Appends to the audit chain.

    Without a ``signer`` no checkpoints are written (entries are still chained); pass
    ``CheckpointSigner.from_secrets(settings.signing_key())`` so they are.
    """

    def __init__(
        self,
        db: Database,
        signer: CheckpointSigner | None = None,
        *,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError(f"'checkpoint_every' must be at least 1 (got {checkpoint_every})")
        self._db = db
        self._signer = signer
        self._every = checkpoint_every
        self._lock = asyncio.Lock()

    async def record(self, entry: AuditEntry) -> None:
        """Store one entry in its own transaction, so a failed request is still audited."""
        await self.append(entry)

    async def append(self, entry: AuditEntry) -> int:
        """Store one entry; returns its seq."""
        attempt = 1
        while True:
            try:
                async with self._lock:
                    return await self._append(entry)
            except IntegrityError:
                # Only a writer that bypassed the chain lock can take our seq; read it again.
                if attempt == _APPEND_ATTEMPTS:
                    raise
                attempt += 1

    async def checkpoint(self) -> SignedCheckpoint | None:
        """Sign the chain's current last entry now (None if the chain is empty)."""
        if self._signer is None:
            raise RuntimeError("no checkpoint signer configured")
        async with self._lock, self._db.engine.connect() as conn:
            await lock_chain(conn)
            last = (await conn.execute(_LAST)).one_or_none()
            if last is None:
                return None
            seq, hash_ = last
            existing = (
                await conn.execute(select(AuditCheckpoint).where(AuditCheckpoint.seq == seq))
            ).one_or_none()
            if existing is not None:
                return SignedCheckpoint(
                    existing.seq, existing.hash, existing.signed_at, existing.key_id, existing.signature
                )
            signed = await _insert_checkpoint(conn, self._signer, seq, hash_)
            await conn.commit()
            return signed

    async def _append(self, entry: AuditEntry) -> int:
        async with self._db.engine.connect() as conn:
            await lock_chain(conn)
            last = (await conn.execute(_LAST)).one_or_none()
            seq, prev_hash = (1, GENESIS) if last is None else (last[0] + 1, last[1])
            at = utcnow()
            fields: dict[str, Any] = {
                "actor": entry.actor,
                "role": entry.role,
                "region_id": entry.region_id,
                "action": entry.action,
                "resource": entry.resource,
                "outcome": entry.outcome.value,
                "address": entry.address,
            }
            hash_ = link(prev_hash, encode_entry(seq, at, **fields))
            await conn.execute(
                insert(AuditEvent), {"seq": seq, "at": at, "prev_hash": prev_hash, "hash": hash_, **fields}
            )
            if self._signer is not None and seq % self._every == 0:
                await _insert_checkpoint(conn, self._signer, seq, hash_)
            await conn.commit()
            return seq


_LAST = select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)


async def lock_chain(conn: AsyncConnection) -> None:
    """Begin ``conn``'s transaction holding the chain's write lock (see the module docstring)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # pysqlite begins lazily and only before a write; take the write lock before the read.
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": CHAIN_LOCK_ID})
    else:
        raise RuntimeError(f"audit chain: no append lock for the {dialect} dialect")


async def _insert_checkpoint(
    conn: AsyncConnection, signer: CheckpointSigner, seq: int, hash_: bytes
) -> SignedCheckpoint:
    signed = signer.sign(seq, hash_, utcnow())
    await conn.execute(
        insert(AuditCheckpoint),
        {
            "seq": signed.seq,
            "hash": signed.hash,
            "signed_at": signed.signed_at,
            "key_id": signed.key_id,
            "signature": signed.signature,
        },
    )
    return signed
