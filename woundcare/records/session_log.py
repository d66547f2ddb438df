"""The consultation session log and the audit of joins and leaves: room events from
signaling, stored by group commit.

Signaling calls :meth:`SessionLog.emit` synchronously; one writer task stores what has been
emitted since its last write in one transaction, which holds the audit chain's lock when it
appends to the chain: the events' ``consultation_events`` rows, the audit entries of joins and
leaves (``room.join``, ``room.leave``: a socket in the room, beside the ``consultation.join``
of the request that gave it its token) and the start of a consultation its first viewer joined,
all or none. A relayed frame never waits for it. What must be durable before the client hears
of it awaits :meth:`SessionLog.stored`: signaling sends ``joined`` and closes a leaving socket
only after the batch that holds the join or leave has committed. So joins arriving together
cost one transaction between them, and a crash loses no event a client was told of; it may lose
the events of the last moments that nobody was told of (a drop, a relayed frame's event such as
an annotation).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Final

from sqlalchemy import Connection, bindparam, exists, insert, select

from signaling.protocol import Role
from signaling.sink import EventKind, RoomEvent

from ..audit.log import AuditEntry, AuditLog, Outcome
from ..db.database import Database
from ..db.models import Consultation, ConsultationEvent, Region
from .audit_trail import connection_of
from .consultations import mark_started
from .events import Events

log = logging.getLogger(__name__)
security_log = logging.getLogger("woundcare.security")

_STORED = frozenset(EventKind) - {EventKind.DENIED}
AUDITED: Final[dict[EventKind, str]] = {
    EventKind.JOINED: "room.join",
    EventKind.LEFT: "room.leave",
}
"""The room events that are also audit entries: the span of a participant's access. A resume
(``rejoined``) continues the access its join opened; a drop only pauses it. Besides these, a
joined participant's frame that its rights or the room's rules refused (``refused``: an
observer's ``snapshot_request``, say) is audited as a denied ``signaling.<frame type>``, as
the HTTP guard audits a refused request."""
REFUSED_PREFIX: Final = "signaling."

_COLUMNS = ("consultation_id", "at", "kind", "role", "subject", "participant", "detail")
# Built once: building a statement costs more than running it for a small batch. Each row is
# inserted only if its consultation exists (an event for one that does not is not kept), in
# the insert itself: a separate read of the known ids had cost the batch another statement,
# on SQLite some four hand-offs to the driver's thread and back.
_INSERT = insert(ConsultationEvent).from_select(
    _COLUMNS,
    select(
        *(bindparam(name, type_=ConsultationEvent.__table__.c[name].type) for name in _COLUMNS)
    ).where(exists().where(Consultation.id == bindparam("consultation_id"))),
)


class SessionLog:
    def __init__(self, db: Database, audit: AuditLog, events: Events) -> None:
        self._db = db
        self._audit = audit
        self._events = events
        self._pending: list[RoomEvent] = []
        self._next: list[asyncio.Future[None]] = []
        """Who waits for the batch of :attr:`_pending`: a future each, so one waiter cancelled
        cancels no other's wait, and a commit wakes each waiting join once (a future shared
        through ``asyncio.shield`` cost each waiter a future, two callbacks and three turns
        of the loop more)."""
        self._writing: list[asyncio.Future[None]] | None = None
        """Who waits for the batch being written, for one who waits while nothing is pending."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._regions: dict[str, int] = {}
        """Region code -> id; a region's id never changes."""

    def emit(self, event: RoomEvent) -> None:
        if event.kind is EventKind.REFUSED:
            # The frame's type and the pseudonymous sender only: never the frame's content.
            security_log.warning(
                "signaling frame refused: type=%s role=%s subject=%s",
                event.detail,
                event.role.value if event.role else None,
                event.subject,
            )
        if event.kind is EventKind.DENIED:
            # Codes and addresses only: the consultation id is opaque, never patient data.
            security_log.warning(
                "signaling join denied: code=%s role=%s address=%s",
                event.detail,
                event.role.value if event.role else None,
                event.address,
            )
        if event.kind in _STORED:
            self._pending.append(event)
            self._wake.set()

    async def stored(self) -> None:
        """Return once every event emitted so far has committed; raise if its batch failed."""
        if self._task is None and self._pending:
            # Not started, or stopped: nothing would ever write them (and no one would answer).
            raise RuntimeError("the session log is not running")
        if self._pending:
            waiters = self._next
        elif self._writing is not None:
            waiters = self._writing
        else:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(done)
        await done

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session-log")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        with suppress(Exception):
            await self.flush()
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def flush(self) -> None:
        await self.stored()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            batch, self._pending = self._pending, []
            waiters, self._next = self._next, []
            self._writing = waiters
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                # Stopped mid-write: whoever waits for this batch is told, not left waiting.
                for done in waiters:
                    done.cancel()
                raise
            except Exception as exc:
                log.exception("session log write failed; %d events lost", len(batch))
                _settle(waiters, exc)
            else:
                _settle(waiters, None)
            finally:
                self._writing = None

    async def _write(self, batch: list[RoomEvent]) -> None:
        entries = [
            AuditEntry(
                action,
                outcome,
                actor=event.subject,
                role=event.role.value if event.role else None,
                region_id=await self._region_id(event.region),
                resource=f"consultation:{event.consultation}",
                address=event.address,
            )
            for event in batch
            if (audited := _audited(event)) is not None
            for action, outcome in (audited,)
        ]

        def rows(connection: Connection) -> bool:
            connection.execute(
                _INSERT,
                [
                    {
                        "consultation_id": event.consultation,
                        "at": event.at,
                        "kind": event.kind.value,
                        "role": event.role.value if event.role else None,
                        "subject": event.subject,
                        "participant": event.participant,
                        "detail": event.detail,
                    }
                    for event in batch
                ],
            )
            # The first specialist to join starts the consultation (the nurse's wait ends); a
            # guest does not, nor does it end the wait in the queue's figures. In the events'
            # transaction: both or neither (an unknown consultation is not started either).
            return mark_started(
                connection,
                [
                    (event.consultation, event.at)
                    for event in batch
                    if event.kind is EventKind.JOINED and event.role is Role.SPECIALIST
                ],
                self._events,
            )

        if entries:
            started = await self._audit.append_with(entries, lambda write: rows(connection_of(write)))
        else:
            # Nothing for the chain (a frame's event, a drop; a specialist's join that starts
            # a consultation is audited): its lock would guard nothing, and on a database
            # server it costs a round trip and waits on every other process's appends.
            started = await self._db.write(rows)
        if started:
            self._events.committed()

    async def _region_id(self, code: str | None) -> int | None:
        if code is None:
            return None
        found = self._regions.get(code)
        if found is None:
            async with self._db.engine.connect() as connection:
                found = await connection.scalar(select(Region.id).where(Region.code == code))
            if found is not None:
                self._regions[code] = found
        return found


def _audited(event: RoomEvent) -> tuple[str, Outcome] | None:
    """The audit entry's action and outcome for ``event``, if it is audited."""
    if event.kind is EventKind.REFUSED:
        return f"{REFUSED_PREFIX}{event.detail}", Outcome.DENIED
    action = AUDITED.get(event.kind)
    return None if action is None else (action, Outcome.OK)


def _settle(waiters: list[asyncio.Future[None]], error: Exception | None) -> None:
    """Tell each who waits for a batch how it ended; one who stopped waiting is skipped."""
    for done in waiters:
        if done.cancelled():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
