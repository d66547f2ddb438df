"""Writing audit events. Callers pass pseudonymous ids only (``u12``, ``d3``,
``patient:<pseudonym>``, ``consultation:<id>``), never names or national ids.

Every entry is a link in one hash chain (format: :mod:`woundcare.audit.chain`), whichever
process or instance writes it. An append is one short transaction of the
:class:`~woundcare.audit.store.ChainStore` that holds the chain's lock across processes
(:mod:`woundcare.records.audit_trail` says how), reads the last entry's seq and hash, and
inserts the next one; the store queues this process's own appends in memory instead of on the
database's lock. Every ``checkpoint_every`` entries, the same transaction
also writes a signed checkpoint; :meth:`AuditLog.checkpoint` writes one on demand.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..db.models import utcnow
from .chain import GENESIS, CheckpointSigner, SignedCheckpoint, encode_entry, link
from .store import ChainStore, ChainWrite

DEFAULT_CHECKPOINT_EVERY = 1000

RowStatement = tuple[object, Mapping[str, Any]]
"""A statement of the chain store's kind (see :meth:`ChainWrite.add_row`) and its parameters."""
T = TypeVar("T")


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
        store: ChainStore,
        signer: CheckpointSigner | None = None,
        *,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError(f"'checkpoint_every' must be at least 1 (got {checkpoint_every})")
        self._store = store
        self._signer = signer
        self._every = checkpoint_every

    async def record(self, entry: AuditEntry) -> None:
        """Store one entry in its own transaction, so a failed request is still audited."""
        await self.append(entry)

    async def append(self, entry: AuditEntry) -> int:
        """Store one entry; returns its seq."""
        return await self._store.append(lambda write: self._link(write, (entry,)))

    async def append_with(self, entries: Sequence[AuditEntry], work: Callable[[ChainWrite], T]) -> T:
        """Store ``entries`` in order and run ``work`` in the same transaction: both or
        neither. One read of the chain's head and one insert for all of them, so a batch of
        joins costs the chain about what one entry does (:mod:`woundcare.records.session_log`)."""

        def both(write: ChainWrite) -> T:
            if entries:
                self._link(write, entries)
            return work(write)

        return await self._store.append(both)

    async def record_with(self, entry: AuditEntry, rows: Sequence[RowStatement]) -> int:
        """Store one entry in one transaction with the rows of the record it audits (each
        statement must change exactly one row): the record and its audit entry are committed
        together or not at all, in one round of the chain's lock. Returns the entry's seq."""

        def together(write: ChainWrite) -> int:
            for statement, params in rows:
                changed = write.add_row(statement, params)
                if changed != 1:
                    raise RuntimeError(f"expected a statement to change one row, changed {changed}")
            return self._link(write, (entry,))

        return await self._store.append(together)

    async def checkpoint(self) -> SignedCheckpoint | None:
        """Sign the chain's current last entry now (None if the chain is empty)."""
        signer = self._signer
        if signer is None:
            raise RuntimeError("no checkpoint signer configured")
        return await self._store.append(lambda write: _checkpoint(write, signer))

    def _link(self, write: ChainWrite, entries: Sequence[AuditEntry]) -> int:
        """Chain ``entries`` after the last one and insert them; returns the last seq."""
        last = write.last()
        seq, prev_hash = (0, GENESIS) if last is None else last
        at = utcnow()
        rows: list[dict[str, Any]] = []
        signed: SignedCheckpoint | None = None
        for entry in entries:
            seq += 1
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
            rows.append({"seq": seq, "at": at, "prev_hash": prev_hash, "hash": hash_, **fields})
            prev_hash = hash_
            if self._signer is not None and seq % self._every == 0:
                # Only the batch's last due checkpoint: it vouches for every entry before it.
                signed = self._signer.sign(seq, hash_, at)
        write.add_entries(rows)
        if signed is not None:
            write.add_checkpoint(signed)
        return seq


def _checkpoint(write: ChainWrite, signer: CheckpointSigner) -> SignedCheckpoint | None:
    """The chain's last entry signed, unless it is signed already (then that checkpoint)."""
    last = write.last()
    if last is None:
        return None
    seq, hash_ = last
    existing = write.checkpoint_at(seq)
    if existing is not None:
        return existing
    signed = signer.sign(seq, hash_, utcnow())
    write.add_checkpoint(signed)
    return signed
