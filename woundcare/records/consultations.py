"""Consultations: a nurse starts one for a patient; specialists of the region see it waiting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Row, select, update

from ..db.database import Database
from ..db.models import Consultation, ConsultationEvent, ConsultationStatus, Patient, Region


@dataclass(frozen=True, slots=True)
class ConsultationView:
    id: str
    region_id: int
    region: str
    patient: str
    """The patient's pseudonym."""
    patient_id: int
    status: ConsultationStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    def json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "region": self.region,
            "patient": self.patient,
            "status": self.status.value,
            "createdAt": self.created_at.isoformat(),
            "startedAt": self.started_at.isoformat() if self.started_at else None,
            "endedAt": self.ended_at.isoformat() if self.ended_at else None,
        }


def _select():  # type: ignore[no-untyped-def]
    return (
        select(Consultation, Region.code, Patient.pseudonym)
        .join(Region, Region.id == Consultation.region_id)
        .join(Patient, Patient.id == Consultation.patient_id)
    )


def _view(row: Row[tuple[Consultation, str, str]] | tuple[Consultation, str, str]) -> ConsultationView:
    c, region, patient = row
    return ConsultationView(
        c.id, c.region_id, region, patient, c.patient_id, c.status, c.created_at, c.started_at, c.ended_at
    )


class Consultations:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(self, patient: Patient, created_by: int | None) -> ConsultationView:
        async with self._db.sessions() as session, session.begin():
            consultation = Consultation(region_id=patient.region_id, patient_id=patient.id, created_by=created_by)
            session.add(consultation)
            await session.flush()
            region = await session.scalar(select(Region.code).where(Region.id == patient.region_id))
        return _view((consultation, region or "", patient.pseudonym))

    async def live(
        self, created_by: int, region_ids: list[int], patient_id: int | None = None
    ) -> list[ConsultationView]:
        """The consultations this user started that are not over yet (waiting or active), in
        these regions, optionally of one patient; oldest first. A nurse rejoins these rather
        than start a second one."""
        query = _select().where(
            Consultation.created_by == created_by,
            Consultation.region_id.in_(region_ids),
            Consultation.status.in_((ConsultationStatus.WAITING, ConsultationStatus.ACTIVE)),
        )
        if patient_id is not None:
            query = query.where(Consultation.patient_id == patient_id)
        async with self._db.sessions() as session:
            rows = (await session.execute(query.order_by(Consultation.created_at))).all()
        return [_view(r) for r in rows]

    async def get(self, consultation_id: str) -> ConsultationView | None:
        async with self._db.sessions() as session:
            row = (await session.execute(_select().where(Consultation.id == consultation_id))).one_or_none()
        return _view(row) if row else None

    async def queue(self, region_ids: list[int]) -> list[ConsultationView]:
        """Open consultations of these regions, longest waiting first."""
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    _select()
                    .where(
                        Consultation.region_id.in_(region_ids),
                        Consultation.status != ConsultationStatus.ENDED,
                    )
                    .order_by(Consultation.created_at)
                )
            ).all()
        return [_view(r) for r in rows]

    async def of_patient(self, patient_id: int) -> list[ConsultationView]:
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    _select().where(Consultation.patient_id == patient_id).order_by(Consultation.created_at)
                )
            ).all()
        return [_view(r) for r in rows]

    async def end(self, consultation_id: str) -> None:
        async with self._db.sessions() as session, session.begin():
            await session.execute(
                update(Consultation)
                .where(Consultation.id == consultation_id, Consultation.status != ConsultationStatus.ENDED)
                .values(status=ConsultationStatus.ENDED, ended_at=datetime.now(UTC))
            )

    async def events(self, consultation_id: str) -> list[dict[str, object]]:
        async with self._db.sessions() as session:
            rows = (
                await session.scalars(
                    select(ConsultationEvent)
                    .where(ConsultationEvent.consultation_id == consultation_id)
                    .order_by(ConsultationEvent.id)
                )
            ).all()
        return [
            {"at": e.at.isoformat(), "kind": e.kind, "role": e.role, "participant": e.participant, "detail": e.detail}
            for e in rows
        ]
