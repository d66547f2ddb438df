"""The audit chain on SQLite and PostgreSQL: concurrent appends form one chain, and each kind of
tampering with the database is named by ``verify`` at the first entry it touched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from woundcare.audit.chain import GENESIS, CheckpointSigner, encode_entry, link
from woundcare.audit.log import AuditEntry, AuditLog, Outcome
from woundcare.audit.verify import BreakKind, ProgressBar, VerifyResult, render, verify
from woundcare.db.database import Database
from woundcare.db.models import AuditCheckpoint, AuditEvent, Base
from woundcare.records.audit_trail import AuditTrail

SIGNER = CheckpointSigner.from_secrets(b"test server secret")
EVERY = 60
"""Checkpoints at 60, 120, 180 in a chain of 200: entries 181..200 are after the last one."""
SIZE = 200
TARGET = 57
"""The entry each tampering test goes for: not near a checkpoint or a batch edge."""


async def _open(url: str) -> Database:
    # The audit tables are not in the migrations until they are regenerated: build from the models.
    db = Database(url, migrate=False)
    await db.start()
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    return db


@pytest.fixture
async def db(migrated_db_url: str) -> AsyncIterator[Database]:
    database = await _open(migrated_db_url)
    yield database
    await database.stop()


@pytest.fixture
async def seeded(db: Database) -> Database:
    log = AuditLog(AuditTrail(db), SIGNER, checkpoint_every=EVERY)
    for n in range(SIZE):
        await log.record(_entry(n))
    result = await verify(AuditTrail(db), SIGNER)
    assert result.ok and result.head_seq == SIZE and result.last_checkpoint_seq == 180
    return db


def _entry(n: int, writer: str = "a") -> AuditEntry:
    return AuditEntry(
        f"test.{writer}",
        Outcome.OK if n % 3 else Outcome.DENIED,
        actor=f"u{n}",
        role="nurse" if n % 2 else None,
        region_id=n % 4 or None,
        resource=f"patient:p{n}",
        address="127.0.0.1",
    )


async def _sql(db: Database, *statements: str, **params: Any) -> None:
    async with db.engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement), params)


async def _row(db: Database, seq: int) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.execute(select(AuditEvent).where(AuditEvent.seq == seq))).one()


def _hash_of(row: Any, *, seq: int | None = None, prev_hash: bytes | None = None, **changes: Any) -> bytes:
    """What an attacker who knows the (public) format computes for a changed row."""
    fields = {
        name: changes.get(name, getattr(row, name))
        for name in ("actor", "role", "region_id", "action", "resource", "outcome", "address")
    }
    encoded = encode_entry(row.seq if seq is None else seq, changes.get("at", row.at), **fields)
    return link(row.prev_hash if prev_hash is None else prev_hash, encoded)


async def _rehash_from(db: Database, seq: int) -> None:
    """Recompute every hash and link from ``seq`` on, as an attacker without the key can."""
    prev = (await _row(db, seq - 1)).hash if seq > 1 else GENESIS
    async with db.engine.begin() as conn:
        rows = (await conn.execute(select(AuditEvent).where(AuditEvent.seq >= seq).order_by(AuditEvent.seq))).all()
        for row in rows:
            new = _hash_of(row, prev_hash=prev)
            await conn.execute(
                text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE id = :id"),
                {"p": prev, "h": new, "id": row.id},
            )
            prev = new


async def _shift_seq(db: Database, from_seq: int, by: int) -> None:
    """Renumber entries from ``from_seq`` on; through negatives, since PostgreSQL checks
    the unique seq row by row."""
    await _sql(
        db,
        "UPDATE audit_events SET seq = -(seq + CAST(:by AS BIGINT)) WHERE seq >= :s",
        "UPDATE audit_events SET seq = -seq WHERE seq < 0",
        s=from_seq,
        by=by,
    )


async def _broken(db: Database) -> tuple[BreakKind, int]:
    result = await verify(AuditTrail(db), SIGNER, batch_size=64)  # small batches: breaks near batch edges too
    assert result.broken is not None, render(result)
    return result.broken.kind, result.broken.seq


# -- the format ---------------------------------------------------------------------------


def test_encoding_is_unambiguous_and_pinned() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    base: dict[str, Any] = {
        "actor": "u1", "role": "nurse", "region_id": 3, "action": "login",
        "resource": None, "outcome": "ok", "address": "::1",
    }  # fmt: skip
    one = encode_entry(1, at, **base)
    assert encode_entry(1, at, **{**base, "actor": "u", "role": "1nurse"}) != one
    assert encode_entry(1, at, **{**base, "resource": ""}) != one
    assert encode_entry(2, at, **base) != one
    assert encode_entry(1, at.replace(microsecond=678902), **base) != one
    # The format is a contract with every chain already written: it must never change silently.
    assert link(GENESIS, one).hex() == PINNED


PINNED = "5c2e2b418cf901c7d9cb5ceed43724a66f85185f32c316f05840368c04c8884e"


# -- one chain from many writers ----------------------------------------------------------


async def test_concurrent_appends_from_two_processes_form_one_chain(db: Database, migrated_db_url: str) -> None:
    other = await _open(migrated_db_url)  # a second Database: as a CLI process beside the server
    try:
        first = AuditLog(AuditTrail(db), SIGNER, checkpoint_every=25)
        second = AuditLog(AuditTrail(other), SIGNER, checkpoint_every=25)
        for n in range(40):
            await first.record(_entry(n))
        await asyncio.gather(
            *(first.record(_entry(n)) for n in range(40, 120)),
            *(second.record(_entry(n, "b")) for n in range(120, 190)),
        )
        await asyncio.gather(second.record(_entry(190, "b")), *(first.record(_entry(n)) for n in range(191, 200)))
        on_demand = await second.checkpoint()
        assert on_demand is not None and on_demand.seq == 200
        assert (await first.checkpoint()) == on_demand  # nothing new: the same checkpoint

        seen: list[tuple[int, int]] = []
        result = await verify(
            AuditTrail(db), SIGNER, progress=lambda done, total: seen.append((done, total)), batch_size=64
        )
        assert result.ok, render(result)
        assert (result.entries, result.head_seq, result.checkpoints) == (200, 200, 8)
        assert result.last_checkpoint_seq == 200 and result.unanchored == 0
        assert seen[-1] == (200, 200) and [done for done, _ in seen] == sorted(done for done, _ in seen)
        async with db.engine.connect() as conn:
            actions = (await conn.execute(select(AuditEvent.action))).scalars().all()
        assert sorted(set(actions)) == ["test.a", "test.b"] and len(actions) == 200
    finally:
        await other.stop()


async def test_an_append_that_fails_beside_others_leaves_no_gap_in_the_chain(db: Database) -> None:
    """Appends asked for at once run in one transaction of the database's writer, each
    reading the head the one before it wrote; one that fails after linking its entry is
    rolled back alone (to its savepoint, on PostgreSQL with the chain lock it took there),
    and the next links to the entry before it."""
    log = AuditLog(AuditTrail(db), SIGNER, checkpoint_every=EVERY)

    def fails(write: object) -> None:
        raise LookupError("this append alone fails")

    seqs = await asyncio.gather(
        *(log.append(_entry(n)) for n in range(10)),
        log.append_with([_entry(10)], fails),
        *(log.append(_entry(n)) for n in range(11, 20)),
        return_exceptions=True,
    )
    assert isinstance(seqs[10], LookupError)
    assert seqs[:10] + seqs[11:] == list(range(1, 20))
    result = await verify(AuditTrail(db), SIGNER)
    assert result.ok, render(result)
    assert (result.entries, result.head_seq) == (19, 19)


async def test_empty_chain_verifies(db: Database) -> None:
    result = await verify(AuditTrail(db), SIGNER)
    assert result.ok and result.entries == 0 and result.head_hash == GENESIS


async def test_no_signer_means_no_checkpoints(db: Database) -> None:
    log = AuditLog(AuditTrail(db), checkpoint_every=1)
    await log.record(_entry(1))
    with pytest.raises(RuntimeError):
        await log.checkpoint()
    result = await verify(AuditTrail(db), SIGNER)
    assert result.ok and result.checkpoints == 0 and result.unanchored == 1


# -- tampering: each named at the first entry it touched ----------------------------------


async def test_edited_field(seeded: Database) -> None:
    await _sql(seeded, "UPDATE audit_events SET actor = 'u999' WHERE seq = :s", s=TARGET)
    assert await _broken(seeded) == (BreakKind.EDITED, TARGET)


async def test_edited_field_with_its_hash_recomputed(seeded: Database) -> None:
    await _sql(seeded, "UPDATE audit_events SET actor = 'u999' WHERE seq = :s", s=TARGET)
    await _sql(seeded, "UPDATE audit_events SET hash = :h WHERE seq = :s", h=_hash_of(await _row(seeded, TARGET)), s=TARGET)
    assert await _broken(seeded) == (BreakKind.EDITED, TARGET)


async def test_deleted_entry(seeded: Database) -> None:
    await _sql(seeded, "DELETE FROM audit_events WHERE seq = :s", s=TARGET)
    assert await _broken(seeded) == (BreakKind.DELETED, TARGET)


async def test_deleted_entries_with_the_rest_renumbered(seeded: Database) -> None:
    await _sql(seeded, "DELETE FROM audit_events WHERE seq IN (:s, :s_next)", s=TARGET, s_next=TARGET + 1)
    await _shift_seq(seeded, TARGET + 2, -2)
    assert await _broken(seeded) == (BreakKind.DELETED, TARGET)


async def test_reordered_entries(seeded: Database) -> None:
    await _sql(
        seeded,
        "UPDATE audit_events SET seq = -seq WHERE seq IN (:s, :s_next)",
        "UPDATE audit_events SET seq = CASE seq WHEN :neg THEN CAST(:next AS BIGINT) ELSE CAST(:s AS BIGINT) END WHERE seq < 0",
        s=TARGET,
        s_next=TARGET + 1,
        neg=-TARGET,
        next=TARGET + 1,
    )
    assert await _broken(seeded) == (BreakKind.REORDERED, TARGET)


async def test_forged_entry_inserted_in_the_middle(seeded: Database) -> None:
    before = await _row(seeded, TARGET - 1)
    await _shift_seq(seeded, TARGET, 1)
    forged: dict[str, Any] = {
        "seq": TARGET, "at": before.at, "actor": "u1", "role": "admin", "region_id": None,
        "action": "login", "resource": None, "outcome": "ok", "address": "10.0.0.1",
        "prev_hash": before.hash,
    }  # fmt: skip
    fields = {k: v for k, v in forged.items() if k not in ("seq", "at", "prev_hash")}
    forged["hash"] = link(before.hash, encode_entry(TARGET, before.at, **fields))  # a perfect forgery
    async with seeded.engine.begin() as conn:
        await conn.execute(insert(AuditEvent), forged)
    assert await _broken(seeded) == (BreakKind.INSERTED, TARGET)


async def test_tail_cut_off_before_the_last_checkpoint(seeded: Database) -> None:
    await _sql(seeded, "DELETE FROM audit_events WHERE seq > 150")
    assert await _broken(seeded) == (BreakKind.TRUNCATED, 151)


async def test_tail_after_the_last_checkpoint_is_not_protected(seeded: Database) -> None:
    """The documented limit: 181..200 are after the last checkpoint (180); cutting them off
    leaves a valid earlier chain. What verify does show is how much is exposed."""
    await _sql(seeded, "DELETE FROM audit_events WHERE seq > 190")
    result = await verify(AuditTrail(seeded), SIGNER)
    assert result.ok and result.head_seq == 190 and result.unanchored == 10


async def test_rollback_with_the_checkpoints_over_it_is_not_detectable(seeded: Database) -> None:
    """Also documented: deleting entries *and* the checkpoints over them is a valid earlier state."""
    await _sql(seeded, "DELETE FROM audit_events WHERE seq > 100", "DELETE FROM audit_checkpoints WHERE seq > 100")
    result = await verify(AuditTrail(seeded), SIGNER)
    assert result.ok and result.last_checkpoint_seq == 60 and result.unanchored == 40


async def test_chain_rewritten_with_recomputed_hashes(seeded: Database) -> None:
    await _sql(seeded, "UPDATE audit_events SET actor = 'u999' WHERE seq = :s", s=TARGET)
    await _rehash_from(seeded, TARGET)
    # Self-consistent from genesis to head: only the signed checkpoint at 60 gives it away.
    result = await verify(AuditTrail(seeded), SIGNER)
    assert result.broken is not None
    assert (result.broken.kind, result.broken.seq) == (BreakKind.REWRITTEN, 60)
    assert "entries 1..60" in result.broken.detail


async def test_checkpoint_altered_to_match_a_rewritten_chain(seeded: Database) -> None:
    await _sql(seeded, "UPDATE audit_events SET actor = 'u999' WHERE seq = :s", s=TARGET)
    await _rehash_from(seeded, TARGET)
    for seq in (60, 120, 180):
        await _sql(seeded, "UPDATE audit_checkpoints SET hash = :h WHERE seq = :s", h=(await _row(seeded, seq)).hash, s=seq)
    assert await _broken(seeded) == (BreakKind.BAD_CHECKPOINT, 60)


async def test_checkpoint_forged_with_another_key(seeded: Database) -> None:
    forger = CheckpointSigner.from_secrets(b"not the server secret")
    row = await _row(seeded, 150)
    signed = forger.sign(150, row.hash, datetime.now(UTC))
    async with seeded.engine.begin() as conn:
        await conn.execute(
            insert(AuditCheckpoint),
            {
                "seq": 150, "hash": row.hash, "signed_at": signed.signed_at,
                "key_id": signed.key_id, "signature": signed.signature,
            },
        )
    assert await _broken(seeded) == (BreakKind.BAD_CHECKPOINT, 150)


async def test_rotated_secret_still_verifies_old_checkpoints(seeded: Database) -> None:
    rotated = CheckpointSigner.from_secrets(b"the new secret", b"test server secret")
    assert (await verify(AuditTrail(seeded), rotated)).ok
    assert not (await verify(AuditTrail(seeded), CheckpointSigner.from_secrets(b"the new secret"))).ok


def test_report_names_the_break() -> None:
    from woundcare.audit.verify import Break

    result = VerifyResult(56, 56, b"\x01" * 32, 0, 0, Break(BreakKind.EDITED, 57, 9, "its fields no longer match its hash"))
    assert render(result).startswith("audit chain BROKEN at seq 57 (row id 9): edited:")


def test_progress_bar_ends_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    bar = ProgressBar(sys.stderr, width=10)
    bar(5, 10)
    bar(10, 10)
    assert capsys.readouterr().err.endswith("[##########] 10/10\n")
