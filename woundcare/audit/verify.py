"""Checking the audit chain: every entry's hash, its link to the one before, seq without gaps,
and every signed checkpoint.

The walk streams the chain in seq order in batches (keyset pagination, constant memory) and
stops at the first break, which it names by seq and kind:

==================  =========================================================================
``edited``          an entry's fields no longer match its hash; or its hash was recomputed
                    after an edit, so the next entry no longer links to it
``deleted``         seq has a gap (or entries were removed and the later ones renumbered)
``reordered``       an entry links to one that now comes after it
``inserted``        an entry the next one links past: not part of the original chain
``truncated``       a signed checkpoint names a seq beyond the chain's last entry
``bad_checkpoint``  a checkpoint whose signature does not verify (forged or altered)
``rewritten``       the chain is consistent, but not with a signed checkpoint: entries up to
                    that checkpoint were rewritten with recomputed hashes
==================  =========================================================================

What cannot be detected from the database alone: entries after the last checkpoint can be
cut off, together with any checkpoint over them, or rewritten with recomputed hashes, by
someone who can write the database; what is left is a valid earlier state of the chain.
:attr:`VerifyResult.unanchored` says how many entries that concerns; frequent checkpoints
(every ``checkpoint_every`` entries, plus :meth:`AuditLog.checkpoint` on a timer) keep it
small, and the head seq and hash printed by ``woundcare audit verify`` can be kept elsewhere
as an outside witness.

The walk checks the chain as it was when it began: entries appended meanwhile are left for
the next run.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from ..config import Settings
from .chain import GENESIS, CheckpointSigner, encode_entry, link
from .store import ChainStore, StoredCheckpoint, StoredEntry

BATCH_SIZE = 5000
WINDOW = 8
"""Entries looked at after a break to tell a reorder or a renumbered deletion from an edit."""

Progress = Callable[[int, int], None]
"""Called with (entries checked, entries to check)."""

class BreakKind(str, enum.Enum):
    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    INSERTED = "inserted"
    TRUNCATED = "truncated"
    BAD_CHECKPOINT = "bad_checkpoint"
    REWRITTEN = "rewritten"


@dataclass(frozen=True, slots=True)
class Break:
    kind: BreakKind
    seq: int
    """The first seq that is not as written: the changed, missing or foreign entry."""
    entry_id: int | None
    """The row's id (``audit_events.id``, or ``audit_checkpoints.id`` for checkpoint kinds);
    None for a missing entry."""
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    entries: int
    """Entries checked: the chain up to its head when the walk began (or up to the break)."""
    head_seq: int
    head_hash: bytes
    """The last checked entry's hash (GENESIS for an empty chain): an outside witness can keep it."""
    checkpoints: int
    """Checkpoints whose signature and hash were checked."""
    last_checkpoint_seq: int
    """The highest good checkpoint's seq (0 if none)."""
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None

    @property
    def unanchored(self) -> int:
        """Entries after the last checkpoint: only the chain itself protects them."""
        return max(self.head_seq - self.last_checkpoint_seq, 0)


async def verify(
    store: ChainStore,
    signer: CheckpointSigner,
    *,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> VerifyResult:
    """Walk the whole chain; the result names the first break, if any."""
    if batch_size < WINDOW:
        raise ValueError(f"'batch_size' must be at least {WINDOW} (got {batch_size})")
    # Checkpoints first: a checkpoint is committed with or after its entry, so every
    # checkpoint read here has its entry at or below the head read next, unless cut off.
    last_checkpoint, head = await store.heads()
    walk = _Walk(store, signer, head, batch_size)
    broken = await walk.run(progress)
    if broken is None and last_checkpoint is not None and last_checkpoint > head:
        broken = await walk.beyond_head(last_checkpoint)
    if progress is not None and head == 0:
        progress(0, 0)
    return VerifyResult(
        entries=walk.checked,
        head_seq=walk.prev.seq if walk.prev is not None else 0,
        head_hash=walk.prev.hash if walk.prev is not None else GENESIS,
        checkpoints=walk.checkpoints,
        last_checkpoint_seq=walk.last_checkpoint,
        broken=broken,
    )


class _Walk:
    def __init__(self, store: ChainStore, signer: CheckpointSigner, head: int, batch_size: int) -> None:
        self._store = store
        self._signer = signer
        self._head = head
        self._batch_size = batch_size
        self.prev: StoredEntry | None = None
        self.checked = 0
        self.checkpoints = 0
        self.last_checkpoint = 0

    async def run(self, progress: Progress | None) -> Break | None:
        after: tuple[int, int] | None = None
        while True:
            rows = await self._entries(after, self._batch_size)
            if not rows:
                return None
            checkpoints = list(await self._store.checkpoints(after[0] if after else None, rows[-1].seq))
            for index, row in enumerate(rows):
                broken = await self._check(row, rows, index, checkpoints)
                if broken is not None:
                    return broken
            after = (rows[-1].seq, rows[-1].id)
            if progress is not None:
                progress(self.checked, self._head)

    async def beyond_head(self, last_checkpoint: int) -> Break | None:
        """Checkpoints signed for entries the chain no longer has."""
        for cp in await self._store.checkpoints(self._head, last_checkpoint):
            if (why := self._bad_signature(cp)) is not None:
                return Break(BreakKind.BAD_CHECKPOINT, cp.seq, cp.id, why)
            return Break(
                BreakKind.TRUNCATED,
                self._head + 1,
                None,
                f"entries {self._head + 1}..{cp.seq} and later are missing "
                f"(checkpoint {cp.id} signed seq {cp.seq})",
            )
        return None

    async def _check(
        self, row: StoredEntry, rows: Sequence[StoredEntry], index: int, checkpoints: list[StoredCheckpoint]
    ) -> Break | None:
        expected = self.prev.seq + 1 if self.prev is not None else 1
        if row.seq > expected:
            missing = f"{expected}" if row.seq == expected + 1 else f"{expected}..{row.seq - 1}"
            return Break(BreakKind.DELETED, expected, None, f"entries {missing} are missing")
        if row.seq < expected:
            return Break(BreakKind.INSERTED, row.seq, row.id, f"a second entry with seq {row.seq}")
        if checkpoints and checkpoints[0].seq < row.seq:
            cp = checkpoints[0]
            return Break(BreakKind.BAD_CHECKPOINT, cp.seq, cp.id, "names a seq the chain never had")
        prev_hash = self.prev.hash if self.prev is not None else GENESIS
        if row.prev_hash != prev_hash or _rehash(row) != row.hash:
            window = list(rows[index + 1 : index + 1 + WINDOW])
            if len(window) < WINDOW and len(rows) == self._batch_size:
                window += await self._entries((rows[-1].seq, rows[-1].id), WINDOW - len(window))
            return _classify(row, self.prev, prev_hash, window)
        while checkpoints and checkpoints[0].seq == row.seq:
            cp = checkpoints.pop(0)
            if (why := self._bad_signature(cp)) is not None:
                return Break(BreakKind.BAD_CHECKPOINT, cp.seq, cp.id, why)
            if cp.hash != row.hash:
                since = self.last_checkpoint + 1
                return Break(
                    BreakKind.REWRITTEN,
                    cp.seq,
                    cp.id,
                    f"the chain does not hold the hash checkpoint {cp.id} signed for seq {cp.seq}: "
                    f"entries {since}..{cp.seq} were rewritten with recomputed hashes",
                )
            self.checkpoints += 1
            self.last_checkpoint = cp.seq
        self.prev = row
        self.checked += 1
        return None

    def _bad_signature(self, cp: StoredCheckpoint) -> str | None:
        return self._signer.check(cp.seq, cp.hash, cp.signed_at, cp.key_id, cp.signature)

    async def _entries(self, after: tuple[int, int] | None, limit: int) -> Sequence[StoredEntry]:
        return await self._store.entries(self._head, after, limit)


def _rehash(row: StoredEntry, *, seq: int | None = None) -> bytes | None:
    """The hash ``row`` should have (with ``seq`` instead of its own, if given); None if the
    row cannot even be encoded (a tampered value of the wrong type or size)."""
    try:
        encoded = encode_entry(
            row.seq if seq is None else seq,
            row.at,
            actor=row.actor,
            role=row.role,
            region_id=row.region_id,
            action=row.action,
            resource=row.resource,
            outcome=row.outcome,
            address=row.address,
        )
        return link(bytes(row.prev_hash), encoded)
    except (ValueError, TypeError, AttributeError):
        return None


def _classify(
    row: StoredEntry, prev: StoredEntry | None, prev_hash: bytes, window: Sequence[StoredEntry]
) -> Break:
    """Name the break at ``row`` (its seq is the expected one; its hash or link is wrong)."""
    self_ok = _rehash(row) == row.hash
    if row.prev_hash == prev_hash:
        return Break(BreakKind.EDITED, row.seq, row.id, "its fields no longer match its hash")
    if prev is not None and row.prev_hash == prev.prev_hash:
        return Break(
            BreakKind.INSERTED, prev.seq, prev.id, f"not part of the chain: entry {row.seq} links past it"
        )
    for later in window:
        if later.hash == row.prev_hash:
            return Break(
                BreakKind.REORDERED, row.seq, row.id, f"out of order: it follows the entry now at seq {later.seq}"
            )
    if not self_ok:
        for missing in range(1, WINDOW + 1):
            if _rehash(row, seq=row.seq + missing) == row.hash:
                return Break(
                    BreakKind.DELETED,
                    row.seq,
                    None,
                    f"{missing} entries deleted here and the later ones renumbered "
                    f"(this row was seq {row.seq + missing})",
                )
        return Break(BreakKind.EDITED, row.seq, row.id, "neither its hash nor its link to the previous entry holds")
    if prev is None:
        return Break(BreakKind.EDITED, row.seq, row.id, "the first entry does not start from the genesis hash")
    return Break(
        BreakKind.EDITED,
        prev.seq,
        prev.id,
        f"its hash was recomputed after a change: entry {row.seq} no longer links to it",
    )


class ProgressBar:
    """``verifying [######........] 1200/5000`` on one line of ``stream``."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._open = False

    def __call__(self, done: int, total: int) -> None:
        filled = self._width * done // max(total, 1)
        self._open = done < total
        end = "" if self._open else "\n"
        bar = "#" * filled + "." * (self._width - filled)
        print(f"\rverifying [{bar}] {done}/{total}", end=end, file=self._stream, flush=True)

    def finish(self) -> None:
        """End the line if the walk stopped early (at a break)."""
        if self._open:
            print(file=self._stream, flush=True)
            self._open = False


def render(result: VerifyResult) -> str:
    if result.broken is not None:
        b = result.broken
        where = f"seq {b.seq}" + (f" (row id {b.entry_id})" if b.entry_id is not None else "")
        return (
            f"audit chain BROKEN at {where}: {b.kind.value}: {b.detail}\n"
            f"{result.entries} entries before it are intact"
        )
    lines = [
        f"audit chain ok: {result.entries} entries, {result.checkpoints} checkpoints",
        f"head: seq {result.head_seq} hash {result.head_hash.hex()}",
    ]
    if result.last_checkpoint_seq:
        lines.append(
            f"last checkpoint at seq {result.last_checkpoint_seq}; "
            f"{result.unanchored} entries after it are protected by the chain only"
        )
    else:
        lines.append("no checkpoint yet: the chain alone protects the entries")
    return "\n".join(lines)


async def verify_command(
    store: ChainStore, settings: Settings, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``woundcare audit verify``: a progress bar on ``err``, the verdict on ``out`` (the
    process's streams, looked up at call time); returns the exit code (0 intact, 1 broken)."""
    out = out or sys.stdout
    signer = CheckpointSigner.from_secrets(settings.signing_key())
    bar = ProgressBar(err or sys.stderr)
    result = await verify(store, signer, progress=bar)
    bar.finish()
    print(render(result), file=out)
    return 0 if result.ok else 1
