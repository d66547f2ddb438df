"""The consultation session log: room events from signaling, stored off the relay path.

Signaling calls :meth:`SessionLog.emit` synchronously; a background task writes the
events in batches, so a slow database never delays a relayed frame.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from sqlalchemy import select

from signaling.protocol import Role
from signaling.sink import EventKind, RoomEvent

from ..db.database import Database
from ..db.models import Consultation, ConsultationEvent
from .consultations import mark_started
from .events import Events

log = logging.getLogger(__name__)
security_log = logging.getLogger("woundcare.security")

_STORED = frozenset(EventKind) - {EventKind.DENIED}


class SessionLog:
    def __init__(self, db: Database, events: Events) -> None:
        self._db = db
        self._events = events
        self._queue: asyncio.Queue[RoomEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def emit(self, event: RoomEvent) -> None:
        if event.kind is EventKind.DENIED:
            # Codes and addresses only: the consultation id is opaque, never patient data.
            security_log.warning(
                "signaling join denied: code=%s role=%s address=%s",
                event.detail,
                event.role.value if event.role else None,
                event.address,
            )
        if event.kind in _STORED:
            self._queue.put_nowait(event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session-log")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        await self.flush()
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def flush(self) -> None:
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception:
                log.exception("session log write failed; %d events lost", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[RoomEvent]) -> None:
        async with self._db.sessions() as session, session.begin():
            known = set(
                (
                    await session.scalars(
                        select(Consultation.id).where(Consultation.id.in_({e.consultation for e in batch}))
                    )
                ).all()
            )
            for event in batch:
                if event.consultation not in known:
                    continue
                session.add(
                    ConsultationEvent(
                        consultation_id=event.consultation,
                        at=event.at,
                        kind=event.kind.value,
                        role=event.role.value if event.role else None,
                        subject=event.subject,
                        participant=event.participant,
                        detail=event.detail,
                    )
                )
                if event.kind is EventKind.JOINED and event.role in (Role.SPECIALIST, Role.OBSERVER):
                    # The first viewer to join starts the consultation (the nurse's wait ends);
                    # the recorder is no viewer. In the event's transaction: both or neither.
                    await mark_started(session, event.consultation, event.at, self._events)
