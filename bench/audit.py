"""The audit chain: how long ``verify`` takes over 100,000 entries, and appends per second.

For each database (SQLite in a temporary folder; PostgreSQL in a fresh database when reachable):

``seed``
    100,000 entries bulk-inserted, their chain (and a signed checkpoint every 1,000) computed
    in Python: the state a busy pilot reaches in some weeks. Timed once, for information.
``verify``
    ``woundcare.audit.verify.verify`` over the whole chain, median of ``--runs``.
    Target (issue #7): under 10 s.
``append``
    ``AuditLog.record`` one at a time (lock, read the last seq and hash, insert, commit), as
    one request after another does; beside it the floor, the unchained insert the audit log
    did before (one row in its own transaction, no lock, no read). No target: the ratio says
    what chaining costs per request.

    python -m bench.audit [--entries N] [--runs N] [--appends N] [--postgres DSN | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import insert

from bench.common import postgres_database
from woundcare.audit.chain import GENESIS, CheckpointSigner, encode_entry, link
from woundcare.audit.log import AuditEntry, AuditLog, Outcome
from woundcare.audit.verify import verify
from woundcare.db.database import Database
from woundcare.db.models import AuditCheckpoint, AuditEvent, Base
from woundcare.records.audit_trail import AuditTrail

TARGET_SECONDS = 10.0
"""Verifying 100,000 entries must take less than this (median run)."""
DEFAULT_ENTRIES = 100_000
DEFAULT_RUNS = 3
MIN_RUNS = 3
DEFAULT_APPENDS = 500
CHECKPOINT_EVERY = 1000
SEED_CHUNK = 5000
WARMUP_APPENDS = 20
DEFAULT_POSTGRES = os.environ.get("WOUNDCARE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SIGNER = CheckpointSigner.from_secrets(b"bench server secret")


@dataclass(frozen=True, slots=True)
class Summary:
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)


@dataclass(frozen=True, slots=True)
class Result:
    database: str
    entries: int
    seed_seconds: float
    verify: Summary
    appends: int
    append_seconds: float
    floor_seconds: float

    @property
    def met(self) -> bool:
        return self.verify.median < TARGET_SECONDS

    @property
    def appends_per_second(self) -> float:
        return self.appends / self.append_seconds

    @property
    def floor_per_second(self) -> float:
        return self.appends / self.floor_seconds


def _entry(n: int) -> AuditEntry:
    """Like the API's entries: a user, a role, a region, a pseudonymous resource, an address."""
    return AuditEntry(
        "api.patients.view" if n % 5 else "login.password",
        Outcome.OK if n % 11 else Outcome.DENIED,
        actor=f"u{n % 97}",
        role="nurse",
        region_id=n % 3 + 1,
        resource=f"patient:p{n % 1009:04d}",
        address=f"10.0.{n % 256}.{n % 7}",
    )


async def seed(db: Database, count: int) -> float:
    """Bulk-insert ``count`` chained entries and their checkpoints; returns the seconds taken."""
    started = time.perf_counter()
    at = datetime.now(UTC) - timedelta(days=30)
    prev = GENESIS
    rows: list[dict[str, object]] = []
    checkpoints: list[dict[str, object]] = []
    async with db.engine.begin() as conn:
        for seq in range(1, count + 1):
            entry = _entry(seq)
            at += timedelta(milliseconds=25)
            fields: dict[str, Any] = {
                "actor": entry.actor, "role": entry.role, "region_id": entry.region_id,
                "action": entry.action, "resource": entry.resource,
                "outcome": entry.outcome.value, "address": entry.address,
            }  # fmt: skip
            hash_ = link(prev, encode_entry(seq, at, **fields))
            rows.append({"seq": seq, "at": at, "prev_hash": prev, "hash": hash_, **fields})
            if seq % CHECKPOINT_EVERY == 0:
                signed = SIGNER.sign(seq, hash_, at)
                checkpoints.append(
                    {"seq": seq, "hash": hash_, "signed_at": at, "key_id": signed.key_id, "signature": signed.signature}
                )
            prev = hash_
            if len(rows) == SEED_CHUNK or seq == count:
                await conn.execute(insert(AuditEvent), rows)
                rows = []
        if checkpoints:
            await conn.execute(insert(AuditCheckpoint), checkpoints)
    return time.perf_counter() - started


async def time_verify(db: Database, count: int) -> float:
    started = time.perf_counter()
    result = await verify(AuditTrail(db), SIGNER)
    seconds = time.perf_counter() - started
    if not result.ok or result.entries != count:
        raise RuntimeError(f"the seeded chain does not verify: {result}")
    return seconds


async def time_appends(db: Database, count: int) -> float:
    log = AuditLog(AuditTrail(db), SIGNER, checkpoint_every=CHECKPOINT_EVERY)
    for n in range(WARMUP_APPENDS):
        await log.record(_entry(n))
    started = time.perf_counter()
    for n in range(count):
        await log.record(_entry(n))
    return time.perf_counter() - started


async def time_floor(db: Database, count: int) -> float:
    """The pre-chain audit log: one unchained row per transaction (seq taken from a counter)."""
    base = 10_000_000
    started = time.perf_counter()
    for n in range(count):
        entry = _entry(n)
        async with db.engine.begin() as conn:
            await conn.execute(
                insert(AuditEvent),
                {
                    "seq": base + n, "at": datetime.now(UTC), "actor": entry.actor, "role": entry.role,
                    "region_id": entry.region_id, "action": entry.action, "resource": entry.resource,
                    "outcome": entry.outcome.value, "address": entry.address,
                    "prev_hash": GENESIS, "hash": GENESIS,
                },
            )  # fmt: skip
    return time.perf_counter() - started


async def measure_one(name: str, url: str, entries: int, runs: int, appends: int) -> Result:
    db = Database(url, migrate=False)
    await db.start()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        seed_seconds = await seed(db, entries)
        await time_verify(db, entries)  # warm-up: caches, first-use imports
        verify_times = tuple([await time_verify(db, entries) for _ in range(runs)])
        append_seconds = await time_appends(db, appends)
        # Last, since its rows are not part of the chain.
        floor_seconds = await time_floor(db, appends)
    finally:
        await db.stop()
    return Result(name, entries, seed_seconds, Summary(verify_times), appends, append_seconds, floor_seconds)


async def measure(entries: int, runs: int, appends: int, postgres: str | None) -> tuple[list[Result], list[str]]:
    results: list[Result] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="woundcare-bench-audit-") as work_dir:
        url = f"sqlite+aiosqlite:///{Path(work_dir) / 'audit.db'}"
        results.append(await measure_one("SQLite", url, entries, runs, appends))
    if postgres is None:
        notes.append("PostgreSQL: skipped (--no-postgres)")
        return results, notes
    async with AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(postgres_database(postgres))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            notes.append(f"PostgreSQL: skipped, not reachable at {postgres} ({type(exc).__name__}: {exc})")
            return results, notes
        results.append(await measure_one("PostgreSQL", url, entries, runs, appends))
    return results, notes


def render(results: Sequence[Result], notes: Sequence[str], runs: int) -> str:
    lines = [f"audit chain: verify (median of {runs} runs, +1 warm-up) and single appends", ""]
    for r in results:
        verdict = "met" if r.met else "NOT met"
        lines += [
            f"{r.database}:",
            f"  seed     {r.entries:,} entries + {r.entries // CHECKPOINT_EVERY} checkpoints in {r.seed_seconds:.1f} s",
            (
                f"  verify   {r.entries:,} entries: median {r.verify.median:.2f} s "
                f"(min {r.verify.min:.2f}, max {r.verify.max:.2f}), {r.entries / r.verify.median:,.0f} entries/s"
            ),
            (
                f"  append   {r.appends_per_second:,.0f} appends/s one at a time "
                f"({1000 * r.append_seconds / r.appends:.2f} ms each); unchained insert floor "
                f"{r.floor_per_second:,.0f}/s; ratio {r.appends_per_second / r.floor_per_second:.2f}"
            ),
            f"  verify {r.entries:,} entries in {r.verify.median:.2f} s   target < {TARGET_SECONDS:.0f} s: {verdict}",
            "",
        ]
    lines += notes
    return "\n".join(lines).rstrip()


def _runs(text: str) -> int:
    value = int(text)
    if value < MIN_RUNS:
        raise argparse.ArgumentTypeError(f"at least {MIN_RUNS} runs for a median (got {value})")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.audit",
        description="Verify time of a seeded audit chain and single-append throughput, on SQLite "
        "and (when reachable) PostgreSQL.",
    )
    parser.add_argument("--entries", type=_positive, default=DEFAULT_ENTRIES,
                        help=f"entries to seed (default {DEFAULT_ENTRIES:,})")
    parser.add_argument("--runs", type=_runs, default=DEFAULT_RUNS,
                        help=f"verify runs for the median (default {DEFAULT_RUNS}, at least {MIN_RUNS})")
    parser.add_argument("--appends", type=_positive, default=DEFAULT_APPENDS,
                        help=f"single appends timed (default {DEFAULT_APPENDS})")
    databases = parser.add_mutually_exclusive_group()
    databases.add_argument("--postgres", default=DEFAULT_POSTGRES, metavar="DSN",
                           help="admin DSN to create a scratch database (default $WOUNDCARE_TEST_POSTGRES or local)")
    databases.add_argument("--no-postgres", action="store_const", const=None, dest="postgres",
                           help="SQLite only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results, notes = asyncio.run(measure(args.entries, args.runs, args.appends, args.postgres))
    print(render(results, notes, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
