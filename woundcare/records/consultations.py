"""Consultations: a nurse starts one for a patient; specialists of the region see it waiting.

A consultation is a live video call or an e-consult (issue 18): photos and a question the
nurse sends, with an urgency, that wait in the same queue until a specialist answers with an
assessment (signing it closes the e-consult, :meth:`woundcare.records.assessments.Assessments.sign`).
An e-consult has no room: nobody joins it, and it is never abandoned for want of a nurse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Select, bindparam, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from ..crypto import Binding, Keyring
from ..db.database import Database
from ..db.models import (
    OPEN_STATUSES,
    Consultation,
    ConsultationEvent,
    ConsultationKind,
    ConsultationStatus,
    Patient,
    Region,
    Urgency,
)
from ..errors import WoundcareError
from .events import Events, EventType, outbox_row

NURSE = "nurse"
"""The session log's role of the nurse camera (``signaling.protocol.Role.NURSE``)."""
ABANDONED_EVENT = "abandoned"
"""The session-log event of the abandonment (no participant: the server did it)."""
QUESTION_KIND = "econsult_question"
"""The sealing kind of an e-consult's question, bound to the consultation id."""
SENT_LIMIT = 50
"""How many of her e-consults the nurse's list shows, newest first."""


_MARK_STARTED = (
    update(Consultation)
    .where(
        Consultation.id == bindparam("consultation"),
        Consultation.started_at.is_(None),
        Consultation.status == ConsultationStatus.WAITING,
    )
    .values(started_at=bindparam("at"), status=ConsultationStatus.ACTIVE)
)
_STARTS = select(Consultation.id, Consultation.region_id, Consultation.started_at).where(
    Consultation.id.in_(bindparam("ids", expanding=True))
)


def mark_started(connection: Connection, starts: Sequence[tuple[str, datetime]], events: Events) -> bool:
    """Each waiting consultation becomes active at its time, when its first viewer joined,
    with its ``consultation.started`` event; True if any did.

    In the caller's transaction, so the session log's join events, the starts and their
    events are stored together; one abandoned while its event was queued stays abandoned.
    One statement for the batch (built once: building it cost more than running it); the
    ones this batch started are those whose start is now its own time (the first of the
    batch's for a consultation), read back in one more."""
    if not starts:
        return False
    first: dict[str, datetime] = {}
    for consultation, at in starts:
        first.setdefault(consultation, at)
    connection.execute(_MARK_STARTED, [{"consultation": c, "at": at} for c, at in first.items()])
    rows = connection.execute(_STARTS, {"ids": list(first)})
    started = [
        outbox_row(EventType.CONSULTATION_STARTED, consultation_id=consultation, region_id=region_id, at=at)
        for consultation, region_id, at in rows
        if at == first[consultation]
    ]
    events.emit_batch(connection, started)
    return bool(started)


class ConsultationLive(WoundcareError):
    """The nurse already has an open consultation for this patient: rejoin it, not a second."""

    code = "consultation_live"
    status = 409
    message = "this patient already has a live consultation of yours"

    def __init__(self, live: ConsultationView) -> None:
        super().__init__("this patient already has a live consultation of this nurse")
        self.live = live

    @property
    def details(self) -> Mapping[str, str]:
        # Its id is no patient data, so the answer may name the consultation to rejoin.
        return {"consultation": self.live.id}


@dataclass(frozen=True, slots=True)
class ConsultationView:
    id: str
    region_id: int
    region: str
    region_name: str
    patient: str
    """The patient's pseudonym."""
    patient_id: int
    status: ConsultationStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    kind: ConsultationKind = ConsultationKind.VIDEO
    urgency: Urgency | None = None

    def json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "region": self.region,
            "regionName": self.region_name,
            "patient": self.patient,
            "status": self.status.value,
            "createdAt": self.created_at.isoformat(),
            "startedAt": self.started_at.isoformat() if self.started_at else None,
            "endedAt": self.ended_at.isoformat() if self.ended_at else None,
            # Not "kind": the timeline's entries have a kind of their own (consultation, snapshot).
            "channel": self.kind.value,
            "urgency": self.urgency.value if self.urgency else None,
        }


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One session-log entry of a consultation."""

    at: datetime
    kind: str
    role: str | None
    subject: str | None
    """Pseudonymous: ``u<user id>`` for staff, an invitation's subject otherwise; not shown."""
    participant: str | None
    detail: str | None

    def json(self) -> dict[str, object]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "role": self.role,
            "participant": self.participant,
            "detail": self.detail,
        }


def _select() -> Select[Consultation, str, str, str]:
    return (
        select(Consultation, Region.code, Region.name, Patient.pseudonym)
        .join(Region, Region.id == Consultation.region_id)
        .join(Patient, Patient.id == Consultation.patient_id)
    )


def _view(row: tuple[Consultation, str, str, str]) -> ConsultationView:
    c, region, region_name, patient = row
    return ConsultationView(
        c.id, c.region_id, region, region_name, patient, c.patient_id, c.status, c.created_at, c.started_at,
        c.ended_at, c.kind, c.urgency,
    )


class Consultations:
    def __init__(self, db: Database, keyring: Keyring, events: Events) -> None:
        self._db = db
        self._keyring = keyring
        self._events = events

    async def start(self, patient: Patient, created_by: int | None) -> ConsultationView:
        """A new consultation; :class:`ConsultationLive` if this nurse has one open for the
        patient already. The database decides (a unique index over the open ones), so two
        Starts at the same moment cannot both make one."""
        try:
            async with self._db.sessions() as session, session.begin():
                consultation = Consultation(region_id=patient.region_id, patient_id=patient.id, created_by=created_by)
                session.add(consultation)
                await session.flush()
                self._events.emit(
                    session, EventType.CONSULTATION_QUEUED,
                    consultation_id=consultation.id, region_id=consultation.region_id, at=consultation.created_at,
                )
                region = (
                    await session.execute(select(Region.code, Region.name).where(Region.id == patient.region_id))
                ).one()
        except IntegrityError:
            if created_by is None:
                raise
            live = await self.live(created_by, [patient.region_id], patient.id)
            if not live:
                raise
            raise ConsultationLive(live[0]) from None
        return _view((consultation, *region, patient.pseudonym))

    async def send_econsult(self, patient: Patient, created_by: int | None, question: str,
                            urgency: Urgency) -> ConsultationView:
        """A new e-consult: it waits in the queue with its urgency until it is answered."""
        async with self._db.sessions() as session, session.begin():
            consultation = Consultation(
                region_id=patient.region_id, patient_id=patient.id, created_by=created_by,
                kind=ConsultationKind.ECONSULT, urgency=urgency,
            )
            session.add(consultation)
            await session.flush()
            # Sealed once the id exists, which it is bound to, in the same transaction.
            consultation.question_sealed = await self._keyring.seal(
                _question_binding(consultation.id, patient.region_id), question.encode()
            )
            self._events.emit(
                session, EventType.ECONSULT_ASKED,
                consultation_id=consultation.id, region_id=consultation.region_id, at=consultation.created_at,
            )
            region = (
                await session.execute(select(Region.code, Region.name).where(Region.id == patient.region_id))
            ).one()
        return _view((consultation, *region, patient.pseudonym))

    async def question(self, view: ConsultationView) -> str | None:
        """An e-consult's question; None for a call."""
        async with self._db.sessions() as session:
            sealed = await session.scalar(select(Consultation.question_sealed).where(Consultation.id == view.id))
        if sealed is None:
            return None
        return (await self._keyring.open(_question_binding(view.id, view.region_id), sealed)).decode()

    async def sent_econsults(self, created_by: int, region_ids: list[int]) -> list[ConsultationView]:
        """The e-consults this user sent in these regions, newest first (at most :data:`SENT_LIMIT`)."""
        query = _select().where(
            Consultation.created_by == created_by,
            Consultation.region_id.in_(region_ids),
            Consultation.kind == ConsultationKind.ECONSULT,
        )
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    query.order_by(Consultation.created_at.desc(), Consultation.id).limit(SENT_LIMIT)
                )
            ).all()
        return [_view(r) for r in rows]

    async def live(
        self, created_by: int, region_ids: list[int], patient_id: int | None = None
    ) -> list[ConsultationView]:
        """The calls this user started that are not over yet (waiting or active), in these
        regions, optionally of one patient; oldest first. A nurse rejoins these rather than
        start a second one (an e-consult is no call to rejoin)."""
        query = _select().where(
            Consultation.created_by == created_by,
            Consultation.region_id.in_(region_ids),
            Consultation.status.in_(OPEN_STATUSES),
            Consultation.kind == ConsultationKind.VIDEO,
        )
        if patient_id is not None:
            query = query.where(Consultation.patient_id == patient_id)
        async with self._db.sessions() as session:
            rows = (await session.execute(query.order_by(Consultation.created_at))).all()
        return [_view(r) for r in rows]

    async def newest_open(self, region: str) -> str | None:
        """The id of the newest consultation of region ``region`` (a code) that has not ended."""
        async with self._db.sessions() as session:
            return await session.scalar(
                select(Consultation.id)
                .join(Region, Region.id == Consultation.region_id)
                .where(Region.code == region, Consultation.ended_at.is_(None))
                .order_by(Consultation.created_at.desc())
                .limit(1)
            )

    async def get(self, consultation_id: str) -> ConsultationView | None:
        async with self._db.sessions() as session:
            row = (await session.execute(_select().where(Consultation.id == consultation_id))).one_or_none()
        return _view(row) if row else None

    async def queue(self, region_ids: list[int] | None) -> list[tuple[ConsultationView, datetime | None]]:
        """Open consultations of these regions (None: of all), longest waiting first, each
        with when its nurse was last in the session log (None: she never joined)."""
        seen = (
            select(func.max(ConsultationEvent.at))
            .where(ConsultationEvent.consultation_id == Consultation.id, ConsultationEvent.role == NURSE)
            .scalar_subquery()
        )
        query = _select().add_columns(seen).where(Consultation.status.in_(OPEN_STATUSES))
        if region_ids is not None:
            query = query.where(Consultation.region_id.in_(region_ids))
        async with self._db.sessions() as session:
            rows = (await session.execute(query.order_by(Consultation.created_at, Consultation.id))).all()
        return [(_view(row[:4]), row[4]) for row in rows]

    async def abandon(self, consultation_id: str, nurse_gone_since: datetime) -> bool:
        """Mark an open call abandoned if its nurse has been gone since ``nurse_gone_since``:
        created before it, and no nurse event in the session log after. An e-consult waits
        for its answer without a nurse and is never abandoned.

        One conditional UPDATE, so of concurrent callers (queue reads, every instance's
        sweep) exactly one gets True; it also writes the session-log event."""
        now = datetime.now(UTC)
        nurse_since = exists().where(
            ConsultationEvent.consultation_id == Consultation.id,
            ConsultationEvent.role == NURSE,
            ConsultationEvent.at >= nurse_gone_since,
        )
        async with self._db.sessions() as session, session.begin():
            region_id = await session.scalar(
                update(Consultation)
                .where(
                    Consultation.id == consultation_id,
                    Consultation.kind == ConsultationKind.VIDEO,
                    Consultation.status.in_(OPEN_STATUSES),
                    Consultation.created_at < nurse_gone_since,
                    ~nurse_since,
                )
                .values(status=ConsultationStatus.ABANDONED, ended_at=now)
                .returning(Consultation.region_id)
                .execution_options(synchronize_session=False)
            )
            if region_id is None:
                return False
            session.add(ConsultationEvent(consultation_id=consultation_id, at=now, kind=ABANDONED_EVENT))
            self._events.emit(
                session, EventType.CONSULTATION_ENDED, consultation_id=consultation_id, region_id=region_id, at=now,
                status=ConsultationStatus.ABANDONED.value,
            )
        return True

    async def of_patient(self, patient_id: int) -> list[ConsultationView]:
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    _select().where(Consultation.patient_id == patient_id).order_by(Consultation.created_at)
                )
            ).all()
        return [_view(r) for r in rows]

    async def end(self, consultation_id: str) -> None:
        now = datetime.now(UTC)
        async with self._db.sessions() as session, session.begin():
            region_id = await session.scalar(
                update(Consultation)
                .where(Consultation.id == consultation_id, Consultation.status.in_(OPEN_STATUSES))
                .values(status=ConsultationStatus.ENDED, ended_at=now)
                .returning(Consultation.region_id)
            )
            if region_id is not None:
                self._events.emit(
                    session, EventType.CONSULTATION_ENDED, consultation_id=consultation_id, region_id=region_id,
                    at=now, status=ConsultationStatus.ENDED.value,
                )

    async def creator(self, consultation_id: str) -> int | None:
        """The user who started the consultation; None for one started otherwise (the demo)."""
        async with self._db.sessions() as session:
            return await session.scalar(select(Consultation.created_by).where(Consultation.id == consultation_id))

    async def events(self, consultation_id: str) -> list[LoggedEvent]:
        """The consultation's session log, in order."""
        async with self._db.sessions() as session:
            rows = (
                await session.scalars(
                    select(ConsultationEvent)
                    .where(ConsultationEvent.consultation_id == consultation_id)
                    .order_by(ConsultationEvent.id)
                )
            ).all()
        return [LoggedEvent(e.at, e.kind, e.role, e.subject, e.participant, e.detail) for e in rows]


def _question_binding(consultation_id: str, region_id: int) -> Binding:
    return Binding(region_id, QUESTION_KIND, consultation_id)
