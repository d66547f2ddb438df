"""Refused signaling frames in the audit trail.

The HTTP guard audits every refusal of an API request; this does the same for ``/ws``: a
joined participant's frame that its rights or the room's rules refuse (an observer's
``snapshot_request``, say) comes as a :attr:`~signaling.sink.EventKind.REFUSED` room event,
which is passed on to the session log and written to the audit trail as a denied
``signaling.<frame type>``. ``emit`` must not block the relay, so the write runs as a task.
"""

from __future__ import annotations

import asyncio
import logging

from signaling.sink import EventKind, EventSink, RoomEvent

from .log import AuditEntry, AuditLog, Outcome

log = logging.getLogger(__name__)
security_log = logging.getLogger("woundcare.security")

ACTION_PREFIX = "signaling."


class RefusalAudit:
    """An :class:`~signaling.sink.EventSink` in front of ``inner`` that audits refused frames."""

    def __init__(self, inner: EventSink, audit: AuditLog) -> None:
        self._inner = inner
        self._audit = audit
        self._writes: set[asyncio.Task[None]] = set()

    def emit(self, event: RoomEvent) -> None:
        self._inner.emit(event)
        if event.kind is not EventKind.REFUSED:
            return
        role = event.role.value if event.role else None
        # The frame's type and the pseudonymous sender only: never the frame's content.
        security_log.warning("signaling frame refused: type=%s role=%s subject=%s", event.detail, role, event.subject)
        entry = AuditEntry(
            f"{ACTION_PREFIX}{event.detail}",
            Outcome.DENIED,
            actor=event.subject,
            role=role,
            resource=f"consultation:{event.consultation}",
            address=event.address,
        )
        task = asyncio.get_running_loop().create_task(self._write(entry))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, entry: AuditEntry) -> None:
        try:
            await self._audit.record(entry)
        except Exception:
            log.exception("audit of a refused signaling frame failed")

    async def drain(self) -> None:
        """Wait for the writes under way (at shutdown)."""
        if self._writes:
            await asyncio.gather(*self._writes)
