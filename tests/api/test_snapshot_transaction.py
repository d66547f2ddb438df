"""One upload, one transaction (issue 20): what the database sees of one photo's upload."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from tests.api.test_snapshots import Ward, wound_jpeg
from tests.api.test_snapshots import ward  # noqa: F401  (the fixture: SQLite and PostgreSQL)
from woundcare.appkeys import SERVICES
from woundcare.webhooks.deliverer import TASK_NAME as DELIVERER


def _deliverers() -> bool:
    """Whether the webhook deliverer's task is running: the warm-up upload's commit wakes it,
    and its pass (its own transactions) may fall inside the measured upload."""
    task = asyncio.current_task()
    return task is not None and task.get_name() == DELIVERER


@dataclass
class Seen:
    """Statements by transaction, in order, and how often a connection was checked out: on
    the connections checked out while it watched, by anyone but the webhook deliverer. By
    connection, not by task: SQLAlchemy closes a session in a task of its own (shielded),
    so a transaction may end in another task than the one that ran it."""

    transactions: list[list[str]] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)
    checkouts: int = 0
    _open: dict[int, list[str]] = field(default_factory=dict)
    _watched: set[int] = field(default_factory=set)
    """The DBAPI connections (by id) checked out by the server's work but the deliverer's."""

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
        if _deliverers():
            self._watched.discard(id(dbapi_connection))
            return
        self._watched.add(id(dbapi_connection))
        self.checkouts += 1


async def test_one_upload_writes_in_one_transaction(ward: Ward) -> None:
    data = wound_jpeg(640, 480)
    assert (await ward.upload(data)).status == 201  # warm: region key, compiled statements
    engine = ward.server.app[SERVICES].database.engine.sync_engine
    seen = Seen()
    listeners = [
        (engine, "before_cursor_execute", seen.statement),
        (engine, "commit", seen.end("commit")),
        (engine, "rollback", seen.end("rollback")),
        (engine.pool, "checkout", seen.checkout),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        response = await ward.upload(data)
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)
    assert response.status == 201, await response.text()

    writes = [t for t in seen.transactions if any(s.startswith(("insert", "update", "delete")) for s in t)]
    assert len(writes) == 1, seen
    [together] = writes
    inserted = sorted(s.split()[2].strip('"') for s in together if s.startswith("insert"))
    assert inserted == ["audit_events", "consultation_events", "snapshots"], seen
    # Before it, reads only, each in its own short transaction: who asks (the session and her
    # memberships), then the consultation with its consent in one statement.
    reads = [s for t in seen.transactions if t is not together for s in t]
    assert not [s for s in reads if not s.startswith("select")], seen
    assert [s for s in reads if "consultations" in s or "consents" in s] == [
        s for s in reads if "from consultations" in s and "from consents" in s
    ], seen
    assert len([s for s in reads if "consultations" in s]) == 1, seen
    assert len(seen.transactions) == seen.checkouts <= 4, seen
