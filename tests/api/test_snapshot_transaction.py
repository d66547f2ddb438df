"""One upload, one transaction (issue 20): what the database sees of one photo's upload."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from tests.api.test_snapshots import Ward, open_ward, wound_jpeg
from woundcare.appkeys import SERVICES
from woundcare.db.database import Query


OUTBOX = ("webhook_events", "webhook_deliveries", "webhook_endpoints")


def _deliverers(transaction: list[str]) -> bool:
    """Whether ``transaction`` is the webhook deliverer's: it touches the outbox and writes
    nothing else. The fixture's call (its ``consultation.queued``) wakes the deliverer, and
    its passes (and its poll's) may fall inside the measured upload. They are writes of the
    database's one writer (``Database.write``), as the upload's is, so neither a task nor a
    connection tells them apart, but their tables do: an upload emits no event. A pass that
    the writer commits in one batch with the upload adds its statements to the upload's
    transaction, which is still one."""
    on_outbox = [any(table in s for table in OUTBOX) for s in transaction]
    return any(on_outbox) and all(
        outbox for s, outbox in zip(transaction, on_outbox, strict=True) if s.startswith(("insert", "update", "delete"))
    )


@pytest.fixture
async def ward(start_server: Any, migrated_db_url: str) -> AsyncIterator[Ward]:
    """test_snapshots' ward (SQLite and PostgreSQL), on a server whose revocation poll keeps out
    of the measured upload: its two reads every 2 s, falling inside it, were counted with it
    (as more reads than the upload makes)."""
    ward = await open_ward(await start_server(database_url=migrated_db_url, revocation_poll_seconds=3600))
    yield ward
    await ward.nurse.close()
    await ward.specialist.close()


@dataclass
class Seen:
    """Statements by transaction, in order, and how often a connection was checked out: on
    the connections checked out while it watched. By connection, not by task: SQLAlchemy
    closes a session in a task of its own (shielded), so a transaction may end in another
    task than the one that ran it."""

    transactions: list[list[str]] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)
    checkouts: int = 0
    _open: dict[int, list[str]] = field(default_factory=dict)
    _watched: set[int] = field(default_factory=set)
    """The DBAPI connections (by id) checked out while it watched."""
    out: set[int] = field(default_factory=set)
    """Those not checked in yet: a pass of the deliverer may have begun as the upload ended."""

    def _watches(self, conn: Any) -> bool:
        return id(conn.connection.dbapi_connection) in self._watched

    def statement(self, conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if self._watches(conn):
            self._open.setdefault(id(conn), []).append(" ".join(sql.split()).lower())

    def end(self, how: str) -> Any:
        def ended(conn: Any) -> None:
            if self._watches(conn):
                self.transactions.append(self._open.pop(id(conn), []))
                self.ends.append(how)

        return ended

    def checkout(self, dbapi_connection: Any, *_: Any) -> None:
        self._watched.add(id(dbapi_connection))
        self.out.add(id(dbapi_connection))
        self.checkouts += 1

    def checkin(self, dbapi_connection: Any, *_: Any) -> None:
        self.out.discard(id(dbapi_connection))


async def test_one_upload_writes_in_one_transaction(ward: Ward, monkeypatch: pytest.MonkeyPatch) -> None:
    data = wound_jpeg(640, 480)
    assert (await ward.upload(data)).status == 201  # warm: region key, compiled statements
    database = ward.server.app[SERVICES].database
    seen = Seen()
    # The reads by key (Database.read): on SQLite they bypass the engine.
    by_key: list[str] = []
    read = database.read

    async def reading(query: Query, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        by_key.append(" ".join(str(query).split()).lower())
        return await read(query, params)

    monkeypatch.setattr(database, "read", reading)
    listeners = [
        listener
        for engine in database.engines
        for listener in (
            (engine, "before_cursor_execute", seen.statement),
            (engine, "commit", seen.end("commit")),
            (engine, "rollback", seen.end("rollback")),
            (engine.pool, "checkout", seen.checkout),
            (engine.pool, "checkin", seen.checkin),
        )
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        response = await ward.upload(data)
        # Every transaction begun meanwhile is seen to its end, so each is told apart whole.
        async with asyncio.timeout(30):
            while seen.out:
                await asyncio.sleep(0.01)
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)
    assert response.status == 201, await response.text()

    uploads = [t for t in seen.transactions if not _deliverers(t)]
    writes = [t for t in uploads if any(s.startswith(("insert", "update", "delete", "with")) for s in t)]
    assert len(writes) == 1, seen
    [together] = writes
    # On PostgreSQL the snapshot row is inserted inside its event's statement (``with stored as (insert``).
    inserted = sorted(table.strip('"') for s in together for table in re.findall(r"insert into (\S+)", s))
    assert inserted == ["audit_events", "consultation_events", "snapshots"], seen
    # Before it, two reads by key, one statement each: who asks (the session, her user and
    # memberships), then the consultation with its consent. Nothing else touches the database.
    assert len(by_key) == 2, by_key
    assert "from login_sessions" in by_key[0] and "memberships" in by_key[0], by_key
    assert "from consultations" in by_key[1] and "from consents" in by_key[1], by_key
    others = [t for t in uploads if t is not together]
    assert all(len(t) == 1 and t[0].startswith("select") for t in others), seen
    # The reads by key run on the driver, with no statement of SQLAlchemy's: on PostgreSQL
    # each on a connection checked out of the pool, on SQLite on a connection of their own.
    read_checkouts = len(by_key) if database.engine.dialect.name == "postgresql" else 0
    assert len(others) <= len(by_key) and len(seen.transactions) + read_checkouts == seen.checkouts, seen
