"""What the pilot's figures and exports are computed from: plain, non-identifying columns
only (times, event kinds and roles, outcomes, call-quality numbers, counts, pseudonyms, staff
roles by user id), and the lead's table of travel distances.

The queries return rows; :mod:`woundcare.pilot.figures` defines and computes the figures,
:mod:`woundcare.pilot.fhir` builds the export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import ColumnElement, func, select

from ..db.database import Database
from ..db.models import (
    Assessment,
    Consultation,
    ConsultationEvent,
    ConsultationKind,
    ConsultationStatus,
    Outcome,
    Patient,
    Membership,
    QualitySample,
    StaffRole,
    Snapshot,
    TravelDistance,
    Urgency,
)


AT_HOME: frozenset[Outcome] = frozenset({Outcome.TREATED_AT_HOME, Outcome.HEALED})
"""Outcomes that kept the wound at home: a visit that found it healed was not referred either,
and saved the trip as one treated at home did."""


@dataclass(frozen=True, slots=True)
class Window:
    """The consultations of ``region_ids`` created in [``start``, ``end``); an open end is unbounded."""

    region_ids: Sequence[int]
    start: datetime | None = None
    end: datetime | None = None
    kind: ConsultationKind = ConsultationKind.VIDEO
    """Video calls by default: e-consults are counted apart (:meth:`Pilot.econsult_rows`)."""

    def where(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [
            Consultation.region_id.in_(self.region_ids), Consultation.kind == self.kind
        ]
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
    """(region, km, hours) per consultation treated at home or healed; None where the patient's
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
class EffectRows:
    """The wounds whose first consultation falls in a window, with their whole course."""

    wounds: Sequence[tuple[int, str, int, datetime]]
    """(patient id, pseudonym, region, first consultation's creation), oldest first."""
    areas: Sequence[tuple[int, datetime, float | None]]
    """(patient id, taken, area cm2) per measured snapshot of those wounds, in time order
    (never None: the query asks for measured ones; the column is nullable)."""
    outcomes: Sequence[tuple[int, datetime, Outcome | None]]
    """(patient id, consultation's creation, outcome) per signed assessment with an outcome of
    those wounds, in time order."""


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
                    .where(*where, Assessment.outcome.in_(AT_HOME))
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

    async def econsult_rows(self, window: Window) -> Sequence[tuple[int, Urgency | None, datetime, datetime | None]]:
        """(region, urgency, sent, answered) per e-consult of the window's regions and period;
        answered is when its assessment was signed (None: not yet)."""
        where = replace(window, kind=ConsultationKind.ECONSULT).where()
        async with self._db.sessions() as session:
            return (
                await session.execute(
                    select(Consultation.region_id, Consultation.urgency, Consultation.created_at, Assessment.signed_at)
                    .outerjoin(Assessment, Assessment.consultation_id == Consultation.id)
                    .where(*where)
                )
            ).all()

    async def effect_rows(self, window: Window) -> EffectRows:
        """Each patient is one wound episode, in the window by the creation of its first
        consultation; its measurements and signed outcomes are read whenever they fell."""
        first = func.min(Consultation.created_at)
        having = []
        if window.start is not None:
            having.append(first >= window.start)
        if window.end is not None:
            having.append(first < window.end)
        cohort = (
            select(Consultation.patient_id.label("patient_id"), first.label("first_at"))
            .where(Consultation.region_id.in_(window.region_ids))
            .group_by(Consultation.patient_id)
            .having(*having)
            .subquery()
        )
        async with self._db.sessions() as session:
            wounds = (
                await session.execute(
                    select(Patient.id, Patient.pseudonym, Patient.region_id, cohort.c.first_at)
                    .join(cohort, cohort.c.patient_id == Patient.id)
                    .order_by(cohort.c.first_at, Patient.id)
                )
            ).all()
            if not wounds:
                return EffectRows((), (), ())
            areas = (
                await session.execute(
                    select(Snapshot.patient_id, Snapshot.taken_at, Snapshot.area_cm2)
                    .join(cohort, cohort.c.patient_id == Snapshot.patient_id)
                    .where(Snapshot.area_cm2.is_not(None))
                    .order_by(Snapshot.taken_at, Snapshot.id)
                )
            ).all()
            outcomes = (
                await session.execute(
                    select(Consultation.patient_id, Consultation.created_at, Assessment.outcome)
                    .join(Assessment, Assessment.consultation_id == Consultation.id)
                    .join(cohort, cohort.c.patient_id == Consultation.patient_id)
                    .where(Assessment.outcome.is_not(None), Assessment.signed_at.is_not(None))
                    .order_by(Consultation.created_at, Consultation.id)
                )
            ).all()
        return EffectRows(wounds, areas, outcomes)

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

    async def municipalities(self, region_id: int) -> list[str]:
        """The region's municipalities a patient may be registered in: those the lead entered
        a round trip for, so every registered municipality has its distance."""
        async with self._db.sessions() as session:
            rows = await session.scalars(
                select(TravelDistance.municipality)
                .where(TravelDistance.region_id == region_id)
                .order_by(TravelDistance.municipality)
            )
            return list(rows)

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
