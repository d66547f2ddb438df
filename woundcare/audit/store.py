"""Where the audit chain's rows are kept: an interface, so :mod:`~woundcare.audit.log` decides
how entries link and when a checkpoint is signed, and :mod:`~woundcare.audit.verify` how a
break is named, while the store (the ``audit_events`` and ``audit_checkpoints`` tables,
:mod:`woundcare.records.audit_trail`) only locks, reads and writes rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from .chain import SignedCheckpoint

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An ``audit_events`` row as read back, whatever an editor of the database made of it."""

    id: int
    seq: int
    at: datetime
    actor: str | None
    role: str | None
    region_id: int | None
    action: str
    resource: str | None
    outcome: str
    address: str | None
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    id: int
    seq: int
    hash: bytes
    signed_at: datetime
    key_id: str
    signature: bytes


class ChainWrite(Protocol):
    """One transaction of :meth:`ChainStore.append`, holding the chain's write lock. Its
    methods block: the store runs an append's work where its database driver is, in one go
    (on SQLite one thread, one hand-off from the event loop)."""

    def last(self) -> tuple[int, bytes] | None:
        """The last entry's seq and hash; None for an empty chain."""
        ...

    def checkpoint_at(self, seq: int) -> SignedCheckpoint | None: ...

    def add_entries(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert entries, each with seq, at, prev_hash, hash and the entry's own fields, in
        one statement."""
        ...

    def add_checkpoint(self, signed: SignedCheckpoint) -> None: ...

    def add_row(self, statement: object, params: Mapping[str, Any]) -> int:
        """Run a statement of the record that the entry audits, in the entry's transaction;
        returns the number of rows it changed. The statement is the store's own kind (a
        SQLAlchemy statement for :mod:`woundcare.records.audit_trail`)."""
        ...


class ChainStore(Protocol):
    async def append(self, work: Callable[[ChainWrite], T]) -> T:
        """Run ``work`` in one short transaction that holds the chain's lock across every
        writer (process and instance), and commit it; again, a few times, if a writer that
        skipped the lock took the seq it wrote. This process's appends queue in memory, in
        order, not on the lock."""
        ...

    async def heads(self) -> tuple[int | None, int]:
        """The highest checkpointed seq (None without checkpoints), then the highest seq (0
        for an empty chain); checkpoints read first, so each has its entry at or below the
        head unless the chain was cut off."""
        ...

    async def entries(self, up_to: int, after: tuple[int, int] | None, limit: int) -> Sequence[StoredEntry]:
        """Up to ``limit`` entries with seq at most ``up_to``, after (seq, id) ``after``, by
        (seq, id): a duplicated seq is not skipped."""
        ...

    async def checkpoints(self, above: int | None, up_to: int) -> Sequence[StoredCheckpoint]:
        """The checkpoints with ``above`` < seq <= ``up_to``, by (seq, id)."""
        ...
