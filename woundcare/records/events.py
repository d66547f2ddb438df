"""Events for the systems around a call (webhooks, docs/webhooks.md), written to an outbox.

A service that changes a consultation's state calls :meth:`Events.emit` with the session of
that change: the event row is committed with the change or not at all, so no event is told
of a change that was rolled back, and none is lost to a crash after the commit. The
deliverer (:mod:`woundcare.webhooks.deliverer`) sends them; :meth:`Events.wait` wakes it as
soon as a transaction that emitted one commits, in this process (others' are found by polling).

An event carries ids only: its type, the consultation's public id, the region, a recording's
id, the time. Never a patient's id, pseudonym, name or national id, nor any clinical text.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Executable, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ..db.models import WebhookEvent

_INSERT = insert(WebhookEvent)
_HOOKED = "woundcare.events.hooked"
"""A session's ``info`` key: the after-commit wake-up is registered on it already."""


class EventType(str, enum.Enum):
    """The events a webhook endpoint may subscribe to (docs/webhooks.md, the catalogue)."""

    CONSULTATION_QUEUED = "consultation.queued"
    """A nurse started a video call: it waits in the specialists' queue."""
    CONSULTATION_STARTED = "consultation.started"
    """The first viewer joined the nurse."""
    CONSULTATION_ENDED = "consultation.ended"
    """A call was ended, or abandoned (``data.status``)."""
    ASSESSMENT_SIGNED = "assessment.signed"
    ECONSULT_ASKED = "econsult.asked"
    ECONSULT_ANSWERED = "econsult.answered"
    """Its assessment was signed: the e-consult leaves the queue."""
    RECORDING_FINISHED = "recording.finished"
    """A recording is complete, or failed (``data.status``)."""
    WEBHOOK_TEST = "webhook.test"
    """Sent only by ``woundcare webhooks test``, to one endpoint; never emitted."""


def new_event_id() -> str:
    """A ``webhook-id``: unique, random, the same on every retry of one event."""
    return f"msg_{secrets.token_urlsafe(18)}"


def outbox_row(
    type: EventType,
    *,
    consultation_id: str | None,
    region_id: int | None,
    at: datetime,
    subject_id: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """One event's row in the outbox, under a new ``webhook-id``."""
    return {
        "id": new_event_id(),
        "type": type.value,
        "consultation_id": consultation_id,
        "region_id": region_id,
        "subject_id": subject_id,
        "status": status,
        "occurred_at": at,
    }


def outbox_statement(type: EventType, **fields: Any) -> tuple[Executable, dict[str, Any]]:
    """:func:`outbox_row` with its INSERT, for a write made of statements (an audited one,
    :meth:`AuditLog.record_with`); the writer calls :meth:`Events.committed` once it has committed."""
    return _INSERT, outbox_row(type, **fields)


class Events:
    """The outbox writer, shared by the services of one process."""

    def __init__(self) -> None:
        self._emitted = asyncio.Event()

    def emit(
        self,
        session: AsyncSession,
        type: EventType,
        *,
        consultation_id: str | None,
        region_id: int | None,
        at: datetime,
        subject_id: str | None = None,
        status: str | None = None,
    ) -> None:
        """Add the event to ``session``'s transaction; the caller commits it with its change.
        ``status`` names the state reached, for the events with more than one ending
        (``ended`` or ``abandoned``; ``complete`` or ``failed``)."""
        session.add(
            WebhookEvent(
                **outbox_row(
                    type, consultation_id=consultation_id, region_id=region_id, at=at, subject_id=subject_id,
                    status=status,
                )
            )
        )
        sync = session.sync_session
        if not sync.info.get(_HOOKED):
            sync.info[_HOOKED] = True
            event.listen(sync, "after_commit", self._committed, once=True)

    def emit_batch(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """:func:`outbox_row`'s rows inserted in ``connection``'s transaction, for a writer that
        batches on a Core connection (the session log's group commit); it calls
        :meth:`committed` once its transaction has."""
        if rows:
            connection.execute(_INSERT, list(rows))

    def committed(self) -> None:
        """A transaction that emitted events has committed: wake the deliverer."""
        self._emitted.set()

    def _committed(self, session: Session) -> None:
        session.info.pop(_HOOKED, None)
        # Called on the event loop's thread (SQLAlchemy's asyncio greenlet), so setting is safe.
        self.committed()

    async def wait(self, timeout: float) -> bool:
        """Until an event was committed in this process since the last wait, or ``timeout``
        seconds; True if one was."""
        try:
            await asyncio.wait_for(self._emitted.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._emitted.clear()
        return True
