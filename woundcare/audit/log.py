"""Writing audit events. Callers pass pseudonymous ids only (``u12``, ``d3``,
``patient:<pseudonym>``, ``consultation:<id>``), never names or national ids."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..db.database import Database
from ..db.models import AuditEvent


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
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, entry: AuditEntry) -> None:
        """Store one entry in its own transaction, so a failed request is still audited."""
        async with self._db.sessions() as session, session.begin():
            session.add(
                AuditEvent(
                    actor=entry.actor,
                    role=entry.role,
                    region_id=entry.region_id,
                    action=entry.action,
                    resource=entry.resource,
                    outcome=entry.outcome.value,
                    address=entry.address,
                )
            )
