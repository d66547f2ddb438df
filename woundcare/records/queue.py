"""The specialists' queue: open consultations with who is in their rooms now, and the
abandonment of those the nurse has left.

A consultation is *abandoned* when it is open (waiting or active), no nurse is in its room
(on any instance), none has been for ``abandon_seconds`` (by the session log, or since it
was created if she never joined) and no viewer is in it either: a specialist still writing
keeps it. It then leaves the queue, counts as abandoned in the pilot figures, refuses
joins like an ended one, and its room is closed. The queue marks such entries when it is
read, and :meth:`Queue.running` sweeps every region so figures are right when nobody reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

from signaling.protocol import Presence
from signaling.rooms import Occupancy, Rooms

from ..audit.log import AuditEntry, AuditLog, Outcome
from ..db.models import ConsultationKind
from .consultations import ConsultationView, Consultations
from .session_log import SessionLog

log = logging.getLogger(__name__)

ABANDON_ACTION = "consultation.abandon"
"""The audit action of the server marking a consultation abandoned."""


@dataclass(frozen=True, slots=True)
class QueueEntry:
    consultation: ConsultationView
    occupancy: Occupancy
    nurse_seen_at: datetime | None
    """Her last session-log event (joined, dropped, left); None if she never joined."""

    def waited_seconds(self, now: datetime) -> float:
        """From the start until the first viewer joined, or until now."""
        view = self.consultation
        return max(0.0, ((view.started_at or now) - view.created_at).total_seconds())

    def json(self, now: datetime) -> dict[str, object]:
        nurse = self.occupancy.nurse
        seen = now if nurse is Presence.JOINED else self.nurse_seen_at
        body = self.consultation.json()
        body["waitedSeconds"] = round(self.waited_seconds(now))
        body["nurse"] = {
            "state": nurse.value if nurse is not None else "absent",
            "connected": nurse is Presence.JOINED,
            "lastSeenAt": seen.isoformat() if seen is not None else None,
        }
        return body


class Queue:
    def __init__(
        self,
        consultations: Consultations,
        rooms: Rooms,
        session_log: SessionLog,
        audit: AuditLog,
        close: Callable[[str], Awaitable[None]],
        abandon_seconds: float,
    ) -> None:
        self._consultations = consultations
        self._rooms = rooms
        self._session_log = session_log
        self._audit = audit
        self._close = close
        """Finishes an abandoned consultation's recording and closes its room."""
        self.abandon_after = timedelta(seconds=abandon_seconds)

    async def entries(self, region_ids: list[int] | None) -> list[QueueEntry]:
        """The open consultations of these regions (None: all), longest waiting first,
        less those abandoned now."""
        found = await self._consultations.queue(region_ids)
        occupancy = await self._rooms.occupancy(view.id for view, _ in found)
        entries = [QueueEntry(view, occupancy[view.id], seen) for view, seen in found]
        gone = await self._abandon(entries)
        return [e for e in entries if e.consultation.id not in gone]

    async def _abandon(self, entries: Sequence[QueueEntry]) -> set[str]:
        cutoff = datetime.now(UTC) - self.abandon_after
        deserted = [
            e
            for e in entries
            if e.consultation.kind is ConsultationKind.VIDEO  # an e-consult waits without a nurse
            and e.occupancy.nurse is None
            and e.occupancy.viewers == 0
            and max(e.consultation.created_at, e.nurse_seen_at or e.consultation.created_at) < cutoff
        ]
        if not deserted:
            return set()
        # A nurse who left a moment ago may have her ``left`` still queued for the database.
        await self._session_log.flush()
        gone = set()
        for entry in deserted:
            view = entry.consultation
            if not await self._consultations.abandon(view.id, cutoff):
                continue  # another reader or instance marked it, or the nurse came back
            gone.add(view.id)
            log.info("consultation %s abandoned: no nurse for %.0f s", view.id, self.abandon_after.total_seconds())
            await self._audit.record(
                AuditEntry(ABANDON_ACTION, Outcome.OK, actor="system", region_id=view.region_id,
                           resource=f"consultation:{view.id}")
            )
            await self._close(view.id)
        return gone

    async def sweep(self) -> None:
        """Mark every abandoned consultation, in every region."""
        await self.entries(None)

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: sweep a few times per window until the app stops."""
        task = asyncio.create_task(self._run(), name="queue-abandon")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        every = min(30.0, max(0.5, self.abandon_after.total_seconds() / 4))
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except Exception:
                log.exception("queue sweep failed")
