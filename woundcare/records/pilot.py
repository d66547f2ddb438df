"""What the pilot's figures and exports are computed from: plain, non-identifying columns
only (times, event kinds and roles, outcomes, call-quality numbers, counts, pseudonyms, staff
roles by user id), and the lead's table of travel distances.

The queries return rows; :mod:`woundcare.pilot.figures` defines and computes the figures,
:mod:`woundcare.pilot.fhir` builds the export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select

from ..db.database import Database
from ..db.models import (
    Assessment,
    Consultation,
    ConsultationEvent,
    ConsultationStatus,
    Outcome,
    Patient,
    Membership,
    QualitySample,
    StaffRole,
    Snapshot,
    TravelDistance,
)


@dataclass(frozen=True, slots=True)
class Window:
    """The consultations of ``region_ids`` created in [``start``, ``end``); an open end is unbounded."""

    region_ids: Sequence[int]
    start: datetime | None = None
    end: datetime | None = None

    def where(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [Consultation.region_id.in_(self.region_ids)]
        if self.start is not None:
            conditions.append(Consultation.created_at >= self.start)
        if self.end is not None:
            conditions.append(Consultation.created_at < self.end)
        return conditions


@dataclass(frozen=True, slots=True)
class FigureRows:
    """Per region id: what each figure is counted or spread over."""

    consultations: Sequence[tuple[int, ConsultationStatus, datetime, datetime | None, datetime | None]]
    """(region, status, created, started, ended) per consultation."""
    events: Sequence[tuple[int, int]]
    """(region, count) of session-log events of the kind asked for."""
    snapshots: Sequence[tuple[int, int]]
    outcomes: Sequence[tuple[int, Outcome | None, int]]
    """(region, outcome, count) of assessments with an outcome."""
    abandoned: Sequence[tuple[int, int]]
    """(region, count) of consultations abandoned without an outcome."""
    home_trips: Sequence[tuple[int, float | None, float | None]]
    """(region, km, hours) per consultation treated at home; None where the patient's
    municipality has no distance entered."""
    received: Sequence[tuple[int, float | None, float | None, float | None]]
    """(region, bitrate kbps, loss %, rtt ms) per call-quality sample in direction ``receive``."""


@dataclass(frozen=True, slots=True)
class SessionRows:
    consultations: Sequence[
        tuple[str, int, str, ConsultationStatus, datetime, datetime | None, datetime | None, Outcome | None]
    ]
    """(id, region, pseudonym, status, created, started, ended, outcome), oldest first."""
    events: Sequence[tuple[str, datetime, str, str | None, str | None]]
    """(consultation, at, kind, role, participant), in order."""
    snapshots: Sequence[tuple[str, int]]
    """(consultation, count)."""


@dataclass(frozen=True, slots=True)
class TravelRow:
    municipality: str
    km: float
    hours: float


class Pilot:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def figure_rows(self, window: Window, event_kind: str) -> FigureRows:
        where = window.where()
        async with self._db.sessions() as session:
            consultations = (
                await session.execute(
                    select(
                        Consultation.region_id,
                        Consultation.status,
                        Consultation.created_at,
                        Consultation.started_at,
                        Consultation.ended_at,
                    ).where(*where)
                )
            ).all()
            events = (
                await session.execute(
                    select(Consultation.region_id, func.count(ConsultationEvent.id))
                    .join(ConsultationEvent, ConsultationEvent.consultation_id == Consultation.id)
                    .where(*where, ConsultationEvent.kind == event_kind)
                    .group_by(Consultation.region_id)
                )
            ).all()
            snapshots = (
                await session.execute(
                    select(Consultation.region_id, func.count(Snapshot.id))
                    .join(Snapshot, Snapshot.consultation_id == Consultation.id)
                    .where(*where)
                    .group_by(Consultation.region_id)
                )
            ).all()
            outcomes = (
                await session.execute(
                    select(Consultation.region_id, Assessment.outcome, func.count(Assessment.id))
                    .join(Assessment, Assessment.consultation_id == Consultation.id)
                    .where(*where, Assessment.outcome.is_not(None))
                    .group_by(Consultation.region_id, Assessment.outcome)
                )
            ).all()
            abandoned = (
                await session.execute(
                    select(Consultation.region_id, func.count(Consultation.id))
                    .outerjoin(
                        Assessment, (Assessment.consultation_id == Consultation.id) & Assessment.outcome.is_not(None)
                    )
                    .where(*where, Consultation.status == ConsultationStatus.ABANDONED, Assessment.id.is_(None))
                    .group_by(Consultation.region_id)
                )
            ).all()
            home_trips = (
                await session.execute(
                    select(Consultation.region_id, TravelDistance.km, TravelDistance.hours)
                    .join(Assessment, Assessment.consultation_id == Consultation.id)
                    .join(Patient, Patient.id == Consultation.patient_id)
                    .outerjoin(
                        TravelDistance,
                        (TravelDistance.region_id == Consultation.region_id)
                        & (TravelDistance.municipality == Patient.municipality),
                    )
                    .where(*where, Assessment.outcome == Outcome.TREATED_AT_HOME)
                )
            ).all()
            received = (
                await session.execute(
                    select(
                        Consultation.region_id,
                        QualitySample.bitrate_kbps,
                        QualitySample.loss_pct,
                        QualitySample.rtt_ms,
                    )
                    .join(QualitySample, QualitySample.consultation_id == Consultation.id)
                    .where(*where, QualitySample.direction == "receive")
                )
            ).all()
        return FigureRows(consultations, events, snapshots, outcomes, abandoned, home_trips, received)

    async def session_rows(self, window: Window) -> SessionRows:
        where = window.where()
        async with self._db.sessions() as session:
            consultations = (
                await session.execute(
                    select(
                        Consultation.id,
                        Consultation.region_id,
                        Patient.pseudonym,
                        Consultation.status,
                        Consultation.created_at,
                        Consultation.started_at,
                        Consultation.ended_at,
                        Assessment.outcome,
                    )
                    .join(Patient, Patient.id == Consultation.patient_id)
                    .outerjoin(Assessment, Assessment.consultation_id == Consultation.id)
                    .where(*where)
                    .order_by(Consultation.created_at, Consultation.id)
                )
            ).all()
            if not consultations:
                return SessionRows((), (), ())
            events = (
                await session.execute(
                    select(
                        ConsultationEvent.consultation_id,
                        ConsultationEvent.at,
                        ConsultationEvent.kind,
                        ConsultationEvent.role,
                        ConsultationEvent.participant,
                    )
                    .join(Consultation, Consultation.id == ConsultationEvent.consultation_id)
                    .where(*where)
                    .order_by(ConsultationEvent.at, ConsultationEvent.id)
                )
            ).all()
            snapshots = (
                await session.execute(
                    select(Snapshot.consultation_id, func.count(Snapshot.id))
                    .join(Consultation, Consultation.id == Snapshot.consultation_id)
                    .where(*where)
                    .group_by(Snapshot.consultation_id)
                )
            ).all()
        return SessionRows(consultations, events, snapshots)

    async def staff(self, region_id: int) -> Sequence[tuple[int, StaffRole]]:
        """(user id, role) of each of the region's memberships: who a pseudonymous actor was."""
        async with self._db.sessions() as session:
            return (
                await session.execute(
                    select(Membership.user_id, Membership.role).where(Membership.region_id == region_id)
                )
            ).all()

    async def travel(self, region_id: int) -> list[TravelRow]:
        """The region's round trips per municipality, as the lead entered them, by name."""
        async with self._db.sessions() as session:
            rows = await session.scalars(
                select(TravelDistance).where(TravelDistance.region_id == region_id).order_by(TravelDistance.municipality)
            )
            return [TravelRow(r.municipality, r.km, r.hours) for r in rows]

    async def set_travel(self, region_id: int, municipality: str, km: float, hours: float) -> None:
        """Enter (or change) one municipality's round trip to the region's hospital."""
        async with self._db.sessions() as session, session.begin():
            row = await session.scalar(
                select(TravelDistance).where(
                    TravelDistance.region_id == region_id, TravelDistance.municipality == municipality
                )
            )
            if row is None:
                session.add(TravelDistance(region_id=region_id, municipality=municipality, km=km, hours=hours))
            else:
                row.km, row.hours = km, hours
